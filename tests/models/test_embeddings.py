"""OpenAIEmbedder against the local fake OpenAI server (never the network), and semantic memory
search with its vectors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tenantry import Embedder, InMemoryStore, OpenAIEmbedder
from tenantry.errors import InvalidInput, ModelHTTPError, ModelUnreachable
from tests.support.fake_openai import EMBEDDING_DIMENSIONS, FakeOpenAI, Reply, bag_of_words
from tests.support.servers import free_port, serve


@pytest.fixture
def fake() -> Iterator[tuple[FakeOpenAI, str]]:
    api = FakeOpenAI()
    with serve(api.app()) as url:
        yield api, f"{url}/v1"


def _embedder(base_url: str, **options: object) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        "test-embedder", api_key="sk-test", base_url=base_url, max_retries=0, **options
    )


async def test_texts_come_back_as_vectors_in_their_order(fake: tuple[FakeOpenAI, str]) -> None:
    api, url = fake
    embedder = _embedder(url)
    assert isinstance(embedder, Embedder)
    assert (embedder.name, embedder.dimensions) == ("test-embedder", None)
    texts = ["green tea", "Berlin", "the user's cats"]
    vectors = await embedder.embed(texts)
    for vector, text in zip(vectors, texts, strict=True):
        assert vector == pytest.approx(bag_of_words(text))
    assert embedder.dimensions == EMBEDDING_DIMENSIONS
    (sent,) = api.embedding_requests
    assert sent == {"model": "test-embedder", "input": texts, "encoding_format": "float"}
    await embedder.aclose()


async def test_dimensions_are_asked_for_and_batches_stay_in_order(
    fake: tuple[FakeOpenAI, str],
) -> None:
    api, url = fake
    embedder = _embedder(url, dimensions=8, batch_size=2)
    texts = [f"text number {i}" for i in range(5)]
    vectors = await embedder.embed(texts)
    for vector, text in zip(vectors, texts, strict=True):
        assert vector == pytest.approx(bag_of_words(text, 8))
    assert [len(r["input"]) for r in api.embedding_requests] == [2, 2, 1]
    assert {r["dimensions"] for r in api.embedding_requests} == {8}
    assert await embedder.embed([]) == []
    assert len(api.embedding_requests) == 3
    await embedder.aclose()


async def test_an_http_error_is_a_model_http_error(fake: tuple[FakeOpenAI, str]) -> None:
    api, url = fake
    api.embedding_errors.append(Reply(status=400, error="input too long"))
    embedder = _embedder(url)
    with pytest.raises(ModelHTTPError, match="input too long") as caught:
        await embedder.embed(["x"])
    assert caught.value.status_code == 400
    assert len(await embedder.embed(["x"])) == 1  # the next call works
    await embedder.aclose()


async def test_an_unreachable_endpoint_is_model_unreachable() -> None:
    embedder = _embedder(f"http://127.0.0.1:{free_port()}/v1", timeout=5)
    with pytest.raises(ModelUnreachable, match="test-embedder"):
        await embedder.embed(["x"])
    await embedder.aclose()


@pytest.mark.parametrize("bad", ["one text", [""], ["  "], [None]])
async def test_bad_texts_are_refused_before_any_request(
    fake: tuple[FakeOpenAI, str], bad: object
) -> None:
    api, url = fake
    embedder = _embedder(url)
    with pytest.raises(InvalidInput):
        await embedder.embed(bad)  # type: ignore[arg-type]
    assert api.embedding_requests == []
    await embedder.aclose()


@pytest.mark.parametrize("bad", [{"dimensions": 0}, {"batch_size": 0}, {"batch_size": 5000}])
def test_bad_options_are_refused(bad: dict[str, int]) -> None:
    with pytest.raises(InvalidInput):
        _embedder("http://127.0.0.1:1/v1", **bad)


async def test_memories_stored_with_vectors_are_found_by_meaning(
    fake: tuple[FakeOpenAI, str],
) -> None:
    _, url = fake
    embedder = _embedder(url)
    store = InMemoryStore()
    facts = ["The user loves green tea", "The user lives in Berlin", "The user has two cats"]
    for fact, vector in zip(facts, await embedder.embed(facts), strict=True):
        await store.add_memory(fact, user_id="alice", embedding=vector)
    (query,) = await embedder.embed(["green tea every morning"])
    found = await store.search_memories("ignored words", user_id="alice", embedding=query)
    assert found[0].text == "The user loves green tea"
    assert await store.search_memories("x", user_id="bob", embedding=query) == []
    await embedder.aclose()
