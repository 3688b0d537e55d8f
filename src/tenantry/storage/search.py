"""Memory search: one tokeniser for every backend, BM25 and cosine ranking in process.

`tokens(text)` casefolds the text and keeps its runs of Unicode letters and digits, less a
small stop-word list (so "what is my name" searches for "name" only), with English plurals
and third persons folded to their stem by Harman's "S" stemmer ("lives" and "live" are one
word; nothing more aggressive, so no two unrelated words merge). Every backend indexes and
queries the same tokens, so a memory is found by the same words everywhere.

Why search costs the same whatever other tenants store: a plain full-text index over every
user's memories has one posting list per word, and a common word's list spans every user, so
a query would walk other tenants' entries. The database backends therefore index each token
prefixed by a short key of its user (`user_terms`: "u" + 12 hex digits of a hash of the user
id + the token): a query's posting lists hold that user's memories only. Two users whose keys
collide (one pair in about 10^14) only share posting lists; every query still filters on the
user id, so nothing leaks and only that pair's cost is shared.

The in-process backends rank with BM25 over the user's own memories: `TermIndex` (one per user
in `InMemoryStore`) keeps an inverted index, and `bm25` ranks documents given as token lists
(Redis, which stores each memory's tokens). Semantic search (`cosine`) compares the query's
vector with each of the user's stored vectors: O(memories x dimensions) in process.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import operator
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

MAX_QUERY_TERMS = 32
"""Distinct tokens of a query that are searched for; the rest are ignored (bounds the cost)."""
MAX_TOKEN_CHARS = 64
"""Longer tokens are cut to this many characters."""
K1, B = 1.2, 0.75
"""BM25's usual parameters (FTS5's too)."""

_WORD = re.compile(r"[^\W_]+")
_STOP_WORDS_TEXT = """
    a about am an and any are as at be been but by can could did do does for from had has
    have he her hers him his how i if in is it its me mine my no not of on or our ours she so
    than that the their theirs them then there these they this those to too us was we were
    what when where which who whom why will with would you your yours
    user users
"""
STOP_WORDS = frozenset(_STOP_WORDS_TEXT.split())
"""Words that say nothing about which memory is meant. "user" is one: memories are facts
about the user ("The user's name is Alice"), so nearly every memory holds it."""


def tokens(text: str) -> list[str]:
    """Give the searchable tokens of `text` in order: casefolded runs of letters and digits,
    without stop words and single ASCII letters, plurals stemmed."""
    found = []
    for word in _WORD.findall(text.casefold()):
        if word in STOP_WORDS or (len(word) == 1 and word.isascii() and word.isalpha()):
            continue
        found.append(_stem(word)[:MAX_TOKEN_CHARS])
    return found


def _stem(word: str) -> str:
    """Harman's S stemmer (1991), on ASCII words of four letters or more."""
    if len(word) < 4 or not word.isascii() or word[-1] != "s":
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if word.endswith(("us", "ss")):
        return word
    return word[:-1]


def query_terms(query: str) -> list[str]:
    """Give the distinct tokens of a query, in order, at most MAX_QUERY_TERMS."""
    return list(dict.fromkeys(tokens(query)))[:MAX_QUERY_TERMS]


def user_key(user_id: str) -> str:
    """Give the short key that prefixes a user's indexed tokens: "u" + 12 hex digits."""
    return "u" + hashlib.blake2b(user_id.encode(), digest_size=6).hexdigest()


def user_terms(user_id: str, words: Iterable[str]) -> list[str]:
    """Give `words` (tokens) prefixed by the user's key, as the database indexes hold them."""
    key = user_key(user_id)
    return [key + word for word in words]


def bm25(terms: Sequence[str], documents: Mapping[str, Sequence[str]], limit: int) -> list[str]:
    """Give the ids of the `limit` best documents for `terms`, best first (ties: the later
    id in `documents`' order first); `documents` maps an id to its tokens."""
    if not documents or not terms:
        return []
    wanted = set(terms)
    counts: dict[str, Counter[str]] = {}
    frequency: Counter[str] = Counter()
    position: dict[str, int] = {}
    total = 0
    for i, (doc_id, words) in enumerate(documents.items()):
        total += len(words)
        if wanted.isdisjoint(words):  # most documents: one C-level check, no counting
            continue
        hits = Counter(w for w in words if w in wanted)
        counts[doc_id] = hits
        position[doc_id] = i
        frequency.update(hits.keys())
    lengths = {doc_id: len(documents[doc_id]) for doc_id in counts}
    return _best(terms, counts, frequency, lengths, len(documents), total, limit, position)


class TermIndex:
    """An inverted index of one user's memories, for BM25 in process: a search reads the
    postings of its terms only."""

    __slots__ = ("_lengths", "_postings", "_total")

    def __init__(self) -> None:
        self._postings: dict[str, dict[str, int]] = {}
        self._lengths: dict[str, int] = {}
        self._total = 0

    def add(self, doc_id: str, words: Sequence[str]) -> None:
        """Index a document (replacing what was indexed under `doc_id`)."""
        self.remove(doc_id)
        for word, n in Counter(words).items():
            self._postings.setdefault(word, {})[doc_id] = n
        self._lengths[doc_id] = len(words)
        self._total += len(words)

    def remove(self, doc_id: str, words: Iterable[str] | None = None) -> None:
        """Forget a document; `words`, its tokens, if known, spare a walk of every posting."""
        length = self._lengths.pop(doc_id, None)
        if length is None:
            return
        self._total -= length
        for word in set(words) if words is not None else list(self._postings):
            postings = self._postings.get(word)
            if postings is not None and postings.pop(doc_id, None) is not None and not postings:
                del self._postings[word]

    def search(self, terms: Sequence[str], limit: int, order: Mapping[str, int]) -> list[str]:
        """Give the ids of the `limit` best documents, best first; ties go to the document
        with the higher `order` (most recently updated). Scores as `_best` does, summed term
        by term in the query's order, without building a counter per document."""
        lengths = self._lengths
        docs = len(lengths)
        if not docs:
            return []
        average = (self._total / docs) or 1.0
        scores: dict[str, float] = {}
        for term in dict.fromkeys(terms):
            postings = self._postings.get(term)
            if not postings:
                continue
            found = len(postings)
            idf = math.log(1 + (docs - found + 0.5) / (found + 0.5))
            for doc_id, n in postings.items():
                norm = K1 * (1 - B + B * lengths[doc_id] / average)
                scores[doc_id] = scores.get(doc_id, 0.0) + idf * n * (K1 + 1) / (n + norm)
        best = heapq.nlargest(limit, [(s, order.get(d, -1), d) for d, s in scores.items()])
        return [doc_id for _, _, doc_id in best]


def _best(
    terms: Sequence[str],
    counts: Mapping[str, Counter[str]],
    frequency: Mapping[str, int],
    lengths: Mapping[str, int],
    docs: int,
    total: int,
    limit: int,
    rank: Mapping[str, int],
) -> list[str]:
    """Score the matching documents with BM25 and give the ids of the best `limit`; ties go
    to the higher `rank` (the more recently updated)."""
    if not counts:
        return []
    average = total / docs if docs else 1.0
    idf = {t: math.log(1 + (docs - frequency[t] + 0.5) / (frequency[t] + 0.5)) for t in terms}
    scored = []
    for doc_id, hits in counts.items():
        norm = K1 * (1 - B + B * lengths[doc_id] / (average or 1.0))
        score = sum(idf[t] * n * (K1 + 1) / (n + norm) for t, n in hits.items())
        scored.append((score, rank.get(doc_id, -1), doc_id))
    scored.sort(reverse=True)
    return [doc_id for _, _, doc_id in scored[:limit]]


def cosine(
    query: Sequence[float], vectors: Iterable[tuple[str, Sequence[float]]], limit: int
) -> list[str]:
    """Give the ids of the `limit` vectors nearest to `query`, nearest first. Vectors of
    another length (another embedder's) are left out. Stored vectors are unit length
    (`codec.encode_vector`), so the dot product is the cosine up to the query's norm."""
    dimensions = len(query)
    scored = [
        (sum(map(operator.mul, query, vector)), i, doc_id)
        for i, (doc_id, vector) in enumerate(vectors)
        if len(vector) == dimensions
    ]
    scored.sort(reverse=True)
    return [doc_id for _, _, doc_id in scored[:limit]]


__all__ = [
    "MAX_QUERY_TERMS",
    "STOP_WORDS",
    "TermIndex",
    "bm25",
    "cosine",
    "query_terms",
    "tokens",
    "user_key",
    "user_terms",
]
