"""The environment of the processes tests start: no machine setting leaks in, and the checkout
is on the import path so `python -m tests.support...` finds its modules."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
"""The checkout: the directory that holds `src/`, `tests/` and `bench/`."""
SETTING_PREFIXES = ("TENANTRY_", "OPENAI_")
"""Environment variables that configure tenantry (and the OpenAI SDK it may use)."""


def clean_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Give this process's environment without any tenantry or OpenAI setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    return {**env, **(extra or {})}


def with_checkout_on_path(env: Mapping[str, str]) -> dict[str, str]:
    """Give `env` with the checkout first on PYTHONPATH."""
    path = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return {**env, "PYTHONPATH": path}


def clear_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset every tenantry and OpenAI setting of this process for the rest of the test."""
    for name in list(os.environ):
        if name.startswith(SETTING_PREFIXES):
            monkeypatch.delenv(name)
