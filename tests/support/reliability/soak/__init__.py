"""Soak: one real `tenantry serve` process (SQLite store, JWT auth, TTL pruning on) under
mixed traffic from many tenants, while its RSS, open file descriptors and TCP connections
are sampled. Shared by `test_soak.py` (a 2-minute smoke run in CI) and `bench/soak.py` (30
minutes, results and plots in bench/results/).

- `config`: what a run is given and gives back (`SoakConfig`, `SoakResult`, `Sample`);
- `workload`: the traffic, and the checks of every answer for another tenant's data;
- `sampling`: the server process, and samples of its RSS, descriptors and connections;
- `report`: the verdicts (`judge`) and the figures per window;
- `run`: one run from start to end (`run_soak`); `python -m tests.support.reliability.soak
  [SECONDS]` prints a quick run's figures.
"""

from tests.support.reliability.soak.config import Sample, SoakConfig, SoakResult
from tests.support.reliability.soak.report import judge, per_window, to_json
from tests.support.reliability.soak.run import run_soak

__all__ = ["Sample", "SoakConfig", "SoakResult", "judge", "per_window", "run_soak", "to_json"]
