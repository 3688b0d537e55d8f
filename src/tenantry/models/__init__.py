"""Models: the protocol, the offline model, a function-backed model and provider adapters;
embedders for semantic memory search.

Provider adapters import their SDK only when used: `OpenAIChatModel` and `OpenAIEmbedder`
need `tenantry[openai]`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tenantry.models.base import Model, ModelBase, ModelResponse, StreamItem
from tenantry.models.embeddings import Embedder, OpenAIEmbedder
from tenantry.models.function import FunctionModel
from tenantry.models.offline import OfflineModel

if TYPE_CHECKING:
    from tenantry.models.openai import OpenAIChatModel
    from tenantry.settings import Settings


def model_from_settings(settings: Settings | None = None) -> Model:
    """Give the model the settings ask for: OpenAI-compatible when a key or base URL is set
    (or `TENANTRY_MODEL=openai:<name>`), else the offline model."""
    from tenantry.settings import Settings

    settings = settings or Settings()
    spec = (settings.model or "").strip()
    if spec == "offline":
        return OfflineModel()
    provider, _, name = spec.rpartition(":")
    if provider not in ("", "openai"):
        from tenantry.errors import InvalidInput

        raise InvalidInput(f"unknown model provider {provider!r} in {spec!r}; use openai:<model>")
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if key or settings.openai_base_url or spec:
        from tenantry.models.openai import OpenAIChatModel

        return OpenAIChatModel(
            name or "gpt-4o-mini", api_key=key, base_url=settings.openai_base_url
        )
    return OfflineModel()


def __getattr__(name: str) -> Any:
    if name == "OpenAIChatModel":
        from tenantry.models.openai import OpenAIChatModel

        return OpenAIChatModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
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
