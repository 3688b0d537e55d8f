"""`tenantry serve` with a setting that is not even JSON, as an operator types it: the real
command says which variable and what it must look like in one line, and exits 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TENANTRY = str(Path(sys.executable).parent / "tenantry")


def serve(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTRY_", "OPENAI_"))}
    return subprocess.run(
        [TENANTRY, "serve", "--store", "memory://", "--port", "0"],
        cwd=tmp_path,
        env={**clean, **variables},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("variable", "value", "shape"),
    [
        ("TENANTRY_API_KEYS", "x", "a JSON object"),
        ("TENANTRY_API_KEYS", "{not json", "a JSON object"),
        ("TENANTRY_ADMIN_USERS", "ops", "a JSON list"),
        ("TENANTRY_ADMIN_USERS", "ops,admin", "a JSON list"),
        ("TENANTRY_CORS_ORIGINS", "https://app.example", "a JSON list"),
        ("TENANTRY_ALLOWED_HOSTS", "chat.example.com", "a JSON list"),
    ],
)
def test_a_setting_that_is_not_json_is_a_one_line_error(
    tmp_path: Path, variable: str, value: str, shape: str
) -> None:
    result = serve(tmp_path, **{variable: value})
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: bad configuration: {variable} must be {shape}")
    assert "Traceback" not in result.stderr


def test_json_of_the_wrong_shape_is_one_line_too(tmp_path: Path) -> None:
    result = serve(tmp_path, TENANTRY_ADMIN_USERS='{"ops": 1}', TENANTRY_API_KEYS="[]")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: bad configuration: ")


def test_hashing_user_ids_in_traces_without_a_key_is_refused_at_start(tmp_path: Path) -> None:
    result = serve(tmp_path, TENANTRY_TRACING_USER_ID="hash")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: bad configuration: ")
    assert "TENANTRY_TRACING_HASH_KEY" in line
