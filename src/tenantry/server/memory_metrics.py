"""Prometheus metrics of the agent's background memory jobs. No label holds a user id.

tenantry_memory_jobs_total{kind, event}   jobs by kind (learn, summary) and event: queued, then
                                          done, failed or dropped (queue full, or cancelled)
tenantry_memory_jobs_pending              jobs waiting or running on the server's loop
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tenantry.memory.jobs import EVENTS, BackgroundJobs
from tenantry.memory.runtime import LEARN, SUMMARY


class MemoryJobsCollector(Collector):
    """Reads the job counts of one agent at each scrape."""

    def __init__(self, jobs: BackgroundJobs) -> None:
        self.jobs = jobs

    def collect(self) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "tenantry_memory_jobs",
            "Background memory jobs (learning, summaries), by kind and event.",
            labels=["kind", "event"],
        )
        for kind in (LEARN, SUMMARY):
            for event in EVENTS:
                total.add_metric([kind, event], self.jobs.counts.get(kind, event))
        yield total
        pending = GaugeMetricFamily(
            "tenantry_memory_jobs_pending",
            "Background memory jobs waiting or running on the server's event loop.",
        )
        pending.add_metric([], self.jobs.pending())
        yield pending


def watch_memory_jobs(registry: CollectorRegistry, jobs: BackgroundJobs | None) -> None:
    """Export `jobs`' counts in `registry` (nothing when the agent has memory off)."""
    if jobs is not None:
        registry.register(MemoryJobsCollector(jobs))


__all__ = ["MemoryJobsCollector", "watch_memory_jobs"]
