"""`tenantry serve` and `tenantry keys`: configuration from flags and env, the open-mode
guard, and a real `tenantry serve` process answering the seed's curl session."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tenantry.cli import app
from tenantry.server.auth import hash_api_key
from tests.server.conftest import JWT_SECRET, make_tenants
from tests.support.servers import spawn_server, tenantry_command

TENANTRY = tenantry_command()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def uvicorn_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Record uvicorn.run calls instead of serving (so nothing listens, and whether this
    machine's port 8080 is free does not matter); undo the command's logging setup, whose
    handler writes to the runner's (then closed) stderr."""
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda asgi, **kw: calls.append({"app": asgi, **kw}))
    monkeypatch.setattr("tenantry.cli.serve.listen_problem", lambda host, port: None)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield calls
    root.handlers[:] = handlers
    root.setLevel(level)


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
    with spawn_server(tmp_path) as server:
        said = [
            httpx.post(f"{server.url}/chat", json={"user_id": user, "message": text}).json()
            for user, text in [
                ("user-a", "My name is Alice"),
                ("user-a", "What is my name?"),
                ("user-b", "My name is Bob"),
                ("user-b", "What is my name?"),
            ]
        ]
        assert said[1] == {"user_id": "user-a", "reply": "Your name is Alice."}
        assert said[3] == {"user_id": "user-b", "reply": "Your name is Bob."}
    # uvicorn finishes its graceful shutdown, then re-raises the signal it caught
    assert server.process.returncode in (0, -signal.SIGTERM), server.output
    assert "OPEN MODE" in server.output
    assert "Application shutdown complete" in server.output
    assert (tmp_path / "tenantry.db").exists()


def test_a_taken_port_is_a_one_line_error_that_names_the_flag(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TENANTRY_", "OPENAI_"))}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args, env in [
            (["--port", str(port)], clean),
            ([], {**clean, "TENANTRY_PORT": str(port)}),
        ]:
            result = subprocess.run(
                [TENANTRY, "serve", *args],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 1, result
            assert result.stderr.splitlines() == [
                f"error: port {port} on 127.0.0.1 is in use; "
                "pick another with --port or TENANTRY_PORT"
            ]
            assert "Errno" not in result.stdout
    assert not (tmp_path / "tenantry.db").exists()


def test_a_host_that_is_not_this_machines_names_the_host_flag(tmp_path: Path) -> None:
    result = subprocess.run(
        [TENANTRY, "serve", "--host", "192.0.2.1", "--allow-open-remote", "--port", "8999"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result
    assert result.stderr.strip() == (
        "error: 192.0.2.1 is not an address of this machine; "
        "pick another with --host or TENANTRY_HOST"
    )


def test_with_auth_on_the_start_says_which_and_how_many_but_no_secret(tmp_path: Path) -> None:
    tenants = make_tenants(["alice", "bob"])
    env = {
        **tenants.env(),
        "TENANTRY_JWT_SECRET": JWT_SECRET,
        "TENANTRY_JWT_ISSUER": "idp",
        "TENANTRY_METRICS_PUBLIC": "false",
    }
    with spawn_server(tmp_path, "--store", "memory://", env=env) as server:
        assert httpx.get(f"{server.url}/v1/me").status_code == 401
        assert httpx.get(f"{server.url}/metrics").status_code == 401
    log = server.output
    assert (
        "auth on: API keys (3 keys for 3 users) and JWT bearer tokens (an HS256 secret; "
        "required: issuer 'idp'); 1 admin user; /v1, /chat and /a2a need a credential, "
        "/metrics an admin's"
    ) in log
    assert "OPEN MODE" not in log
    for secret in [JWT_SECRET, tenants.admin_key, *tenants.keys.values(), *tenants.digests()]:
        assert secret not in log
