"""`tenantry serve`: run the HTTP server (chat API, streaming, A2A, web page) with uvicorn."""

from __future__ import annotations

import gc
import logging
import math
import re
import time
import typing
from typing import Annotated, Any

import typer

from tenantry.cli.app import app
from tenantry.cli.options import StoreOption
from tenantry.cli.startup import auth_summary, listen_problem
from tenantry.errors import MissingDependency, TenantryError

GC_YOUNG = 20_000
"""Allocations between two collections of the youngest generation in `tenantry serve`."""
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


class _Formatter(logging.Formatter):
    """`logging.Formatter` that turns a record's second into text once per second rather than
    once per record (strftime is a tenth of the access log's cost); the same text."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._second: tuple[int, str] = (-1, "")  # one tuple: replaced whole, never torn

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second, text = self._second
        if int(record.created) != second:
            second = int(record.created)
            text = time.strftime(self.default_time_format, self.converter(second))
            self._second = (second, text)
        return f"{text},{int(record.msecs):03d}"  # logging's default_msec_format, "%s,%03d"


def configure_logging(level: str) -> None:
    """Log to stderr with the request id on every line."""
    from tenantry.server.middleware import RequestIdFilter

    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(_Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # LOG_FORMAT names no thread, process or source line: skip looking them up for every
    # record (the access log writes one per request), as the logging HOWTO's "Optimization"
    # section says; `_srcfile = None` is how it says to skip walking the stack for the caller.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None


def _unparsable(exc: Exception, fields: dict[str, Any]) -> str:
    """Say which setting holds a value pydantic-settings could not parse (bad JSON), and
    what it must look like, in one line."""
    found = re.search(r'field "(\w+)"', str(exc))
    name = found.group(1) if found else ""
    field = fields.get(name)
    shape = "JSON"
    if field is not None:
        origin = typing.get_origin(field.annotation) or field.annotation
        if origin is dict:
            shape = """a JSON object, e.g. '{"<key>": "<value>"}'"""
        elif origin in (list, frozenset, set, tuple):
            shape = """a JSON list, e.g. '["a", "b"]'"""
    cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
    variable = f"TENANTRY_{name.upper()}" if name else "a TENANTRY_ variable"
    return f"{variable} must be {shape}{cause}"


def _settings(overrides: dict[str, Any]) -> Any:
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from tenantry.server.config import ServerSettings, check_bind

    try:
        settings = ServerSettings(**{k: v for k, v in overrides.items() if v is not None})
        check_bind(settings)
    except SettingsError as exc:  # a value that is not even JSON
        problem = _unparsable(exc, ServerSettings.model_fields)
        typer.echo(f"error: bad configuration: {problem}", err=True)
        raise typer.Exit(2) from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        typer.echo(f"error: bad configuration: {problems}", err=True)
        raise typer.Exit(2) from None
    except TenantryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    return settings


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default 127.0.0.1; TENANTRY_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default 8080; TENANTRY_PORT).")
    ] = None,
    store: StoreOption = None,
    model: Annotated[
        str | None, typer.Option(help="'offline' or a model name (default: TENANTRY_MODEL).")
    ] = None,
    allow_open_remote: Annotated[
        bool | None,
        typer.Option(
            "--allow-open-remote/--no-allow-open-remote",
            help="Serve without authentication on a non-loopback host (dangerous).",
        ),
    ] = None,
    rate_limit: Annotated[
        int | None, typer.Option(help="Requests per minute per tenant; 0 for no limit.")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error.")] = None,
) -> None:
    """Serve the agent over HTTP: /v1/chat, /v1/chat/stream, /chat, A2A, /metrics, a web page.

    Flags override TENANTRY_* environment variables. Without configuration: SQLite file
    ./tenantry.db, the offline model unless OPENAI_API_KEY is set, open mode on 127.0.0.1.
    """
    settings = _settings(
        {
            "host": host,
            "port": port,
            "store_url": store,
            "model": model,
            "allow_open_remote": allow_open_remote,
            "rate_limit_per_minute": rate_limit,
            "log_level": log_level,
        }
    )
    try:
        import uvicorn

        from tenantry.server.app import create_app
        from tenantry.server.config import is_loopback
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        typer.echo(f"error: {MissingDependency(exc.name or 'fastapi', 'server')}", err=True)
        raise typer.Exit(1) from None
    problem = listen_problem(settings.host, settings.port)
    if problem is not None:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(1)
    configure_logging(settings.log_level)
    log = logging.getLogger("tenantry.server")
    try:
        asgi = create_app(settings=settings)
    except TenantryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    agent = asgi.state.tenantry.agent
    # What was built up to here (modules, the app) lives as long as the process: keep it out
    # of the garbage collector's full passes, which otherwise walk it again and again. And
    # collect the youngest objects every GC_YOUNG allocations rather than 700: with a hundred
    # requests in flight, their objects outlive 700 allocations, get promoted and dead ones
    # pile up in the old generation, whose passes also walk the stores' data (under wrk at
    # 100 connections, memory store, two rounds: 12-25 % less CPU per request, lower p99).
    gc.freeze()
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
    log.info("store %s, model %s", settings.store_url, agent.model.name)
    summary = auth_summary(settings)
    if summary is not None:
        log.info("%s", summary)
    else:
        log.warning(
            "OPEN MODE: no authentication is configured, so any caller may read, write and "
            "delete any user's conversations by naming the user. Bound to %s%s. Configure "
            "TENANTRY_API_KEYS (tenantry keys new) or TENANTRY_JWT_* to require credentials.",
            settings.host,
            " (loopback only)" if is_loopback(settings.host) else "",
        )
    if not is_loopback(settings.host) and not (settings.public_url or settings.allowed_hosts):
        log.warning(
            "bound to %s, but only loopback names and this address are allowed in the Host "
            "header: clients that reach the server by another name get 400 InvalidHost. Set "
            "TENANTRY_PUBLIC_URL or TENANTRY_ALLOWED_HOSTS to the names clients use.",
            settings.host,
        )
    uvicorn.run(
        asgi,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=math.ceil(settings.graceful_timeout),
        proxy_headers=False,
    )
