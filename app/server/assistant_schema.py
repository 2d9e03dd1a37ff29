"""What an assistant is made of, with a limit on every field: the admin API's bodies and answers,
and the public widget configuration (`WidgetConfig`, the contract with widget.js).

Everything here may reach a visitor's page or the LLM's system prompt, so text refuses control
characters, URLs are a same-site path or https only (never javascript: or data:), colours and
language codes match a pattern, and every list and map has a maximum size."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from app.server.handoff_schema import HandoffConfig, HandoffSettings
from app.server.inputs import CollectionName, Text

MAX_NAME = 80
MAX_GREETING = 600
MAX_SUGGESTION = 150
MAX_SUGGESTIONS = 6
MAX_LANGUAGES = 40  # greeting and suggestions each; no site needs more
MAX_INSTRUCTIONS = 4000
MAX_URL = 2048
MAX_ORIGINS = 20
MAX_KEYS = 20  # per assistant
MAX_CONSENT = 1000
DEFAULT_COLOR = "#2563eb"
SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
# BCP-47-ish: a 2-3 letter language, then up to three subtags (script, region, variant)
LANGUAGE_PATTERN = r"^[a-z]{2,3}(?:-[A-Za-z0-9]{2,8}){0,3}$"
_PATH = re.compile(r"^/(?!/)[A-Za-z0-9._~%/+-]{0,511}$")
_HOST = re.compile(r"^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?(?::\d{1,5})?$")


def _no_controls(keep: str) -> AfterValidator:
    """Refuse control and format characters (bidi overrides included), except those in `keep`."""

    def check(value: str) -> str:
        for char in value:
            if char not in keep and unicodedata.category(char) in {"Cc", "Cf", "Cs", "Co"}:
                raise ValueError(f"control character U+{ord(char):04X} is not allowed")
        return value

    return AfterValidator(check)


def _avatar(value: str) -> str:
    """A path on this server (/static/logo.png) or an https URL; nothing a browser runs, and
    no quotes, parentheses or spaces, so it cannot leave an HTML attribute or a CSS url()."""
    if _PATH.match(value):
        return value
    parts = urlsplit(value)
    if (
        parts.scheme != "https"
        or not _HOST.match(parts.netloc.lower())
        or not re.fullmatch(r"[A-Za-z0-9._~%/+:;=?&!$*,@#-]*", value[len("https://") :])
        or any(c in value for c in "\"'<>\\ ")
    ):
        raise ValueError("avatar must be a path starting with / or an https:// URL")
    return value


def _webhook_url(value: str) -> str:
    """http(s)://host[:port]/path?query, no credentials or fragment; whether http and private
    hosts are allowed is the server's setting (app.server.lead_webhook.check_target)."""
    parts = urlsplit(value)
    if (
        parts.scheme not in {"http", "https"}
        or not _HOST.match(parts.netloc.lower())
        or parts.fragment
        or any(c in value for c in "\"'<>\\ ")
    ):
        raise ValueError("webhook_url must be an https:// URL without credentials")
    try:
        parts.port  # noqa: B018 - raises for a port beyond 65535
    except ValueError as exc:
        raise ValueError("webhook_url has an invalid port") from exc
    return value


def _origin(value: str) -> str:
    """scheme://host[:port], nothing else: how browsers send Origin."""
    value = value.rstrip("/").lower()
    parts = urlsplit(value)
    if (
        parts.scheme not in {"http", "https"}
        or not _HOST.match(parts.netloc)
        or value != (f"{parts.scheme}://{parts.netloc}")
    ):
        raise ValueError("an origin is http(s)://host[:port] without a path")
    return value


Slug = Annotated[Text, Field(pattern=SLUG_PATTERN, description="Lower-case slug id.")]
LanguageCode = Annotated[Text, Field(pattern=LANGUAGE_PATTERN, max_length=35)]
Name = Annotated[Text, Field(max_length=MAX_NAME), _no_controls("")]
Greeting = Annotated[Text, Field(max_length=MAX_GREETING), _no_controls("\n")]
Suggestion = Annotated[Text, Field(min_length=1, max_length=MAX_SUGGESTION), _no_controls("")]
Instructions = Annotated[Text, Field(max_length=MAX_INSTRUCTIONS), _no_controls("\n\t")]
Avatar = Annotated[Text, Field(max_length=MAX_URL), AfterValidator(_avatar)]
Color = Annotated[Text, Field(pattern=r"^#[0-9a-fA-F]{6}$"), AfterValidator(lambda c: c.lower())]
ModelName = Annotated[Text, Field(pattern=r"^[A-Za-z0-9._:/@+-]{1,128}$")]
Origin = Annotated[Text, Field(max_length=255), AfterValidator(_origin)]
WebhookUrl = Annotated[Text, Field(max_length=MAX_URL), AfterValidator(_webhook_url)]
Consent = Annotated[Text, Field(min_length=1, max_length=MAX_CONSENT), _no_controls("\n")]
Position = Literal["right", "left"]
Theme = Literal["auto", "light", "dark"]
Greetings = Annotated[dict[LanguageCode, Greeting], Field(max_length=MAX_LANGUAGES)]
Suggestions = Annotated[
    dict[LanguageCode, Annotated[list[Suggestion], Field(max_length=MAX_SUGGESTIONS)]],
    Field(max_length=MAX_LANGUAGES),
]


class Caps(BaseModel):
    """Per widget key, on top of the rate limits; None: no cap."""

    model_config = ConfigDict(extra="forbid")
    session_messages: int | None = Field(
        None, ge=1, le=1000, description="Messages one conversation may have."
    )
    daily_messages: int | None = Field(
        None, ge=1, le=100_000, description="Messages per key in any 24 hours."
    )


class LeadCapture(BaseModel):
    """Asking visitors for their name and email, with the operator's consent text."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["off", "before", "after"] = Field(
        "off", description="before: no chat until the form is sent; after: after N answers."
    )
    after_messages: int = Field(3, ge=1, le=50, description="N for mode `after`.")
    consent: Annotated[dict[LanguageCode, Consent], Field(max_length=MAX_LANGUAGES)] = Field(
        default_factory=dict,
        description="The consent checkbox's text per language (plain text); required when on.",
    )
    webhook_url: WebhookUrl | None = Field(
        None,
        description="Gets a signed POST per new lead (see README); https to a public host unless "
        "KBCHAT_WEBHOOK_ALLOW_PRIVATE. Its secret comes from POST .../webhook-secret.",
    )

    @model_validator(mode="after")
    def _consent_when_on(self) -> LeadCapture:
        if self.mode != "off" and not self.consent:
            raise ValueError("lead capture needs a consent text (in the default language)")
        return self


class AssistantSettings(BaseModel):
    """An assistant's settings: what PUT takes whole, and what POST takes with its `id`."""

    model_config = ConfigDict(extra="forbid")
    name: Name = Field("", description="Shown in the widget's header; plain text.")
    avatar: Avatar | None = Field(None, description="A path on this server or an https URL.")
    color: Color = Field(DEFAULT_COLOR, description="Primary colour, #rrggbb.")
    position: Position = "right"
    theme: Theme = Field("auto", description="auto follows the visitor's prefers-color-scheme.")
    greeting: Greetings = Field(default_factory=dict, description="Greeting per language.")
    suggestions: Suggestions = Field(
        default_factory=dict, description="Suggested questions per language."
    )
    default_language: LanguageCode = Field(
        "en", description="Used when the visitor's language has no greeting or suggestions."
    )
    instructions: Instructions = Field(
        "",
        description="Persona and tone, added to the system prompt below kbchat's grounding "
        "rules (prompts/persona.txt), which win on conflict. Never sent to visitors.",
    )
    collection: CollectionName | None = Field(
        None, description="Knowledge base it answers from; unset: the default."
    )
    model: ModelName | None = Field(
        None, description="LLM model: KBCHAT_LLM_MODEL or one of KBCHAT_LLM_ALLOWED_MODELS."
    )
    caps: Caps = Field(default_factory=Caps)
    fullpage: bool = Field(
        False,
        description="Serve the full-page assistant at /a/{id} (chats from that page need no "
        "key: same-origin requests naming the assistant get its caps and persona).",
    )
    leads: LeadCapture = Field(default_factory=LeadCapture)
    handoff: HandoffSettings = Field(default_factory=HandoffSettings)

    @model_validator(mode="after")
    def _consent_in_default_language(self) -> AssistantSettings:
        if self.leads.mode != "off" and self.default_language not in self.leads.consent:
            raise ValueError("leads.consent needs a text for default_language")
        return self


class AssistantCreate(AssistantSettings):
    id: Slug


class AssistantPatch(BaseModel):
    """Only the fields given change; the result is validated as a whole."""

    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    avatar: Avatar | None = None
    color: Color | None = None
    position: Position | None = None
    theme: Theme | None = None
    greeting: Greetings | None = None
    suggestions: Suggestions | None = None
    default_language: LanguageCode | None = None
    instructions: Instructions | None = None
    collection: CollectionName | None = None
    model: ModelName | None = None
    caps: Caps | None = None
    fullpage: bool | None = None
    leads: LeadCapture | None = None
    handoff: HandoffSettings | None = None


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    origins: list[Origin] = Field(
        default_factory=list,
        max_length=MAX_ORIGINS,
        description="Sites allowed to use the key; empty: pages of this server only.",
    )


class KeyOut(BaseModel):
    id: str = Field(description="Names the key in the admin API; not the key itself.")
    origins: list[str]
    created: datetime


class KeyCreated(KeyOut):
    key: str = Field(description="The widget key: shown this once, only its hash is stored.")


class AssistantOut(AssistantCreate):
    created: datetime
    updated: datetime
    keys: list[KeyOut]


class LeadConfig(BaseModel):
    """The widget's part of LeadCapture: never the webhook."""

    mode: Literal["off", "before", "after"]
    after_messages: int
    consent: dict[str, str] = Field(description="Per language, like `greeting`.")


class WidgetConfig(BaseModel):
    """What widget.js needs to draw itself, and nothing else (no instructions, keys or caps)."""

    model_config = ConfigDict(extra="forbid")
    assistant: str = Field(description="The assistant's id; empty for a key without one.")
    name: str
    avatar: str | None
    color: str
    position: Position
    theme: Theme
    greeting: dict[str, str]
    suggestions: dict[str, list[str]]
    default_language: str
    lead: LeadConfig
    handoff: HandoffConfig

    @classmethod
    def of(cls, assistant: str, settings: AssistantSettings) -> WidgetConfig:
        return cls(
            assistant=assistant,
            **settings.model_dump(
                include={
                    "name",
                    "avatar",
                    "color",
                    "position",
                    "theme",
                    "greeting",
                    "suggestions",
                    "default_language",
                }
            ),
            lead=LeadConfig(**settings.leads.model_dump(exclude={"webhook_url"})),
            handoff=HandoffConfig(enabled=settings.handoff.enabled),
        )
