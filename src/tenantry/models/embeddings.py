"""Embedders: texts in, vectors out, for semantic memory search.

`Embedder` is the protocol (anything with `name`, `dimensions` and `async embed(texts)`);
`OpenAIEmbedder` is any OpenAI-compatible embeddings endpoint (OpenAI, Ollama, vLLM, LM
Studio, llama.cpp's server ...) through the official SDK's `client.embeddings.create`.

An embedder is optional: without one, memory search ranks by keywords and works offline. With
one, embed each memory's text when storing it (`Store.add_memory(..., embedding=...)`) and the
query when searching (`search_memories(..., embedding=...)`), with the same embedder: vectors
of another length are never compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from tenantry.errors import (
    InvalidInput,
    MissingDependency,
    ModelError,
    ModelHTTPError,
    ModelUnreachable,
)

if TYPE_CHECKING:
    from openai import AsyncOpenAI

MAX_BATCH = 256
"""Texts per request (the API takes up to 2048; smaller batches fail and retry cheaper)."""


@runtime_checkable
class Embedder(Protocol):
    """Anything that turns texts into vectors of one length. Must not keep per-tenant state."""

    @property
    def name(self) -> str: ...

    @property
    def dimensions(self) -> int | None:
        """The length of its vectors, once known (None before the first call, if unsaid)."""

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Give one vector per text, in the order of `texts`."""


class OpenAIEmbedder:
    """Embeddings through `openai.AsyncOpenAI`; one client shared by every tenant.

    `OpenAIEmbedder("text-embedding-3-small")` for OpenAI (key from OPENAI_API_KEY), or
    `OpenAIEmbedder("nomic-embed-text", base_url="http://localhost:11434/v1")` for Ollama.
    `dimensions` asks text-embedding-3 models for shorter vectors."""

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        client: AsyncOpenAI | None = None,
        dimensions: int | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        batch_size: int = MAX_BATCH,
    ) -> None:
        try:
            import openai  # noqa: F401 - the SDK is the extra tenantry[openai]
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            raise MissingDependency("openai", "openai") from exc
        from tenantry.models.openai import OpenAIChatModel

        if dimensions is not None and (isinstance(dimensions, bool) or dimensions < 1):
            raise InvalidInput(f"dimensions must be a positive integer, got {dimensions!r}")
        if isinstance(batch_size, bool) or not 1 <= batch_size <= 2048:
            raise InvalidInput(f"batch_size must be 1 to 2048, got {batch_size!r}")
        self.model = model
        self._dimensions = dimensions
        self._asked = dimensions
        self._batch = batch_size
        # The same client rules as the chat model: a local server needs no key.
        self.client = client or OpenAIChatModel._client(api_key, base_url, timeout, max_retries)

    @property
    def name(self) -> str:
        return self.model

    @property
    def dimensions(self) -> int | None:
        return self._dimensions

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Give one vector per text, in order (one request per `batch_size` texts)."""
        if isinstance(texts, str):
            raise InvalidInput("embed takes a list of texts; wrap a single text in a list")
        batch = list(texts)
        for text in batch:
            if not isinstance(text, str) or not text.strip():
                raise InvalidInput(f"every text to embed must be a non-blank str, got {text!r}")
        vectors: list[list[float]] = []
        for start in range(0, len(batch), self._batch):
            vectors += await self._request(batch[start : start + self._batch])
        return vectors

    async def _request(self, texts: list[str]) -> list[list[float]]:
        import openai

        options: dict[str, Any] = {"dimensions": self._asked} if self._asked else {}
        try:
            response = await self.client.embeddings.create(
                model=self.model, input=texts, encoding_format="float", **options
            )
        except openai.APIStatusError as exc:
            raise ModelHTTPError(exc.status_code, exc.message, model=self.model) from exc
        except openai.APIConnectionError as exc:
            message = f"cannot reach the embeddings API for {self.model!r}: {exc}"
            raise ModelUnreachable(message) from exc
        except openai.OpenAIError as exc:
            raise ModelError(f"embedding model {self.model!r} failed: {exc}") from exc
        data = sorted(response.data, key=lambda item: item.index)
        if [item.index for item in data] != list(range(len(texts))):
            raise ModelError(
                f"embedding model {self.model!r} gave {len(data)} vectors for {len(texts)} texts"
            )
        vectors = [list(item.embedding) for item in data]
        lengths = {len(vector) for vector in vectors}
        if len(lengths) != 1 or (self._dimensions or next(iter(lengths))) not in lengths:
            raise ModelError(
                f"embedding model {self.model!r} gave vectors of lengths {sorted(lengths)}, "
                f"expected {self._dimensions or 'one length'}"
            )
        self._dimensions = next(iter(lengths))
        return vectors

    async def aclose(self) -> None:
        """Close the HTTP client (only needed when you created many embedders)."""
        await self.client.close()


__all__ = ["MAX_BATCH", "Embedder", "OpenAIEmbedder"]
