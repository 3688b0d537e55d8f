"""The verdicts of a soak run, and its figures per window.

How the verdicts stay meaningful on a noisy shared machine (see `judge`):

- The first `warmup` seconds are left out of every baseline: the server fills its caches,
  SQLite its page cache, the allocator its arenas, and the tenants their first sessions;
  and pruning gets under way (its first deletions come `prune_inactive_seconds` after the
  start), so the warm-up should be longer than that plus one prune interval: then the first
  window and the last carry the same kind of work.
- The latency baseline is the first `window` seconds after warm-up, compared with the last
  `window` seconds. Each window's p99 is also computed as the median of the p99s of its
  10-second slices: a sustained slow-down (a leak, a growing scan) raises every slice, while
  a few seconds of CPU stolen by another process raise only one. The verdict uses that
  robust p99; the plain p99s are reported next to it.
- Other processes on the machine can still slow a whole window down. So when the last
  window's p99 is over the allowance, the run goes on for up to `extra_windows` more windows
  and the newest is judged: a burst of noise passes once it is over, while a lasting
  slow-down (a leak, a scan that grows with the data) fails every window it is given. The
  figures say how many extra windows were run, and every ratio seen.
- RSS, descriptors and connections compare the median of the samples of the first window
  with the median of the samples of the last window (one sample is noise, a window is not),
  and RSS is also checked for a steady climb: the least-squares slope over the measured
  period, extrapolated over the run, must stay within the same allowance.
"""

from __future__ import annotations

import collections
import math
import signal
import statistics
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from tests.support.reliability.soak.config import Record, Sample, SoakConfig, SoakResult

SLICE = 10.0
"""Seconds per slice for the robust p99 (the median of the slices' p99s)."""


def p99(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def p99_ratio(config: SoakConfig, records: Sequence[Record], end: float) -> float:
    """The robust p99 of the window that ends at `end` over that of the first window."""
    first = robust_p99(records, config.warmup, config.warmup + config.window)
    return round(robust_p99(records, end - config.window, end) / first, 2)


def robust_p99(records: Sequence[Record], start: float, end: float) -> float:
    """The median of the p99s of the `SLICE`-second slices of [start, end)."""
    slices: dict[int, list[float]] = {}
    for t, _, seconds, _ in records:
        if start <= t < end:
            slices.setdefault(int((t - start) // SLICE), []).append(seconds)
    values = [p99(v) for v in slices.values() if len(v) >= 20]
    return statistics.median(values) if values else math.nan


def _median(samples: Sequence[Sample], start: float, end: float, name: str) -> float:
    values = [getattr(s, name) for s in samples if start <= s.t < end]
    return statistics.median(values) if values else math.nan


def _slope_per_second(samples: Sequence[Sample], start: float, name: str) -> float:
    points = [(s.t, getattr(s, name)) for s in samples if s.t >= start]
    if len(points) < 3:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread if spread else 0.0


def per_window(result: SoakResult, window: float) -> list[dict[str, Any]]:
    """Figures per `window` seconds: requests, p99 (plain and robust), RSS, fds, connections."""
    rows = []
    for index in range(math.ceil(result.seconds / window)):
        start, end = index * window, min((index + 1) * window, result.seconds)
        in_window = [r for r in result.requests if start <= r[0] < end]
        samples = [s for s in result.samples if start <= s.t < end]
        rows.append(
            {
                "start_s": start,
                "requests": len(in_window),
                "p99_ms": round(p99([r[2] for r in in_window]) * 1000, 1),
                "robust_p99_ms": round(robust_p99(result.requests, start, end) * 1000, 1),
                "rss_mb": round(max((s.rss_mb for s in samples), default=math.nan), 1),
                "fds": max((s.fds for s in samples), default=0),
                "connections": max((s.connections for s in samples), default=0),
                "store_mb": round(max((s.store_mb for s in samples), default=math.nan), 1),
            }
        )
    return rows


def judge(result: SoakResult) -> dict[str, Any]:
    """Give every figure and verdict of a run; `verdicts` maps each criterion to pass/fail."""
    config = result.config
    first = (config.warmup, config.warmup + config.window)
    last = (result.seconds - config.window, result.seconds + 1)
    rss_first = _median(result.samples, *first, "rss_mb")
    rss_last = _median(result.samples, *last, "rss_mb")
    rss_allowed = rss_first * config.rss_factor + config.rss_slack_mb
    slope = _slope_per_second(result.samples, config.warmup, "rss_mb")
    rss_projected = rss_first + max(0.0, slope) * (result.seconds - config.warmup)
    fds_first = _median(result.samples, *first, "fds")
    fds_last = _median(result.samples, *last, "fds")
    conn_first = _median(result.samples, *first, "connections")
    conn_last = _median(result.samples, *last, "connections")
    p99_first = robust_p99(result.requests, *first)
    p99_last = robust_p99(result.requests, *last)
    plain_first = p99([r[2] for r in result.requests if first[0] <= r[0] < first[1]])
    plain_last = p99([r[2] for r in result.requests if last[0] <= r[0] < last[1]])
    statuses = collections.Counter(r[3] for r in result.requests)
    by_kind = collections.Counter(r[1] for r in result.requests)
    cpu = [s.cpu_seconds for s in result.samples]
    verdicts = {
        "no_5xx_or_failed_request": not any(s >= 500 or s == 0 for s in statuses),
        "no_foreign_data_or_bad_answer": not result.violations,
        "rss_flat": rss_last <= rss_allowed and rss_projected <= rss_allowed,
        "fds_flat": fds_last <= fds_first + config.fd_slack,
        "connections_flat": conn_last <= conn_first + config.connection_slack,
        "p99_within_factor": p99_last <= p99_first * config.p99_factor,
        "pruning_deleted_idle_sessions": result.prune_checked > 0 and not result.prune_survivors,
        "pruning_kept_active_sessions": result.recent_checked > 0 and not result.recent_missing,
        "server_stopped_gracefully": result.exit_code in (0, -signal.SIGTERM)
        and any("Application shutdown complete" in line for line in result.log_tail),
    }
    return {
        "requests": len(result.requests),
        "requests_per_second": round(len(result.requests) / result.seconds, 1),
        "seconds": result.seconds,
        "extra_windows_run": max(0, len(result.p99_ratios) - 1),
        "p99_ratio_history": result.p99_ratios,
        "by_kind": dict(by_kind),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "rss_mb": {
            "first_window": round(rss_first, 1),
            "last_window": round(rss_last, 1),
            "allowed": round(rss_allowed, 1),
            "slope_mb_per_hour": round(slope * 3600, 1),
            "projected_end": round(rss_projected, 1),
            "max": round(max(s.rss_mb for s in result.samples), 1),
        },
        "fds": {"first_window": fds_first, "last_window": fds_last},
        "connections": {"first_window": conn_first, "last_window": conn_last},
        "p99_ms": {
            "first_window_robust": round(p99_first * 1000, 1),
            "last_window_robust": round(p99_last * 1000, 1),
            "first_window_plain": round(plain_first * 1000, 1),
            "last_window_plain": round(plain_last * 1000, 1),
            "ratio_robust": round(p99_last / p99_first, 2),
            "ratio_plain": round(plain_last / plain_first, 2),
        },
        "server_cpu_seconds": round(cpu[-1] - cpu[0], 1) if cpu else 0.0,
        "store_mb_end": round(result.samples[-1].store_mb, 1) if result.samples else 0.0,
        "pruned_by_server": result.pruned_by_server,
        "prune_checked": result.prune_checked,
        "prune_survivors": result.prune_survivors[:5],
        "recent_checked": result.recent_checked,
        "recent_missing": result.recent_missing[:5],
        "violations": result.violations[:10],
        "verdicts": verdicts,
    }


def to_json(result: SoakResult) -> dict[str, Any]:
    """The whole run as JSON-ready data (samples and per-window figures, not every request)."""
    return {
        "config": asdict(result.config),
        "figures": judge(result),
        "windows": per_window(result, result.config.window),
        "samples": [asdict(s) for s in result.samples],
        "log_tail": result.log_tail,
    }
