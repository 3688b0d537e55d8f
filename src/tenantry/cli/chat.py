"""`tenantry chat`: talk to the agent in the terminal as one user, in one session."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from tenantry.agent import Agent
from tenantry.cli.app import app
from tenantry.cli.options import StoreOption
from tenantry.errors import TenantryError


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
    """Chat with the agent (the offline model unless OPENAI_API_KEY is set). Ctrl-D quits."""
    try:
        asyncio.run(_chat(user, session, store, message))
    except TenantryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


async def _chat(user: str, session: str, store_url: str | None, message: str | None) -> None:
    from tenantry.memory.config import memory_from_settings
    from tenantry.models import model_from_settings
    from tenantry.settings import Settings
    from tenantry.storage.url import open_store

    settings = Settings()
    memory = memory_from_settings(settings) or False
    async with open_store(store_url or settings.store_url) as store:
        agent = Agent(name="chat", model=model_from_settings(settings), store=store, memory=memory)
        try:
            await _talk(agent, user, session, message)
        finally:
            await agent.aflush()  # what the turns taught memory, before the store closes


async def _talk(agent: Agent, user: str, session: str, message: str | None) -> None:
    if message is not None:
        output = await agent.arun(message, user_id=user, session_id=session)
        typer.echo(output.content)
        return
    typer.echo(f"chatting as {user!r} in session {session!r} with {agent.model.name}")
    while True:
        try:
            text = await asyncio.to_thread(input, "> ")
        except (EOFError, KeyboardInterrupt):
            typer.echo("")
            return
        if not text.strip():
            continue
        async for item in agent.astream(text, user_id=user, session_id=session):
            if isinstance(item, str):
                typer.echo(item, nl=False)
        typer.echo("")
