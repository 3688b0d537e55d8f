"""What a soak run is given (`SoakConfig`) and what it gives back (`SoakResult`, `Sample`)."""

from __future__ import annotations

from dataclasses import dataclass, field

JWT_SECRET = "tenantry-soak-secret-" + "0123456789abcdef" * 4
"""The server's JWT secret, with which the traffic signs its tenants' tokens."""

Record = tuple[float, str, float, int]
"""One request: (start second, kind, duration in seconds, HTTP status; 0 if none came)."""


@dataclass(frozen=True)
class SoakConfig:
    seconds: float = 120.0
    warmup: float = 20.0
    window: float = 40.0
    tenants: int = 10_000
    rate: float = 60.0
    """Requests offered per second."""
    concurrency: int = 32
    sample_every: float = 2.0
    prune_inactive_seconds: float = 30.0
    prune_interval_seconds: float = 5.0
    seed: int = 0
    # What the verdicts allow:
    rss_factor: float = 1.3
    rss_slack_mb: float = 16.0
    fd_slack: int = 8
    connection_slack: int = 8
    p99_factor: float = 1.5
    extra_windows: int = 0
    """If the last window's p99 is over the allowance, run up to this many more windows
    and judge the newest: noise from other processes passes, a lasting slow-down does not."""

    def __post_init__(self) -> None:
        if self.warmup + 2 * self.window > self.seconds:
            raise ValueError("the run must hold the warm-up and two separate windows")
        if self.warmup < self.prune_inactive_seconds + self.prune_interval_seconds:
            raise ValueError("the warm-up must last until pruning is under way")


@dataclass
class Sample:
    t: float
    rss_mb: float
    fds: int
    connections: int
    threads: int
    cpu_seconds: float
    store_mb: float


@dataclass
class SoakResult:
    config: SoakConfig
    samples: list[Sample] = field(default_factory=list)
    requests: list[Record] = field(default_factory=list)
    """Every request the traffic sent."""
    violations: list[str] = field(default_factory=list)
    pruned_by_server: int = 0
    prune_checked: int = 0
    prune_survivors: list[str] = field(default_factory=list)
    recent_checked: int = 0
    recent_missing: list[str] = field(default_factory=list)
    exit_code: int | None = None
    log_tail: list[str] = field(default_factory=list)
    seconds: float = 0.0
    """How long the traffic ran: `config.seconds`, plus any extra windows."""
    p99_ratios: list[float] = field(default_factory=list)
    """The robust p99 ratio (last window / first) at the planned end and after each extra
    window."""
