"""What the benchmarks that run child processes share: where to run them, and with what
environment."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: children run there, so `python -m bench.<module>` finds the package."""


def clean_env() -> dict[str, str]:
    """The environment for child processes: no TENANTRY_* or OPENAI_* setting leaks in, and
    the repository root is on the import path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTRY_", "OPENAI_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


__all__ = ["ROOT", "clean_env"]
