from __future__ import annotations

import dataclasses
import os
import re
import string
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from datetime import date

import pytest

from tenantry import Budget, InMemoryStore, Message, RunOutput, SyncStore, ToolCall, Usage, UsageDay
from tenantry.errors import InvalidInput, InvalidMessage
from tenantry.types import new_id


def test_messages_are_immutable() -> None:
    message = Message.user("hello")
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.content = "changed"  # type: ignore[misc]
    with pytest.raises((AttributeError, TypeError)):  # slots: no new attributes either
        message.extra = 1  # type: ignore[attr-defined]


def test_ids_are_never_repeated_across_threads() -> None:
    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda _: [new_id() for _ in range(2000)], range(8)))
    ids = [i for batch in batches for i in batch]
    assert len(set(ids)) == len(ids) == 16_000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork exists only on POSIX")
def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_id()  # the parent holds unused ids from its last batch
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, " ".join(new_id() for _ in range(10)).encode())
        os._exit(0)
    os.waitpid(child, 0)
    os.close(write)
    from_child = set(os.read(read, 4096).decode().split())
    os.close(read)
    from_parent = {new_id() for _ in range(300)}
    assert len(from_child) == 10
    assert not from_child & from_parent


def test_an_id_never_begins_with_a_dash() -> None:
    """A CLI (`tenantry memories delete alice ID`) must never read an id as an option."""
    ids = [new_id() for _ in range(20_000)]  # 1 in 64 would begin with "-" if drawn plainly
    assert not [i for i in ids if i.startswith("-")]
    assert {i[0] for i in ids} == set(string.ascii_letters + string.digits + "_")
    assert any("-" in i for i in ids)  # elsewhere a dash stays: still URL-safe base64
    assert len(set(ids)) == len(ids)


def test_every_message_gets_an_id_and_a_time() -> None:
    a, b = Message.user("x"), Message.user("x")
    assert a.id
    assert b.id
    assert a.id != b.id
    assert re.fullmatch("[A-Za-z0-9_][A-Za-z0-9_-]{21}", a.id)  # URL-safe base64, no "-" first
    assert Message(role="user", content="x", id="").id  # an empty id is replaced
    assert a.created.tzinfo is not None


def test_tool_calls_become_a_tuple() -> None:
    call = ToolCall(id="c1", name="f")
    message = Message(role="assistant", content="", tool_calls=[call])  # type: ignore[arg-type]
    assert message.tool_calls == (call,)


@pytest.mark.parametrize(
    ("role", "content"), [("robot", "x"), ("user", None), ("user", 3), ("", "x")]
)
def test_bad_messages_are_rejected(role: object, content: object) -> None:
    with pytest.raises(InvalidMessage):
        Message(role=role, content=content)  # type: ignore[arg-type]


def test_messages_round_trip_through_dicts() -> None:
    call = ToolCall(id="c1", name="lookup", arguments='{"q": 1}')
    for message in (
        Message.system("be nice"),
        Message.assistant("", tool_calls=(call,)),
        Message.tool("42", tool_call_id="c1", name="lookup"),
    ):
        assert Message.from_dict(message.to_dict()) == message
    with pytest.raises(InvalidMessage):
        Message.from_dict({"content": "no role"})
    with pytest.raises(InvalidMessage):
        Message.from_dict({"role": "user", "content": "x", "tool_calls": [{"id": 1}]})


def test_usage_adds_up() -> None:
    total = Usage(1, 10, 5) + Usage(1, 3, 2)
    assert total == Usage(requests=2, input_tokens=13, output_tokens=7)
    assert total.total_tokens == 20
    assert total.to_dict()["total_tokens"] == 20


def test_usage_keeps_cache_tokens_through_sums_and_dicts() -> None:
    cached = Usage(requests=1, input_tokens=100, output_tokens=5, cache_read_tokens=80)
    written = Usage(requests=1, input_tokens=50, output_tokens=5, cache_write_tokens=40)
    total = cached + written + Usage()
    assert (total.cache_read_tokens, total.cache_write_tokens) == (80, 40)
    assert total.input_tokens == 150
    assert total.total_tokens == 160
    assert total.to_dict() == {
        "requests": 2,
        "input_tokens": 150,
        "output_tokens": 10,
        "total_tokens": 160,
        "cache_read_tokens": 80,
        "cache_write_tokens": 40,
        "tool_calls": 0,
        "estimated": False,
    }
    assert Usage(1, 2, 3).to_dict()["cache_read_tokens"] == 0


def test_usage_counts_tool_calls_and_a_sum_is_estimated_when_any_part_is() -> None:
    reported = Usage(requests=1, input_tokens=10, output_tokens=2, tool_calls=2)
    guessed = Usage(requests=1, input_tokens=5, output_tokens=1, tool_calls=1, estimated=True)
    assert (reported + guessed).tool_calls == 3
    assert (reported + guessed).estimated
    assert (guessed + reported).estimated
    assert not (reported + reported).estimated
    assert (reported + guessed).to_dict()["estimated"] is True
    assert Usage().empty
    assert Usage(estimated=True).empty
    assert not Usage(tool_calls=1).empty


def test_a_budget_round_trips_and_refuses_bad_limits() -> None:
    budget = Budget(tokens_per_day=1000, requests_per_month=50)
    assert budget.to_dict() == {
        "tokens_per_day": 1000,
        "requests_per_day": None,
        "tokens_per_month": None,
        "requests_per_month": 50,
    }
    assert Budget.from_dict(budget.to_dict()) == budget
    assert Budget.from_dict({}) == Budget()
    assert Budget(tokens_per_day=0).tokens_per_day == 0  # a limit of 0 refuses every turn
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(InvalidInput, match="tokens_per_day"):
            Budget(tokens_per_day=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="unknown budget limit"):
        Budget.from_dict({"tokens_per_week": 5})


def test_a_usage_day_serialises_with_its_date() -> None:
    one = UsageDay(date(2026, 12, 2), Usage(requests=1, input_tokens=3, output_tokens=4))
    assert one.to_dict()["day"] == "2026-12-02"
    assert one.to_dict()["total_tokens"] == 7


def test_run_output_serialises() -> None:
    out = RunOutput("hi", "u", "s", "r", (Message.assistant("hi"),), Usage(1, 2, 3), {"k": 1})
    data = out.to_dict()
    assert data["content"] == "hi"
    assert data["messages"][0]["role"] == "assistant"
    assert data["state"] == {"k": 1}


def test_a_stored_message_costs_little_more_than_its_text() -> None:
    """Measured with tracemalloc: bytes per stored message beyond its text, in memory."""
    count, text_length = 10_000, 100
    users = [f"user-{i}" for i in range(100)]
    store = SyncStore(InMemoryStore())
    for user in users:  # the scopes exist already: measure messages, not tenants
        store.add(Message.user("warm-up"), user_id=user)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(count):
        store.add(Message.user(f"{i:06d}".ljust(text_length, "x")), user_id=users[i % 100])
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    per_message = (after - before) / count
    text_bytes = text_length + 49  # a compact ASCII str object: 49 bytes of header
    overhead = per_message - text_bytes
    print(f"\nstored message: {per_message:.0f} B for a {text_length}-char text, +{overhead:.0f} B")
    assert overhead <= 250
    store.close()


def test_text_no_store_could_keep_is_refused() -> None:
    with pytest.raises(InvalidMessage, match="lone surrogate U\\+D800 at position 2"):
        Message.user("ab\ud800cd")
    assert Message.user("日本語 🙂").content == "日本語 🙂"


def test_a_creation_time_of_zero_round_trips() -> None:
    message = Message(role="user", content="old", created_at=0.0)
    assert Message.from_dict(message.to_dict()).created_at == 0.0
