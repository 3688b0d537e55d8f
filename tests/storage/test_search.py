"""The tokeniser and the rankings every backend's memory search shares (storage/search.py)."""

from __future__ import annotations

import random

from tenantry.storage.search import (
    MAX_QUERY_TERMS,
    TermIndex,
    bm25,
    cosine,
    query_terms,
    tokens,
    user_key,
    user_terms,
)


def test_tokens_are_casefolded_words_without_stop_words() -> None:
    assert tokens("What's my NAME?") == ["name"]
    assert tokens("The user's name is Alice") == ["name", "alice"]
    assert tokens("Straße, naïve café; 日本語のテキスト 42") == [
        "strasse",
        "naïve",
        "café",
        "日本語のテキスト",
        "42",
    ]
    assert tokens("snake_case-and.dots") == ["snake", "case", "dot"]


def test_plurals_and_third_persons_meet_their_stem() -> None:
    assert tokens("lives likes cats cities") == tokens("live like cat city")
    assert tokens("bus glass business") == ["bus", "glass", "business"]  # not plurals


def test_a_query_searches_each_word_once_and_at_most_a_bounded_number() -> None:
    assert query_terms("tea tea green TEA") == ["tea", "green"]
    many = " ".join(f"word{i}" for i in range(100))
    assert len(query_terms(many)) == MAX_QUERY_TERMS


def test_user_terms_carry_a_per_user_key_made_of_letters_and_digits() -> None:
    key = user_key("alice")
    assert key == user_key("alice") != user_key("bob")
    assert len(key) == 13
    assert key.startswith("u")
    assert key[1:].isalnum()
    assert user_terms("alice", ["tea"]) == [key + "tea"]


def test_the_inverted_index_ranks_like_bm25_over_the_same_documents() -> None:
    rng = random.Random(3)
    words = ["tea", "coffee", "green", "berlin", "cat", "name", "alice", "paris"]
    docs = {f"d{i}": [rng.choice(words) for _ in range(rng.randint(1, 8))] for i in range(60)}
    index = TermIndex()
    for doc_id, doc in docs.items():
        index.add(doc_id, doc)
    order = {doc_id: i for i, doc_id in enumerate(docs)}
    for query in (["tea"], ["green", "tea"], ["alice", "paris", "cat"], ["nothing"]):
        assert index.search(query, 10, order) == bm25(query, docs, 10)
    index.remove("d0", docs["d0"])
    index.remove("d1")
    del docs["d0"], docs["d1"]
    order = {doc_id: i for i, doc_id in enumerate(docs)}
    assert index.search(["tea", "cat"], 60, order) == bm25(["tea", "cat"], docs, 60)


def test_bm25_prefers_rarer_words_and_shorter_documents() -> None:
    docs = {
        "green1": ["green", "thing"],
        "green2": ["green", "other"],
        "green3": ["green", "more"],
        "rare": ["tea", "thing"],
        "long": ["tea", "a1", "a2", "a3", "a4", "a5", "a6", "a7"],
    }
    assert bm25(["green", "tea"], docs, 5)[0] == "rare"
    assert bm25(["tea"], docs, 5) == ["rare", "long"]


def test_cosine_ranks_nearest_first_and_skips_other_lengths() -> None:
    vectors = [("a", [1.0, 0.0]), ("b", [0.0, 1.0]), ("c", [0.7, 0.7]), ("d", [1.0, 0.0, 0.0])]
    assert cosine([1.0, 0.1], vectors, 10) == ["a", "c", "b"]
    assert cosine([1.0, 0.1], vectors, 1) == ["a"]
