"""`tenantry serve` and `tenantry keys`: configuration from flags and env, the open-mode
guard, and a real `tenantry serve` process answering the seed's curl session."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tenantry.cli import app
from tenantry.server.auth import hash_api_key
from tests.support.servers import free_port


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda asgi, **kw: calls.append({"app": asgi, **kw}))
    return calls


def test_serve_defaults_to_open_mode_on_loopback_with_a_warning(
    runner: CliRunner,
    uvicorn_calls: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 0, result.output
    (call,) = uvicorn_calls
    assert (call["host"], call["port"]) == ("127.0.0.1", 8080)
    state = call["app"].state.tenantry
    assert state.settings.store_url == "sqlite:///tenantry.db"
    assert state.agent.model.name == "offline"
    assert not state.auth


def test_flags_override_the_environment(
    runner: CliRunner, uvicorn_calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTRY_PORT", "9000")
    monkeypatch.setenv("TENANTRY_API_KEYS", json.dumps({hash_api_key("k"): "alice"}))
    result = runner.invoke(
        app,
        [
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            "9100",
            "--store",
            "memory://",
            "--rate-limit",
            "5",
            "--model",
            "offline",
            "--log-level",
            "warning",
        ],
    )
    assert result.exit_code == 0, result.output
    (call,) = uvicorn_calls
    assert (call["host"], call["port"]) == ("0.0.0.0", 9100)
    settings = call["app"].state.tenantry.settings
    assert settings.rate_limit_per_minute == 5
    assert settings.store_url == "memory://"
    assert call["app"].state.tenantry.auth


def test_open_mode_on_a_public_interface_is_refused(
    runner: CliRunner, uvicorn_calls: list[dict[str, Any]]
) -> None:
    result = runner.invoke(app, ["serve", "--host", "0.0.0.0", "--store", "memory://"])
    assert result.exit_code == 2
    assert "refusing to serve without authentication" in result.output
    assert not uvicorn_calls
    allowed = runner.invoke(
        app, ["serve", "--host", "0.0.0.0", "--store", "memory://", "--allow-open-remote"]
    )
    assert allowed.exit_code == 0
    assert len(uvicorn_calls) == 1


def test_bad_configuration_is_a_clear_error(
    runner: CliRunner, uvicorn_calls: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTRY_API_KEYS", '{"not-a-digest": "alice"}')
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "bad configuration: api_keys" in result.output
    monkeypatch.delenv("TENANTRY_API_KEYS")
    bad_store = runner.invoke(app, ["serve", "--store", "mysql://nope"])
    assert bad_store.exit_code == 2
    assert "no store backend" in bad_store.output
    assert not uvicorn_calls


def test_keys_new_prints_a_key_and_the_setting_that_accepts_it(runner: CliRunner) -> None:
    result = runner.invoke(app, ["keys", "new", "--user", "alice", "--org", "acme", "--admin"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    key = lines[1].strip()
    assert key.startswith("tnt_")
    assert f"TENANTRY_API_KEYS='{json.dumps({hash_api_key(key): 'acme:alice'})}'" in result.output
    assert """TENANTRY_ADMIN_USERS='["acme:alice"]'""" in result.output
    hashed = runner.invoke(app, ["keys", "hash", key])
    assert hashed.output.strip() == hash_api_key(key)
    bad = runner.invoke(app, ["keys", "new", "--user", "a\tb"])
    assert bad.exit_code == 2
    assert "control characters" in bad.output


def test_a_real_tenantry_serve_answers_the_seed_session_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTRY_", "OPENAI_"))}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "tenantry"), "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "tenantry serve did not start"
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        said = [
            httpx.post(f"{url}/chat", json={"user_id": user, "message": text}).json()
            for user, text in [
                ("user-a", "My name is Alice"),
                ("user-a", "What is my name?"),
                ("user-b", "My name is Bob"),
                ("user-b", "What is my name?"),
            ]
        ]
        assert said[1] == {"user_id": "user-a", "reply": "Your name is Alice."}
        assert said[3] == {"user_id": "user-b", "reply": "Your name is Bob."}
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    # uvicorn finishes its graceful shutdown, then re-raises the signal it caught
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert "OPEN MODE" in output
    assert (tmp_path / "tenantry.db").exists()
