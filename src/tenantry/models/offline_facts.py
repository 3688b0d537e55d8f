"""What the offline model understands about a user: simple facts in what the user says, and
its deterministic answers to tenantry's memory tasks (extraction and summaries).

It knows two kinds of fact, each kept as one sentence about "the user":

- a name: "My name is Alice", "call me Bob", "私の名前はアリスです" -> "The user's name is Alice."
- a home: "I live in Paris", "I moved from Paris to Berlin" -> "The user lives in Berlin."

A newer fact of a kind replaces the older one (UPDATE, never a second fact), and "forget my
name" / "forget where I live" delete it. That is enough to show memory learning, supersession
and recall across sessions with no API key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from tenantry.models.tasks import ExtractionRequest, Operation, SummaryRequest

_CHAR = r"[^\s.,!?;:\"'。、！？]"
_NAME_STATEMENTS = (
    # "my name is Alice", "My name is Alice Smith." (later words only when capitalised)
    re.compile(rf"(?i:\bmy\s+name\s+is|\bcall\s+me)\s+(?P<name>{_CHAR}+(?:\s+[A-Z]{_CHAR}*)*)"),
    re.compile(
        r"(?:私の名前は|僕の名前は|わたしの名前は)\s*(?P<name>[^\s。、！？!?.]+?)(?:です|だ|。|！|$)"
    ),
)
_PLACE = rf"(?P<place>{_CHAR}+(?:\s+[A-Z]{_CHAR}*)*)"
_HOME_STATEMENTS = (
    re.compile(
        rf"(?i:\bI\s+(?:now\s+|still\s+)?live\s+in|\bI(?:'m|\s+am)\s+living\s+in)\s+{_PLACE}"
    ),
    re.compile(rf"(?i:\bI(?:'ve|\s+have)?\s+(?:just\s+)?moved\b[^.!?;]*?\bto)\s+{_PLACE}"),
)
_NOT_PLACES = frozenset({"a", "an", "the", "my", "our", "here", "there", "live", "work"})
_FORGET = {
    "name": re.compile(r"(?i)\bforget\s+(?:my\s+name|what\s+my\s+name\s+is|who\s+I\s+am)\b"),
    "home": re.compile(r"(?i)\bforget\s+(?:where\s+I\s+live|my\s+(?:home|address|city))\b"),
}
_SENTENCES = {
    "name": (re.compile(r"The user's name is (?P<value>[^.]+)\."), "The user's name is {}."),
    "home": (re.compile(r"The user lives in (?P<value>[^.]+)\."), "The user lives in {}."),
}
_SAID = re.compile(r'The user said (?P<quote>"(?:[^"\\]|\\.)*")\.')
_SHORT = 100
_KEPT_SAYINGS = 5


def _last(patterns: Iterable[re.Pattern[str]], text: str, group: str) -> str | None:
    for pattern in patterns:
        found = None
        for match in pattern.finditer(text):
            found = match.group(group)
        if found:
            return found
    return None


def name_in(text: str) -> str | None:
    """Give the name the user gives in `text` ("My name is Alice"), if any."""
    return _last(_NAME_STATEMENTS, text, "name")


def home_in(text: str) -> str | None:
    """Give the place the user says they live in (or moved to) in `text`, if any."""
    place = _last(_HOME_STATEMENTS, text, "place")
    if place is None or place.split()[0].casefold() in _NOT_PLACES:
        return None
    return place


def facts_of(text: str) -> dict[str, str]:
    """Give the facts the user states in `text`, as {kind: sentence}."""
    found: dict[str, str] = {}
    name, home = name_in(text), home_in(text)
    if name:
        found["name"] = _SENTENCES["name"][1].format(name)
    if home:
        found["home"] = _SENTENCES["home"][1].format(home)
    return found


def value_in(kind: str, sentences: Iterable[str]) -> str | None:
    """Give the newest value of `kind` ("name", "home") stated in fact sentences."""
    pattern = _SENTENCES[kind][0]
    found = None
    for sentence in sentences:
        for match in pattern.finditer(sentence):
            found = match.group("value")
    return found


def _kind_of(sentence: str) -> str | None:
    for kind, (pattern, _) in _SENTENCES.items():
        if pattern.fullmatch(sentence.strip()):
            return kind
    return None


def extraction_answer(request: ExtractionRequest) -> list[Operation]:
    """Give the operations the offline model answers an extraction task with."""
    stated: dict[str, str] = {}
    forgotten: set[str] = set()
    for role, content in request.turn:
        if role != "user":
            continue
        for kind, pattern in _FORGET.items():
            if pattern.search(content):
                forgotten.add(kind)
                stated.pop(kind, None)
        for kind, sentence in facts_of(content).items():
            stated[kind] = sentence
            forgotten.discard(kind)
    operations: list[Operation] = []
    for kind in ("name", "home"):
        same = [i for i, text in sorted(request.memories.items()) if _kind_of(text) == kind]
        if kind in forgotten:
            operations += [Operation("DELETE", i) for i in same]
        elif kind in stated:
            sentence = stated[kind]
            keep = next((i for i in same if request.memories[i] == sentence), None)
            if keep is None and same:
                keep = same[0]
                operations.append(Operation("UPDATE", keep, sentence))
            elif keep is None:
                operations.append(Operation("ADD", text=sentence))
            operations += [Operation("DELETE", i) for i in same if i != keep]
    return operations


def summary_answer(request: SummaryRequest) -> str:
    """Give the offline model's summary: the newest fact of each kind and the last few short
    things the user said, previous summary first, within the request's limit."""
    facts: dict[str, str] = {}
    sayings: list[str] = []
    if request.previous:
        for kind, (_pattern, template) in _SENTENCES.items():
            value = value_in(kind, [request.previous])
            if value:
                facts[kind] = template.format(value)
        sayings = [json.loads(m.group("quote")) for m in _SAID.finditer(request.previous)]
    for role, content in request.messages:
        if role != "user":
            continue
        stated = facts_of(content)
        facts.update(stated)
        text = " ".join(content.split())
        if not stated and len(text) <= _SHORT and not text.endswith("?"):
            sayings.append(text)
    said = [f"The user said {json.dumps(s, ensure_ascii=False)}." for s in sayings]
    parts = list(facts.values()) + said[-_KEPT_SAYINGS:]
    while parts and len(" ".join(parts)) > request.limit:
        parts.pop(len(facts) if len(parts) > len(facts) else 0)
    return " ".join(parts) or "Nothing to remember yet."


__all__ = [
    "extraction_answer",
    "facts_of",
    "home_in",
    "name_in",
    "summary_answer",
    "value_in",
]
