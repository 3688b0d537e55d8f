"""The command line as an operator runs it: settings come from each test's flags and
environment, never from the machine's."""

from __future__ import annotations

import pytest

from tests.support.env import clear_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_settings(monkeypatch)
