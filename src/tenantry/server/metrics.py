"""Prometheus metrics of one app, in its own registry. No label ever holds a user id.

tenantry_turns_total{transport, outcome}      turns run (transport: chat, stream, openai, a2a)
tenantry_turn_duration_seconds{transport}     latency of a turn, lock wait included
tenantry_errors_total{type}                   error responses by error class
tenantry_active_scopes                        scopes with a turn in flight
tenantry_model_tokens_total{transport, outcome, kind}  tokens of turns' model calls (kind:
                                              input, output, cache_read, cache_write)
tenantry_model_requests_total{transport, outcome}      model requests of turns
tenantry_budget_refusals_total{transport, limit}       turns refused over budget
tenantry_turns_in_flight                      turns running or waiting for their scope
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tenantry.errors import BudgetExceeded, TenantryError
from tenantry.tenancy import Scope
from tenantry.types import Usage

_TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")
"""The `kind` label of tokens, in the order `count_usage` reads them."""
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """The server's counters; `turn()` wraps each agent turn."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.turns = Counter(
            "tenantry_turns",
            "Agent turns run, by transport and outcome (ok or the error class).",
            ["transport", "outcome"],
            registry=self.registry,
        )
        self.turn_seconds = Histogram(
            "tenantry_turn_duration_seconds",
            "Seconds per agent turn, including the wait for the scope's lock.",
            ["transport"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "tenantry_errors",
            "Error responses, by error type.",
            ["type"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "tenantry_model_tokens",
            "Tokens of the turns' model calls, by transport, outcome and kind (input, output, "
            "cache_read, cache_write); input counts the cache's too. Only finished turns "
            "report their usage, so the outcome is ok.",
            ["transport", "outcome", "kind"],
            registry=self.registry,
        )
        self.requests = Counter(
            "tenantry_model_requests",
            "Model requests of the turns, by transport and outcome.",
            ["transport", "outcome"],
            registry=self.registry,
        )
        self.budget_refusals = Counter(
            "tenantry_budget_refusals",
            "Turns refused before the model was called because the user's usage reached a "
            "budget limit, by transport and limit (tokens_per_day ...).",
            ["transport", "limit"],
            registry=self.registry,
        )
        self._in_flight: dict[Scope, int] = {}
        self._children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._usage_children: dict[tuple[str, str], tuple[Any, ...]] = {}
        Gauge(
            "tenantry_active_scopes",
            "Scopes (user, session) with a turn in flight.",
            registry=self.registry,
        ).set_function(lambda: len(self._in_flight))
        Gauge(
            "tenantry_turns_in_flight",
            "Turns running or waiting for their scope's lock.",
            registry=self.registry,
        ).set_function(lambda: sum(self._in_flight.values()))

    def count_error(self, exc: BaseException) -> None:
        self.errors.labels(
            type(exc).__name__ if isinstance(exc, TenantryError) else "Internal"
        ).inc()

    def count_usage(self, transport: str, usage: Usage, outcome: str = "ok") -> None:
        """Count a finished turn's model requests and tokens."""
        children = self._usage_children.get((transport, outcome))
        if children is None:  # labels() takes a lock and builds a key: once per pair
            children = (
                self.requests.labels(transport, outcome),
                *(self.tokens.labels(transport, outcome, kind) for kind in _TOKEN_KINDS),
            )
            self._usage_children[transport, outcome] = children
        requests, *tokens = children
        requests.inc(usage.requests)
        counts = (
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
        )
        for child, count in zip(tokens, counts, strict=True):
            if count:
                child.inc(count)

    def turn(self, transport: str, scope: Scope) -> _TurnTimer:
        """Count and time one turn of `scope` (`async with`); the outcome is the error
        class, if any (a BudgetExceeded also counts in `budget_refusals`)."""
        return _TurnTimer(self, transport, scope)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def _turn_ended(self, transport: str, scope: Scope, seconds: float, outcome: str) -> None:
        left = self._in_flight[scope] - 1
        if left:
            self._in_flight[scope] = left
        else:
            del self._in_flight[scope]
        children = self._children.get((transport, outcome))
        if children is None:  # labels() takes a lock and builds a key: once per pair
            children = self.turn_seconds.labels(transport), self.turns.labels(transport, outcome)
            self._children[transport, outcome] = children
        children[0].observe(seconds)
        children[1].inc()


class _TurnTimer:
    """`Metrics.turn`'s context manager (a class: cheaper per turn than a generator)."""

    __slots__ = ("metrics", "scope", "started", "transport")

    def __init__(self, metrics: Metrics, transport: str, scope: Scope) -> None:
        self.metrics, self.transport, self.scope = metrics, transport, scope
        self.started = 0.0

    async def __aenter__(self) -> None:
        in_flight = self.metrics._in_flight
        in_flight[self.scope] = in_flight.get(self.scope, 0) + 1
        self.started = time.perf_counter()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            outcome = "ok"
        else:
            outcome = kind.__name__ if issubclass(kind, TenantryError) else "other"
            if isinstance(exc, BudgetExceeded):
                self.metrics.budget_refusals.labels(self.transport, exc.limit).inc()
        seconds = time.perf_counter() - self.started
        self.metrics._turn_ended(self.transport, self.scope, seconds, outcome)


__all__ = ["Metrics"]
