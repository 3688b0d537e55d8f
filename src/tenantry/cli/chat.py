"""`tenantry chat`: talk to the agent in the terminal as one user, in one session."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Annotated

import typer

from tenantry.cli.app import app
from tenantry.cli.options import StoreOption
from tenantry.errors import TenantryError

if TYPE_CHECKING:
    from tenantry.agent import Agent
    from tenantry.storage.base import Store

QUIT_WORDS = frozenset({"exit", "quit", "/exit", "/quit"})
"""Lines that end the chat instead of going to the model (any case, spaces around ignored)."""
HOW_TO_QUIT = "type /quit or exit (or press Ctrl-D or Ctrl-C) to leave"


@app.command()
def chat(
    user: Annotated[str, typer.Option("--user", "-u", help="Whose conversation this is.")] = (
        "default"
    ),
    session: Annotated[str, typer.Option("--session", "-s", help="Which session.")] = "default",
    store: StoreOption = None,
    message: Annotated[
        str | None, typer.Option("--message", "-m", help="Send one message, print the reply, exit.")
    ] = None,
) -> None:
    """Chat with the agent (the offline model unless OPENAI_API_KEY is set).

    /quit, exit, Ctrl-D or Ctrl-C at the prompt quits; Ctrl-C during a reply stops it.
    """
    try:
        if message is not None:
            asyncio.run(_one_message(user, session, store, message))
        else:
            _conversation(user, session, store)
    except TenantryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _open(store_url: str | None) -> tuple[Agent, Store]:
    """Give the chat's agent and its store (which the caller closes)."""
    from tenantry.agent import Agent
    from tenantry.memory.config import memory_from_settings
    from tenantry.models import model_from_settings
    from tenantry.settings import Settings
    from tenantry.storage.url import open_store

    settings = Settings()
    store = open_store(store_url or settings.store_url)
    memory = memory_from_settings(settings) or False
    agent = Agent(name="chat", model=model_from_settings(settings), store=store, memory=memory)
    return agent, store


async def _one_message(user: str, session: str, store_url: str | None, message: str) -> None:
    agent, store = _open(store_url)
    async with store:
        try:
            output = await agent.arun(message, user_id=user, session_id=session)
        finally:
            await agent.aflush()  # what the turn taught memory, before the store closes
    typer.echo(output.content)


def _conversation(user: str, session: str, store_url: str | None) -> None:
    """Read lines at the prompt and stream the replies, on one event loop kept between turns.

    The prompt is read on the main thread, outside the loop, so Ctrl-C there raises at once
    (a prompt read in a worker thread would keep the process alive until Enter)."""
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())

    agent, store = _open(store_url)
    with asyncio.Runner() as runner:
        try:
            typer.echo(
                f"chatting as {user!r} in session {session!r} with {agent.model.name}; "
                + HOW_TO_QUIT
            )
            while True:
                try:
                    text = input("> ")
                except (EOFError, KeyboardInterrupt):
                    typer.echo("")
                    return
                if text.strip().lower() in QUIT_WORDS:
                    return
                if not text.strip():
                    continue
                try:
                    runner.run(_stream_reply(agent, text, user, session))
                except KeyboardInterrupt:
                    typer.echo("\n(reply stopped)")
        finally:
            try:
                runner.run(agent.aflush())  # what the turns taught memory, first
            finally:
                runner.run(store.close())


async def _stream_reply(agent: Agent, text: str, user: str, session: str) -> None:
    async for item in agent.astream(text, user_id=user, session_id=session):
        if isinstance(item, str):
            typer.echo(item, nl=False)
    typer.echo("")
