"""The PostgreSQL schema of `PostgresStore`: tables, indexes, row-level security, versioning.

Created on first use by whichever replica gets there first: the DDL runs in one transaction
under a transaction-scoped advisory lock, so replicas starting together wait for each other
instead of racing, and a schema newer than this code is refused rather than misread.

Layout (all inside one PostgreSQL schema, `tenantry` unless configured):

- `scopes`: one row per (user_id, session_id), holding the session state, the message count
  (so `size` reads one row), `next_pos` (how many messages the scope was ever given) and the
  time of the last write (indexed, for pruning).
- `messages`: one row per message, keyed (scope_id, pos), where pos numbers the scope's
  messages 0, 1, 2 ... in order. The live messages are exactly the positions
  [next_pos - message_count, next_pos), so the newest N (after an offset) is a primary-key
  range whose bounds are known before reading: the database touches those N rows and no
  others, whatever the scope or other tenants hold, and whatever plan it picks. `user_id`
  is repeated on each row for the row-level-security policy; `body` is the message as JSON.
- Row-level security on both tables, for the NOLOGIN role `tenant_role`: it sees and writes
  only rows whose user_id equals the transaction's `tenantry.user_id` setting. The store runs
  every single-tenant query as that role; the connecting role (the tables' owner) is used only
  for the operations that span tenants (list_users, prune_inactive, clear_all).
- `check_turn_lock(pid, key)`: raises when the backend `pid` no longer holds the advisory lock
  `key`, so a turn's append can be fenced by its lock.
- `append_turn(user, session, state, now, cap, bodies)`: the scope's upsert and the insert of
  its new messages, in PL/pgSQL so that their plans are cached per connection instead of
  parsed and planned on every append (schema version 2). It runs with the caller's rights,
  so row-level security applies inside it as outside.

Upgrades: a schema of an older version is brought to this one on first use, in the same
locked transaction (version 1 lacked `append_turn`).

User and session ids use the "C" collation, so ordering is by code point, as in Python.
"""

from __future__ import annotations

import re

from tenantry.errors import InvalidInput

SCHEMA_VERSION = 2

DDL_LOCK_KEY = 0x74656E616E747279
"""The advisory-lock key that serialises tenantry's DDL in one database ("tenantry")."""

LOCK_LOST_SQLSTATE = "TL001"
"""The SQLSTATE `check_turn_lock` raises when a turn's lock is gone."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def check_identifier(kind: str, name: str) -> str:
    """Give `name` double-quoted, or raise InvalidInput if it is not a plain identifier."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise InvalidInput(
            f"{kind} must be a plain identifier (letters, digits, _; at most 63), got {name!r}"
        )
    return f'"{name}"'


def tables_ddl(schema: str) -> str:
    """Give the statements that create every table, index and function in `schema`."""
    return f"""
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE {schema}.schema_version (version integer NOT NULL);
CREATE TABLE {schema}.scopes (
    scope_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    state text,
    message_count integer NOT NULL DEFAULT 0,
    next_pos bigint NOT NULL DEFAULT 0,
    updated_at double precision NOT NULL,
    UNIQUE (user_id, session_id)
);
CREATE INDEX scopes_by_activity ON {schema}.scopes (updated_at);
CREATE TABLE {schema}.messages (
    scope_id bigint NOT NULL,
    pos bigint NOT NULL,
    user_id text COLLATE "C" NOT NULL,
    body text NOT NULL,
    PRIMARY KEY (scope_id, pos)
);
CREATE FUNCTION {schema}.check_turn_lock(holder integer, lock_key bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_locks
        WHERE locktype = 'advisory' AND pid = holder AND granted AND objsubid = 1
          AND classid = ((lock_key >> 32) & 4294967295)::oid
          AND objid = (lock_key & 4294967295)::oid
    ) THEN
        RAISE EXCEPTION 'tenantry turn lock % is no longer held', lock_key
            USING ERRCODE = '{LOCK_LOST_SQLSTATE}';
    END IF;
END $$;
{append_turn_ddl(schema)}
INSERT INTO {schema}.schema_version (version) VALUES ({SCHEMA_VERSION});
"""


def append_turn_ddl(schema: str) -> str:
    """Give the statement that creates (or replaces) `append_turn` in `schema`."""
    return f"""
CREATE OR REPLACE FUNCTION {schema}.append_turn(
    p_user text, p_session text, p_state text, p_now double precision, p_cap integer,
    p_bodies text[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    added integer := coalesce(array_length(p_bodies, 1), 0);
    scope bigint;
    next bigint;
BEGIN
    INSERT INTO {schema}.scopes AS sc
        (user_id, session_id, state, updated_at, message_count, next_pos)
    VALUES (p_user, p_session, p_state, p_now, least(added, p_cap), added)
    ON CONFLICT (user_id, session_id) DO UPDATE SET updated_at = excluded.updated_at,
        state = coalesce(excluded.state, sc.state), next_pos = sc.next_pos + added,
        message_count = least(sc.message_count + added, p_cap)
    RETURNING scope_id, next_pos INTO scope, next;
    IF added > 0 THEN
        INSERT INTO {schema}.messages (scope_id, pos, user_id, body)
        SELECT scope, next - added + b.i - 1, p_user, b.body
        FROM unnest(p_bodies) WITH ORDINALITY AS b(body, i);
    END IF;
END $$;
"""


def upgrade_ddl(schema: str, version: int) -> str:
    """Give the statements that bring a schema of `version` to SCHEMA_VERSION."""
    steps = []
    if version < 2:
        steps.append(append_turn_ddl(schema))
    steps.append(f"INSERT INTO {schema}.schema_version (version) VALUES ({SCHEMA_VERSION});")
    return "\n".join(steps)


def rls_ddl(schema: str, role: str) -> str:
    """Give the statements that confine `role` to the rows of the transaction's tenant."""
    policy = "user_id = current_setting('tenantry.user_id', true)"
    statements = [f"GRANT USAGE ON SCHEMA {schema} TO {role}"]
    for table in ("scopes", "messages"):
        statements += [
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.{table} TO {role}",
            f"ALTER TABLE {schema}.{table} ENABLE ROW LEVEL SECURITY",
            f"DROP POLICY IF EXISTS tenant_rows ON {schema}.{table}",
            f"CREATE POLICY tenant_rows ON {schema}.{table} TO {role} "
            f"USING ({policy}) WITH CHECK ({policy})",
        ]
    return ";\n".join(statements)


def role_ddl(role: str, role_name: str) -> str:
    """Give a block that creates the NOLOGIN tenant role if missing and lets the connecting
    role switch to it; concurrent creation by another database is not an error."""
    literal = "'" + role_name + "'"
    return f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {literal}) THEN
        BEGIN
            CREATE ROLE {role} NOLOGIN NOINHERIT;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    IF NOT pg_catalog.pg_has_role(current_user, {literal}, 'MEMBER') THEN
        EXECUTE format('GRANT %I TO %I', {literal}, current_user);
    END IF;
END $$
"""


__all__ = [
    "DDL_LOCK_KEY",
    "LOCK_LOST_SQLSTATE",
    "SCHEMA_VERSION",
    "append_turn_ddl",
    "check_identifier",
    "rls_ddl",
    "role_ddl",
    "tables_ddl",
    "upgrade_ddl",
]
