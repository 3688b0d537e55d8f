"""The schema of `PostgresStore`: its tables, indexes, functions, row-level security and
versions (its queries are `postgres_queries`).

The schema is created on first use by whichever replica gets there first (`install_schema`):
the DDL runs in one transaction under a transaction-scoped advisory lock, so replicas
starting together wait for each other instead of racing, and a schema newer than this code
is refused rather than misread.

Layout (all inside one PostgreSQL schema, `tenantry` unless configured):

- `scopes`: one row per (user_id, session_id), holding the session state, the message count
  (so `size` reads one row), `next_pos` (how many messages the scope was ever given), the
  time of the last write (indexed, for pruning) and the session's summary (schema version 3;
  it goes with the session).
- `messages`: one row per message, keyed (user_id, scope_id, pos), where pos numbers the
  scope's messages 0, 1, 2 ... in order. The live messages are exactly the positions
  [next_pos - message_count, next_pos), so the newest N (after an offset) is a primary-key
  range whose bounds are known before reading: the database touches those N rows and no
  others, whatever the scope or other tenants hold, and whatever plan it picks. `user_id`
  is repeated on each row for the row-level-security policy and the key (below); `body` is
  the message as JSON.
- `memories`, `memory_users` (schema version 3) and their functions: the users' memories,
  see `postgres_memories`.
- `usage_days`, `budgets`, `rate_buckets` (schema version 4) and their functions: the
  users' usage counters, budget overrides and shared rate limit, see `postgres_usage`.
- `idempotency` (schema version 5): one row per (user_id, key), a turn's idempotency record
  (see `idempotency`), written by `append_turn` in the turn's transaction; indexed by expiry
  for pruning.
- Row-level security on every table (`RLS_TABLES`), for the NOLOGIN role `tenant_role`: it
  sees and writes only rows whose user_id equals the transaction's `tenantry.user_id`
  setting. The store runs every single-tenant query as that role; the connecting role (the
  tables' owner) is used only for the operations that span tenants (list_users,
  prune_inactive, clear_all), and by `search_memories` (see `postgres_memories`).
- `check_turn_lock(pid, key)`: raises when the backend `pid` no longer holds the advisory lock
  `key`, so a turn's append can be fenced by its lock.
- `append_turn(user, session, state, now, cap, bodies, [day, usage, estimated], [p_key,
  p_key_hash, p_key_reply, p_key_expires])`: the scope's upsert, the idempotency record's
  insert (schema version 5, if a key is given; SQLSTATE TI002, and the transaction rolled
  back, when the user holds a live record of the key), the insert of its new messages and
  (schema version 4, when `usage` is not NULL) the turn's usage added to the user's `day`,
  in PL/pgSQL so that their plans are cached per connection instead of parsed and planned on
  every append (schema version 2). It runs with the caller's rights, so row-level security
  applies inside it as outside.

Distribution by tenant (schema version 6): every table carries `user_id`, every primary key
and unique constraint starts with it (scopes (user_id, scope_id) and (user_id, session_id),
messages (user_id, scope_id, pos), memories (user_id, memory_id), memory_users (user_id)),
and every single-tenant statement, those inside the functions included, names `user_id =`
the tenant for each table it reads or writes. So the tables can be distributed by user_id
and co-located (Citus), and each tenant's statement goes to one shard: docs/scaling.md.
`tests/storage/test_postgres_tenant_keys.py` checks the keys (from the catalog) and
`test_postgres_routing.py` the statements (from the plans the server logged).

Upgrades: a schema of an older version is brought to this one on first use, in the same
locked transaction (version 1 lacked `append_turn`, version 2 summaries and memories,
version 3 usage, version 4 the idempotency records, versions before 6 the tenant-first
keys; each new append_turn replaces the older signature).

User and session ids use the "C" collation, so ordering is by code point, as in Python.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

from tenantry.errors import InvalidInput, StoreSchemaError
from tenantry.storage.postgres_memories import memories_ddl, search_ddl, search_grant
from tenantry.storage.postgres_usage import usage_ddl

SCHEMA_VERSION = 6

RLS_TABLES = (
    "scopes",
    "messages",
    "memories",
    "memory_users",
    "usage_days",
    "budgets",
    "rate_buckets",
    "idempotency",
)
"""Every table, each with its tenant policy: every row carries its user_id."""

DDL_LOCK_KEY = 0x74656E616E747279
"""The advisory-lock key that serialises tenantry's DDL in one database ("tenantry")."""

LOCK_LOST_SQLSTATE = "TL001"
"""The SQLSTATE `check_turn_lock` raises when a turn's lock is gone."""

KEY_TAKEN_SQLSTATE = "TI002"
"""The SQLSTATE `append_turn` raises when the user holds a live record of the turn's key."""

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
    scope_id bigint GENERATED ALWAYS AS IDENTITY,
    user_id text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    state text,
    message_count integer NOT NULL DEFAULT 0,
    next_pos bigint NOT NULL DEFAULT 0,
    updated_at double precision NOT NULL,
    summary text,
    CONSTRAINT scopes_pkey PRIMARY KEY (user_id, scope_id),
    UNIQUE (user_id, session_id)
);
CREATE INDEX scopes_by_activity ON {schema}.scopes (updated_at);
CREATE TABLE {schema}.messages (
    scope_id bigint NOT NULL,
    pos bigint NOT NULL,
    user_id text COLLATE "C" NOT NULL,
    body text NOT NULL,
    CONSTRAINT messages_pkey PRIMARY KEY (user_id, scope_id, pos)
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
{memories_ddl(schema)}
{usage_ddl(schema)}
{idempotency_ddl(schema)}
{append_turn_ddl(schema)}
INSERT INTO {schema}.schema_version (version) VALUES ({SCHEMA_VERSION});
"""


def idempotency_ddl(schema: str) -> str:
    """Give the statements that create the idempotency records' table if missing."""
    return f"""
CREATE TABLE IF NOT EXISTS {schema}.idempotency (
    user_id text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    request_hash text NOT NULL,
    reply text NOT NULL,
    expires_at double precision NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON {schema}.idempotency (expires_at);
"""


def append_turn_ddl(schema: str) -> str:
    """Give the statement that creates (or replaces) `append_turn` in `schema`."""
    return f"""
CREATE OR REPLACE FUNCTION {schema}.append_turn(
    p_user text, p_session text, p_state text, p_now double precision, p_cap integer,
    p_bodies text[], p_day date DEFAULT NULL, p_usage bigint[] DEFAULT NULL,
    p_estimated boolean DEFAULT false, p_key text DEFAULT NULL, p_key_hash text DEFAULT NULL,
    p_key_reply text DEFAULT NULL, p_key_expires double precision DEFAULT NULL
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
    -- After the scope row, as clear_scope / clear_user lock them (no deadlock); a key
    -- already taken rolls the whole turn back.
    IF p_key IS NOT NULL THEN
        INSERT INTO {schema}.idempotency AS r
            (user_id, key, session_id, request_hash, reply, expires_at)
        VALUES (p_user, p_key, p_session, p_key_hash, p_key_reply, p_key_expires)
        ON CONFLICT (user_id, key) DO UPDATE SET session_id = excluded.session_id,
            request_hash = excluded.request_hash, reply = excluded.reply,
            expires_at = excluded.expires_at
        WHERE r.expires_at <= p_now;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'tenantry idempotency key % is taken', p_key
                USING ERRCODE = '{KEY_TAKEN_SQLSTATE}';
        END IF;
    END IF;
    IF added > 0 THEN
        INSERT INTO {schema}.messages (scope_id, pos, user_id, body)
        SELECT scope, next - added + b.i - 1, p_user, b.body
        FROM unnest(p_bodies) WITH ORDINALITY AS b(body, i);
    END IF;
    IF p_usage IS NOT NULL THEN
        PERFORM {schema}.count_usage(p_user, p_day, p_usage, p_estimated);
    END IF;
END $$;
"""


OLD_APPEND_TURNS = (
    "text, text, text, double precision, integer, text[]",
    "text, text, text, double precision, integer, text[], date, bigint[], boolean",
)
"""The argument types of append_turn before versions 4 and 5, dropped by their upgrades."""


def upgrade_ddl(schema: str, version: int) -> str:
    """Give the statements that bring a schema of `version` to SCHEMA_VERSION."""
    steps = []
    if version < 2:
        steps.append(append_turn_ddl(schema))
    if version < 3:
        summary = f"ALTER TABLE {schema}.scopes ADD COLUMN IF NOT EXISTS summary text;"
        steps += [summary, memories_ddl(schema)]
    if version < 4:
        steps.append(usage_ddl(schema))
    if version < 5:
        steps.append(idempotency_ddl(schema))
        # append_turn gained parameters (usage in 4, idempotency keys in 5): the older
        # signatures go, since a second overload would make calls ambiguous
        for old in OLD_APPEND_TURNS:
            steps.append(f"DROP FUNCTION IF EXISTS {schema}.append_turn({old});")
        steps.append(append_turn_ddl(schema))
    if version < 6:
        steps += [tenant_keys_ddl(schema), search_ddl(schema)]
    steps.append(f"INSERT INTO {schema}.schema_version (version) VALUES ({SCHEMA_VERSION});")
    return "\n".join(steps)


def tenant_keys_ddl(schema: str) -> str:
    """Give the statements that put `user_id` first in the primary keys of `scopes` and
    `messages` (versions before 6), each only where it is not so yet: an operator may have
    built the new keys beforehand (CREATE UNIQUE INDEX CONCURRENTLY, docs/scaling.md). The
    rows stay as they are; a key is rebuilt under the DDL transaction's locks."""
    keys = {"scopes": "user_id, scope_id", "messages": "user_id, scope_id, pos"}
    steps = [
        f"""
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_attribute a
        ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]
        WHERE k.conrelid = '{schema}.{table}'::regclass AND k.contype = 'p'
        AND a.attname = 'user_id') THEN
        ALTER TABLE {schema}.{table} DROP CONSTRAINT {table}_pkey,
            ADD CONSTRAINT {table}_pkey PRIMARY KEY ({columns});
    END IF;"""
        for table, columns in keys.items()
    ]
    return f"DO $$\nBEGIN{''.join(steps)}\nEND $$;"


def rls_ddl(schema: str, role: str) -> str:
    """Give the statements that confine `role` to the rows of the transaction's tenant."""
    policy = "user_id = current_setting('tenantry.user_id', true)"
    statements = [f"GRANT USAGE ON SCHEMA {schema} TO {role}"]
    for table in RLS_TABLES:
        statements += [
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.{table} TO {role}",
            f"ALTER TABLE {schema}.{table} ENABLE ROW LEVEL SECURITY",
            f"DROP POLICY IF EXISTS tenant_rows ON {schema}.{table}",
            f"CREATE POLICY tenant_rows ON {schema}.{table} TO {role} "
            f"USING ({policy}) WITH CHECK ({policy})",
        ]
    statements.append(search_grant(schema, role))
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


async def install_schema(
    conn: psycopg.AsyncConnection[Any], schema: str, *, tenant_role: str | None, where: str
) -> None:
    """Create the tables of `schema` on `conn`, or bring them to SCHEMA_VERSION, and with a
    `tenant_role` (row-level security on) that role and its policies. A schema of a newer
    version is refused (StoreSchemaError naming `where`)."""
    quoted = check_identifier("schema", schema)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))
        cur = await conn.execute("SELECT to_regclass(%s)", (f"{quoted}.schema_version",))
        row = await cur.fetchone()
        created = row is None or row[0] is None
        if created:
            await conn.execute(tables_ddl(quoted).encode())
        else:
            cur = await conn.execute(f"SELECT max(version) FROM {quoted}.schema_version")
            found = await cur.fetchone()
            version = found[0] if found else None
            if version is None or version > SCHEMA_VERSION:
                raise StoreSchemaError(
                    f"schema {schema!r} at {where} has tenantry schema version "
                    f"{version}, which this tenantry (version {SCHEMA_VERSION}) cannot use; "
                    "upgrade tenantry or use another schema"
                )
            if version < SCHEMA_VERSION:
                await conn.execute(upgrade_ddl(quoted, version).encode())
        if tenant_role is not None:
            await _secure(conn, schema, tenant_role, created)


async def _secure(
    conn: psycopg.AsyncConnection[Any], schema: str, role_name: str, created: bool
) -> None:
    role = check_identifier("tenant_role", role_name)
    try:
        await conn.execute(role_ddl(role, role_name).encode())
    except psycopg.errors.InsufficientPrivilege as exc:
        raise StoreSchemaError(
            f"cannot create the row-level-security role {role_name!r}: {exc}. "
            f"Create it once as an administrator (CREATE ROLE {role_name} NOLOGIN; "
            f"GRANT {role_name} TO <this user>), or open the store with rls=false"
        ) from None
    if not created:
        cur = await conn.execute(
            "SELECT count(*) = %s AND bool_and(has_table_privilege(%s, "
            "format('%%I.%%I', schemaname, tablename), 'INSERT')) FROM pg_policies "
            "WHERE schemaname = %s AND policyname = 'tenant_rows' AND %s = ANY(roles)",
            (len(RLS_TABLES), role_name, schema, role_name),
        )
        row = await cur.fetchone()
        if row is not None and row[0]:
            return
    await conn.execute(rls_ddl(check_identifier("schema", schema), role).encode())


__all__ = [
    "DDL_LOCK_KEY",
    "KEY_TAKEN_SQLSTATE",
    "LOCK_LOST_SQLSTATE",
    "RLS_TABLES",
    "SCHEMA_VERSION",
    "append_turn_ddl",
    "check_identifier",
    "idempotency_ddl",
    "install_schema",
    "rls_ddl",
    "role_ddl",
    "tables_ddl",
    "tenant_keys_ddl",
    "upgrade_ddl",
]
