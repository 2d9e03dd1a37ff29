"""The chat model: any OpenAI-compatible endpoint through langchain-openai, or none at all."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from app.settings import Settings


def build_chat_model(settings: Settings) -> BaseChatModel | None:
    """None when neither OPENAI_API_KEY nor OPENAI_BASE_URL is set: the extractive mode."""
    if not settings.llm_configured:
        return None
    from langchain_openai import ChatOpenAI
    from pydantic import SecretStr

    key = settings.openai_api_key or SecretStr("not-needed")  # local servers want no key
    llm = settings.llm
    return ChatOpenAI(
        model=llm.model,
        api_key=key,
        base_url=settings.openai_base_url,
        temperature=llm.temperature,
        timeout=llm.timeout,
        max_retries=0,  # the chain retries itself, within the answer's deadline
        max_tokens=llm.max_tokens,
        stream_usage=llm.stream_usage,  # the LLM's own counts for /v1 `usage`
    )
