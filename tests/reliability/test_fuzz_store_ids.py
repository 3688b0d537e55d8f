"""Fuzz every store call with hostile ids: a valid id round-trips and stays separate from
everyone else's data; an invalid one is refused with a typed error and stores nothing."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, given, settings

from tenantry import InvalidSessionId, InvalidUserId, Message, Scope, SyncStore
from tenantry.errors import InvalidScope
from tests.conftest import MakeStore
from tests.support.reliability.strategies import ids

CANARY = Scope("canary-user", "canary-session")


def _valid(user: str, session: str) -> bool:
    try:
        Scope(user, session)
    except InvalidScope:
        return False
    return True


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(user=ids, session=ids)
def test_hostile_ids_never_reach_other_data(make_store: MakeStore, user: str, session: str) -> None:
    store = SyncStore(make_store())
    try:
        store.clear_all()
        store.add(Message.user("canary"), user_id=CANARY.user_id, session_id=CANARY.session_id)
        if _valid(user, session):
            store.add_many(
                [Message.user("mine"), Message.assistant("ok")],
                user_id=user,
                session_id=session,
                state={"id": user},
            )
            assert [m.content for m in store.get_messages(user, session)] == ["mine", "ok"]
            assert store.get_state(user, session) == {"id": user}
            assert session in store.list_sessions(user)
            assert user in store.list_users()
            store.clear(user, session)
            assert store.size(user, session) == 0
        else:
            for call in (
                lambda: store.add(Message.user("x"), user_id=user, session_id=session),
                lambda: store.add_many([Message.user("x")], user_id=user, session_id=session),
                lambda: store.get_messages(user, session),
                lambda: store.snapshot(user, session),
                lambda: store.size(user, session),
                lambda: store.get_state(user, session),
                lambda: store.set_state({}, user_id=user, session_id=session),
                lambda: store.clear(user, session),
            ):
                try:
                    call()
                except (InvalidUserId, InvalidSessionId):
                    pass
                else:
                    raise AssertionError(f"an invalid id was accepted: {user!r}/{session!r}")
        # Whatever happened, the canary is untouched and nothing else is stored.
        canary = store.get_messages(CANARY.user_id, CANARY.session_id)
        assert [m.content for m in canary] == ["canary"]
        assert store.list_users() == [CANARY.user_id]
        assert store.prune_inactive(timedelta(days=1)) == 0
    finally:
        store.close()
