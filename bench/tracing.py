"""What tracing costs a turn: none installed, installed with no tracer provider, a no-op
provider, and the SDK recording every span.

Each figure comes from a fresh interpreter (`bench.tracing_probe`), since a global tracer
provider can be set only once per process. The modes run one after another, interleaved over
several passes, so a change of load on the machine hits every mode alike; a mode's figure is
the median of its round means, and the noise is the spread of the round means of the
untraced baseline (`absent`). Each pass starts with another mode.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

from bench.children import ROOT, clean_env
from bench.common import Config, Report, table
from bench.tracing_probe import MODES

LABELS = {
    "absent": "opentelemetry not installed",
    "unset": "installed, no tracer provider",
    "noop": "NoOpTracerProvider",
    "sdk": "SDK provider, every span recorded",
}


def probe(mode: str, turns: int, rounds: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.tracing_probe", mode]
    command += [f"--turns={turns}", f"--rounds={rounds}"]
    done = subprocess.run(
        command, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"tracing probe {mode} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(config: Config) -> list[Report]:
    turns = config.pick(2000, 100)
    rounds = config.pick(5, 2)
    passes = config.pick(4, 1)
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    hooks: dict[str, list[float]] = {mode: [] for mode in MODES}
    facts: dict[str, dict[str, bool]] = {}
    for n in range(passes):
        for mode in MODES[n % len(MODES) :] + MODES[: n % len(MODES)]:  # each pass starts anew
            result = probe(mode, turns, rounds)
            samples[mode] += [s * 1e6 for s in result["round_means_s"]]
            hooks[mode].append(result["hooks_ns_per_turn"])
            facts[mode] = {
                "opentelemetry_importable": result["opentelemetry_importable"],
                "traced": result["traced"],
            }
    base = statistics.median(samples["absent"])
    noise = max(samples["absent"]) - min(samples["absent"])
    results: dict[str, Any] = {}
    for mode in MODES:
        median = statistics.median(samples[mode])
        results[mode] = {
            "label": LABELS[mode],
            "median_us_per_turn": round(median, 2),
            "round_means_us": [round(s, 2) for s in samples[mode]],
            "overhead_us": round(median - base, 2),
            "overhead_pct": round(100 * (median - base) / base, 1),
            "hooks_ns_per_turn": round(min(hooks[mode])),
            **facts[mode],
        }
    results["noise_us"] = round(noise, 2)
    rows = [
        (
            LABELS[mode],
            results[mode]["median_us_per_turn"],
            results[mode]["overhead_us"],
            f"{results[mode]['overhead_pct']:+.1f} %",
            results[mode]["hooks_ns_per_turn"],
            "yes" if results[mode]["traced"] else "no",
        )
        for mode in MODES
    ]
    lines = [
        f"A turn with one tool round trip (two model calls, one tool call; four spans when "
        f"recorded) over an InMemoryStore, 100 tenants, {turns:,} turns per round, {rounds} "
        f"rounds per interpreter, {passes} interleaved passes per mode; median of the round "
        "means.",
        "",
        *table(
            [
                "OpenTelemetry",
                "µs per turn",
                "vs not installed, µs",
                "vs not installed",
                "tracing hooks, ns per turn",
                "spans",
            ],
            rows,
        ),
        "",
        f"Noise: the round means of the untraced baseline spread over {noise:.1f} µs. "
        "No provider and the no-op provider are within noise when their difference from the "
        "baseline is smaller than that.",
        "",
        "`tracing hooks` is what the agent's tracing calls alone take per turn of this shape "
        "(a turn trace, two model-call spans, one tool span), timed without a model or a store "
        "(the best of 5 runs, less the same loop without the calls): with nothing to record "
        "it is the cost of the null object that stands in for the spans.",
    ]
    return [
        Report(
            name="tracing",
            title="Tracing overhead per turn",
            workload={"turns": turns, "rounds": rounds, "passes": passes, "tenants": 100},
            results=results,
            lines=lines,
        )
    ]
