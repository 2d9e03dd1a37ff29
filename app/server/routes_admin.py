"""Knowledge-base administration: list collections (public); create one, list its documents,
upload, re-sync, delete a document and delete a collection (admin). Errors are problem details
(`app.server.problems`).

Ingestion runs in this process with the shared embedder and store, so the chat sees the new
index at once (an embedded Chroma does not see writes made by other processes)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response, UploadFile
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict

from app.server import problems
from app.server.access import AdminCaller, ChatCaller
from app.server.inputs import CollectionName, Text
from app.server.knowledge import DocumentList, list_documents
from app.server.services import BadRequest, NotFound, Services
from app.store import StoreError

# Declares the admin key in the OpenAPI schema (Swagger's "Authorize"); the check itself is
# `admin_caller`, which also takes X-Admin-Key. auto_error=False: its refusals are ours.
ADMIN_BEARER = HTTPBearer(
    scheme_name="AdminKey", description="KBCHAT_ADMIN_API_KEY", auto_error=False
)
_ADMIN_ERRORS = (400, 401, 403, 404, 409, 413, 422, 429)


class NewCollection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: CollectionName


def admin_router() -> APIRouter:
    router = APIRouter(prefix="/api/collections", tags=["collections"])
    admin: dict[str, Any] = {
        "dependencies": [Depends(ADMIN_BEARER)],
        "responses": problems.responses(*_ADMIN_ERRORS),
    }

    @router.get("", responses=problems.responses(401, 403))
    def collections(request: Request, caller: ChatCaller) -> list[dict[str, Any]]:
        """Knowledge bases with their chunk counts (folders only for the admin)."""
        services: Services = request.app.state.services
        rows = services.collections()
        if caller.widget:
            rows = [r for r in rows if r["name"] == caller.widget.collection]
        if not caller.admin:
            rows = [{k: v for k, v in r.items() if k != "folder"} for r in rows]
        return rows

    @router.post("", status_code=201, **admin)
    def create(request: Request, body: NewCollection, _: AdminCaller) -> DocumentList:
        """Create an empty knowledge base with a managed folder (admin); 409 if it exists.
        Uploads into a name that does not exist create it too."""
        services: Services = request.app.state.services
        with _user_errors():
            if body.name in {c["name"] for c in services.collections()}:
                raise HTTPException(409, f"a knowledge base named {body.name!r} exists")
            services.sync(body.name)
            return list_documents(services, body.name)

    @router.get("/{name}/documents", **admin)
    def documents(request: Request, name: CollectionName, _: AdminCaller) -> DocumentList:
        """The knowledge base's documents (admin): status, why the last sync failed or skipped
        one, chunks, language, size and when it was written, and the last sync's time."""
        services: Services = request.app.state.services
        with _user_errors():
            return list_documents(services, name)

    @router.post("/{name}/documents", **admin)
    def upload(
        request: Request, name: CollectionName, files: list[UploadFile], _: AdminCaller
    ) -> dict[str, Any]:
        """Add or replace documents, then sync the collection (admin). The answer lists the
        files saved, those indexed, and those that failed with the reason."""
        services: Services = request.app.state.services
        saved: list[str] = []
        failed: list[dict[str, str]] = []
        with _user_errors():
            for f in files:
                filename = f.filename or ""
                try:
                    saved.append(services.save_upload(name, filename, f.file.read()).name)
                except OSError as exc:
                    failed.append({"file": filename, "reason": f"not saved: {exc.strerror}"})
            report = services.sync(name)
        problems = {p.source: p.reason for p in report.failed + report.skipped}
        failed += [{"file": n, "reason": problems[n]} for n in saved if n in problems]
        return {
            "saved": saved,
            "indexed": [n for n in saved if n not in problems],
            "failed": failed,
            "report": report.to_dict(),
        }

    @router.post("/{name}/sync", **admin)
    def sync(request: Request, name: CollectionName, _: AdminCaller) -> dict[str, Any]:
        """Re-sync an existing collection with its folder (admin); 404 for any other name."""
        services: Services = request.app.state.services
        with _user_errors():
            services.require(name)
            return services.sync(name).to_dict()

    @router.delete("/{name}", status_code=204, response_class=Response, **admin)
    def delete_collection(request: Request, name: CollectionName, _: AdminCaller) -> Response:
        """Delete the collection, its manifest and its uploaded documents (admin); a folder it
        was ingested from outside the data folder is left as it is. 404 if there is none."""
        services: Services = request.app.state.services
        with _user_errors():
            services.delete_collection(name)
        return Response(status_code=204)

    @router.delete("/{name}/documents/{document:path}", **admin)
    def delete(
        request: Request, name: CollectionName, document: Text, _: AdminCaller
    ) -> dict[str, Any]:
        """Delete one document's file and its chunks (admin)."""
        services: Services = request.app.state.services
        with _user_errors():
            return services.delete_document(name, document).to_dict()

    return router


class _user_errors:
    """Map the services' errors onto HTTP status codes with their messages."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if isinstance(exc, NotFound):
            raise HTTPException(404, str(exc)) from exc
        if isinstance(exc, (BadRequest, StoreError, ValueError)):
            raise HTTPException(400 if isinstance(exc, BadRequest) else 409, str(exc)) from exc
