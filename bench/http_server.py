"""The servers `bench.http` measures, each run in its own process on the same uvicorn settings:

    python -m bench.http_server bare
    python -m bench.http_server tenantry --store memory://
    python -m bench.http_server tenantry --store sqlite:///path/to/bench.db
    python -m bench.http_server tenantry --store ... --model stamped   # bench.first_token

It binds 127.0.0.1 on a port the kernel picks, prints `PORT <n>` on stdout, and serves until
SIGTERM. `bare` is FastAPI with one `POST /v1/chat` route that takes and gives the same JSON as
tenantry's (pydantic models of the same fields) and does no work: the ceiling. `tenantry` is
`create_app(agent, settings)` in open mode with the rate limit off, serving an agent whose
model answers "ok" at once (`FunctionModel`), or with `--model stamped` streams stamped deltas
after 50 ms (`bench.first_token.StampedModel`).
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

REPLY = "ok"


class BareRequest(BaseModel):
    message: str
    user_id: str | None = None
    session_id: str | None = None


class BareUsage(BaseModel):
    requests: int
    input_tokens: int
    output_tokens: int
    total_tokens: int


class BareReply(BaseModel):
    user_id: str
    session_id: str
    reply: str
    run_id: str
    usage: BareUsage


def bare_app() -> FastAPI:
    """FastAPI, one route, the same JSON in and out as tenantry's /v1/chat, no work."""
    app = FastAPI()
    usage = BareUsage(requests=1, input_tokens=0, output_tokens=0, total_tokens=0)

    @app.post("/v1/chat", response_model=BareReply)
    async def chat(body: BareRequest) -> BareReply:
        return BareReply(
            user_id=body.user_id or "default",
            session_id=body.session_id or "default",
            reply=REPLY,
            run_id="0" * 32,
            usage=usage,
        )

    return app


def tenantry_app(store_url: str, model_name: str = "instant") -> Any:
    """tenantry's app in open mode, rate limit off, the given model and store."""
    from tenantry import Agent, FunctionModel, open_store
    from tenantry.models.base import Model
    from tenantry.server import ServerSettings, create_app

    model: Model
    if model_name == "stamped":
        from bench.first_token import StampedModel

        model = StampedModel()
    else:
        model = FunctionModel(lambda messages, tools: REPLY)
    agent = Agent(name="bench", model=model, store=open_store(store_url))
    settings = ServerSettings(_env_file=None, rate_limit_per_minute=0)
    return create_app(agent, settings)


def config(app: Any) -> uvicorn.Config:
    """The uvicorn settings every measured server runs with: one process, uvicorn's defaults
    (uvloop and httptools when installed), no access log."""
    return uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_server", description=__doc__)
    parser.add_argument("app", choices=("bare", "tenantry"))
    parser.add_argument("--store", default="memory://")
    parser.add_argument("--model", choices=("instant", "stamped"), default="instant")
    args = parser.parse_args(argv)
    app = bare_app() if args.app == "bare" else tenantry_app(args.store, args.model)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(config(app)).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
