"""Models: the protocol, the offline model, a function-backed model and provider adapters;
embedders for semantic memory search.

Provider adapters import their SDK only when used: `OpenAIChatModel` and `OpenAIEmbedder`
need `tenantry[openai]`, `AnthropicModel` needs `tenantry[anthropic]`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tenantry.models.base import Model, ModelBase, ModelResponse, StreamItem
from tenantry.models.embeddings import Embedder, OpenAIEmbedder
from tenantry.models.function import FunctionModel
from tenantry.models.offline import OfflineModel

if TYPE_CHECKING:
    from tenantry.models.anthropic import AnthropicModel
    from tenantry.models.openai import OpenAIChatModel
    from tenantry.settings import Settings


def model_from_settings(settings: Settings | None = None) -> Model:
    """Give the model the settings ask for: Anthropic for `TENANTRY_MODEL=anthropic:<name>`;
    OpenAI-compatible when a key or base URL is set (or `TENANTRY_MODEL=openai:<name>`); else
    the offline model. With a base URL and no model name, the model is the only one that
    server lists (`gpt-4o-mini` is OpenAI's)."""
    from tenantry.settings import Settings

    settings = settings or Settings()
    spec = (settings.model or "").strip()
    if spec == "offline":
        return OfflineModel()
    provider, _, name = spec.partition(":") if ":" in spec else ("", "", spec)
    if provider == "anthropic":
        return _anthropic(name, settings)
    if provider not in ("", "openai"):
        from tenantry.errors import InvalidInput

        raise InvalidInput(
            f"unknown model provider {provider!r} in {spec!r}; use openai:<model> or "
            "anthropic:<model>"
        )
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if key or settings.openai_base_url or spec:
        from tenantry.models.openai import OpenAIChatModel

        default = None if settings.openai_base_url else "gpt-4o-mini"
        return OpenAIChatModel(name or default, api_key=key, base_url=settings.openai_base_url)
    return OfflineModel()


def _anthropic(name: str, settings: Settings) -> Model:
    from tenantry.models.anthropic import AnthropicModel

    key = settings.anthropic_api_key
    return AnthropicModel(
        name,
        api_key=key.get_secret_value() if key else None,
        base_url=settings.anthropic_base_url,
    )


def __getattr__(name: str) -> Any:
    if name == "AnthropicModel":
        from tenantry.models.anthropic import AnthropicModel

        return AnthropicModel
    if name == "OpenAIChatModel":
        from tenantry.models.openai import OpenAIChatModel

        return OpenAIChatModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AnthropicModel",
    "Embedder",
    "FunctionModel",
    "Model",
    "ModelBase",
    "ModelResponse",
    "OfflineModel",
    "OpenAIChatModel",
    "OpenAIEmbedder",
    "StreamItem",
    "model_from_settings",
]
