"""Chroma access: embedded by default, a Chroma server when KBCHAT_CHROMA_HOST is set.

Each knowledge base is one collection in cosine space whose metadata records how its vectors
were made; opening it with another embedding configuration is refused, because vectors from two
models or prefix schemes are not comparable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.settings import validate_collection_name

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection
    from langchain_chroma import Chroma

    from app.embeddings.e5 import EmbeddingSpec
    from app.settings import Settings

_EMBEDDING_KEYS = ("kbchat_model", "kbchat_weights", "kbchat_prefix", "kbchat_dim")
_CHUNK_KEYS = ("kbchat_chunk_tokens", "kbchat_chunk_overlap")


class StoreError(RuntimeError):
    """A store problem the user can act on; the message says how."""


class EmbeddingMismatchError(StoreError):
    """The collection was embedded differently from the current settings."""


def make_client(settings: Settings) -> ClientAPI:
    import chromadb
    from chromadb.config import Settings as ChromaClientSettings

    client_settings = ChromaClientSettings(anonymized_telemetry=False)
    if settings.chroma.host:
        try:
            return chromadb.HttpClient(
                host=settings.chroma.host,
                port=settings.chroma.port,
                ssl=settings.chroma.ssl,
                settings=client_settings,
            )
        except Exception as exc:
            raise StoreError(
                f"cannot reach the Chroma server at {settings.chroma.host}:{settings.chroma.port}"
                f" ({exc}); start it with `chroma run --path DIR --port {settings.chroma.port}` "
                "or unset KBCHAT_CHROMA_HOST to use the embedded store"
            ) from exc
    settings.chroma_dir.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.chroma_dir), settings=client_settings)


def collection_names(client: ClientAPI) -> list[str]:
    return sorted(c if isinstance(c, str) else c.name for c in client.list_collections())


_SETTING_FOR = {  # stored key -> (what, the setting that controls it)
    "kbchat_model": ("model", "KBCHAT_EMBEDDING_MODEL"),
    "kbchat_weights": ("weights", "KBCHAT_EMBEDDING_MODEL (the same model files)"),
    "kbchat_prefix": ("prefix scheme", "KBCHAT_EMBEDDING_PREFIX_SCHEME"),
    "kbchat_dim": ("dimension", "KBCHAT_EMBEDDING_MODEL"),
    "kbchat_chunk_tokens": ("chunk tokens", "KBCHAT_CHUNK_TOKENS"),
    "kbchat_chunk_overlap": ("chunk overlap", "KBCHAT_CHUNK_OVERLAP"),
}


def _describe(meta: dict[str, Any]) -> str:
    return (
        f"model {meta.get('kbchat_model')} (weights {meta.get('kbchat_weights')}), "
        f"prefix scheme {meta.get('kbchat_prefix')}, {meta.get('kbchat_dim')} dimensions, "
        f"chunks of {meta.get('kbchat_chunk_tokens')} tokens with "
        f"{meta.get('kbchat_chunk_overlap')} overlap"
    )


def check_compatible(
    name: str, stored: dict[str, Any], wanted: dict[str, Any], *, chunking: bool
) -> None:
    keys = _EMBEDDING_KEYS + (_CHUNK_KEYS if chunking else ())
    diff = [k for k in keys if k in wanted and stored.get(k) != wanted[k]]
    if not diff:
        return
    changes = "; ".join(f"{_SETTING_FOR[k][0]} {stored.get(k)} -> {wanted[k]}" for k in diff)
    restore = ", ".join(
        dict.fromkeys(
            f"{_SETTING_FOR[k][1]}={stored.get(k)}" if k != "kbchat_weights" else _SETTING_FOR[k][1]
            for k in diff
        )
    )
    raise EmbeddingMismatchError(
        f"collection {name!r} was embedded with {_describe(stored)}; the current settings "
        f"differ ({changes}). Vectors made differently cannot be mixed. Either go back to "
        f"{restore}, or re-embed it: `kbchat ingest PATH --collection {name} --reembed`."
    )


def open_collection(
    client: ClientAPI,
    name: str,
    spec: EmbeddingSpec,
    chunk_meta: dict[str, int] | None = None,
    *,
    create: bool = False,
) -> Collection:
    """Get (or create) a collection, refusing one embedded with another configuration.

    `chunk_meta` is given by ingestion: a change of chunking is refused there too, since
    unchanged files would keep their old chunks. Searching only needs the vectors to match.
    """
    validate_collection_name(name)
    wanted: dict[str, Any] = {**spec.as_metadata(), **(chunk_meta or {})}
    existing = collection_names(client)
    if name not in existing:
        if not create:
            listed = ", ".join(existing) or "none yet"
            raise StoreError(
                f"no knowledge base named {name!r} (existing: {listed}); "
                f"create it with `kbchat ingest PATH --collection {name}`"
            )
        return client.create_collection(
            name, metadata={"hnsw:space": "cosine", **wanted}, embedding_function=None
        )
    collection = client.get_collection(name, embedding_function=None)
    stored = dict(collection.metadata or {})
    check_compatible(name, stored, wanted, chunking=chunk_meta is not None)
    if chunk_meta is not None:  # ingestion writes: record every backend that wrote vectors
        backends = recorded_backends(stored) | {spec.backend}
        if backends != recorded_backends(stored) or "kbchat_backend" not in stored:
            update_metadata(collection, kbchat_backend="+".join(sorted(backends)))
    return collection


def recorded_backends(meta: dict[str, Any]) -> set[str]:
    """Backends that wrote a collection's vectors; collections older than the record: torch."""
    return set(str(meta.get("kbchat_backend") or "torch").split("+"))


def langchain_store(client: ClientAPI, name: str, embedder: Any) -> Chroma:
    """The collection as a LangChain vector store that embeds queries in the profile's form."""
    from langchain_chroma import Chroma

    open_collection(client, name, embedder.spec)  # refuses vectors made another way
    return Chroma(
        client=client,
        collection_name=name,
        embedding_function=embedder,
        create_collection_if_not_exists=False,
    )


def update_metadata(collection: Collection, **values: str | int) -> None:
    """Chroma refuses to see hnsw:* keys again in modify(); the space itself is kept."""
    current = {k: v for k, v in (collection.metadata or {}).items() if not k.startswith("hnsw:")}
    collection.modify(metadata={**current, **values})
