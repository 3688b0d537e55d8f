"""The queries of `PostgresStore` (`Queries`), on the schema `postgres_sql` lays out."""

from __future__ import annotations

from tenantry.storage.postgres_sql import RLS_TABLES


class Queries:
    """The store's queries, with the (quoted) schema name filled in once.

    Parameters: `%(u)s` is the user id, `%(s)s` the session id."""

    def __init__(self, schema: str) -> None:
        scope = "user_id = %(u)s AND session_id = %(s)s"
        self.check_lock = f"SELECT {schema}.check_turn_lock(%(holder)s, %(lock_key)s)"
        self.append = (
            f"SELECT {schema}.append_turn(%(u)s, %(s)s, %(state)s, %(now)s, %(cap)s,"
            " %(bodies)s::text[], p_day => %(day)s::date, p_usage => %(counts)s::bigint[],"
            " p_estimated => %(estimated)s, p_key => %(key)s, p_key_hash => %(key_hash)s,"
            " p_key_reply => %(key_reply)s, p_key_expires => %(key_expires)s)"
        )
        self.record = (
            f"SELECT key, session_id, request_hash, reply, expires_at FROM {schema}.idempotency"
            " WHERE user_id = %(u)s AND key = %(k)s"
        )
        self.delete_expired = (
            f"DELETE FROM {schema}.idempotency WHERE (user_id, key) IN (SELECT user_id, key"
            f" FROM {schema}.idempotency WHERE expires_at <= %(now)s LIMIT %(batch)s"
            " FOR UPDATE SKIP LOCKED)"
        )
        # Bounds are computed in a materialised step first: under row-level security only
        # leakproof comparisons with plain values may become index conditions, and `-` is
        # not leakproof. So the trim and the read are ranges of the primary key.
        self.trim = (
            f"WITH sc AS MATERIALIZED (SELECT scope_id, next_pos - %(cap)s AS lo"
            f" FROM {schema}.scopes WHERE {scope})"
            f" DELETE FROM {schema}.messages m USING sc"
            " WHERE m.user_id = %(u)s AND m.scope_id = sc.scope_id AND m.pos < sc.lo"
        )
        # Live positions are [next_pos - message_count, next_pos): the newest `limit` after
        # `offset` are a range known before reading.
        self.newest = (
            "WITH sc AS MATERIALIZED (SELECT scope_id, state,"
            " next_pos - %(offset)s - coalesce(%(limit)s, message_count) AS lo,"
            f" next_pos - %(offset)s AS hi FROM {schema}.scopes WHERE {scope})"
            f" SELECT sc.state, m.body FROM sc LEFT JOIN {schema}.messages m"
            " ON m.user_id = %(u)s AND m.scope_id = sc.scope_id"
            " AND m.pos >= sc.lo AND m.pos < sc.hi"
            " ORDER BY m.pos"
        )
        self.size = f"SELECT message_count FROM {schema}.scopes WHERE {scope}"
        self.state = f"SELECT state FROM {schema}.scopes WHERE {scope}"
        # Lock the rows first: appends in flight finish before, later ones start afresh.
        self.clear_scope = (
            f"SELECT 1 FROM {schema}.scopes WHERE {scope} FOR UPDATE;"
            f" DELETE FROM {schema}.messages WHERE user_id = %(u)s AND scope_id IN"
            f" (SELECT scope_id FROM {schema}.scopes WHERE {scope});"
            f" DELETE FROM {schema}.scopes WHERE {scope};"
            f" DELETE FROM {schema}.idempotency WHERE {scope}"
        )
        self.clear_user = (
            f"SELECT 1 FROM {schema}.scopes WHERE user_id = %(u)s FOR UPDATE;"
            f" DELETE FROM {schema}.messages WHERE user_id = %(u)s;"
            f" DELETE FROM {schema}.scopes WHERE user_id = %(u)s;"
            f" DELETE FROM {schema}.idempotency WHERE user_id = %(u)s;"
            f" SELECT 1 FROM {schema}.memory_users WHERE user_id = %(u)s FOR UPDATE;"
            f" DELETE FROM {schema}.memories WHERE user_id = %(u)s;"
            f" DELETE FROM {schema}.memory_users WHERE user_id = %(u)s"
        )
        # Prune (spans tenants, as the connecting role): a batch of idle scopes, then their
        # messages, both found through their primary keys, (user_id, scope_id ...).
        self.delete_idle = (
            f"DELETE FROM {schema}.scopes WHERE (user_id, scope_id) IN (SELECT user_id, scope_id"
            f" FROM {schema}.scopes WHERE updated_at < %(cutoff)s ORDER BY updated_at"
            " LIMIT %(batch)s FOR UPDATE SKIP LOCKED) AND updated_at < %(cutoff)s"
            " RETURNING user_id, scope_id"
        )
        self.delete_messages = (
            f"DELETE FROM {schema}.messages WHERE (user_id, scope_id) IN"
            " (SELECT * FROM unnest(%(users)s::text[], %(ids)s::bigint[]))"
        )
        self.truncate = f"TRUNCATE {', '.join(f'{schema}.{table}' for table in RLS_TABLES)}"
        self.summary = f"SELECT summary FROM {schema}.scopes WHERE {scope}"
        self.set_summary = f"UPDATE {schema}.scopes SET summary = %(summary)s WHERE {scope}"
        self.users = f"SELECT DISTINCT user_id FROM {schema}.scopes ORDER BY user_id"
        self.sessions = (
            f"SELECT session_id FROM {schema}.scopes WHERE user_id = %(u)s ORDER BY session_id"
        )


__all__ = ["Queries"]
