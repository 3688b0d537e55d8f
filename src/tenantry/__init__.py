"""tenantry: one agent instance, many users, each with isolated history and session state.

from tenantry import Agent, InMemoryStore

agent = Agent(name="support", store=InMemoryStore(max_messages=100))
agent.run("My name is Alice", user_id="user-a")
agent.run("What's my name?", user_id="user-a").content  # 'Your name is Alice.'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tenantry.agent import Agent
from tenantry.errors import (
    InvalidSessionId,
    InvalidUserId,
    ModelError,
    ModelRetry,
    ScopeBusy,
    StoreError,
    TenantryError,
    ToolsetUnavailable,
)
from tenantry.models import FunctionModel, Model, ModelResponse, OfflineModel
from tenantry.storage import InMemoryStore, SQLiteStore, Store, SyncStore, open_store
from tenantry.tenancy import Scope
from tenantry.tools import RunContext, Tool, tool
from tenantry.tracing import Tracing
from tenantry.types import Message, RunOutput, ToolCall, Usage

if TYPE_CHECKING:
    from tenantry.models.anthropic import AnthropicModel
    from tenantry.models.openai import OpenAIChatModel
    from tenantry.storage.postgres import PostgresStore
    from tenantry.storage.redis import RedisStore

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Provider SDKs are imported only by those who use them (tenantry[openai], [anthropic]).
    if name in ("AnthropicModel", "OpenAIChatModel"):
        from tenantry import models

        return getattr(models, name)
    if name in ("PostgresStore", "RedisStore"):  # extras: tenantry[postgres], tenantry[redis]
        from tenantry import storage

        return getattr(storage, name)
    raise AttributeError(f"module 'tenantry' has no attribute {name!r}")


__all__ = [
    "Agent",
    "AnthropicModel",
    "FunctionModel",
    "InMemoryStore",
    "InvalidSessionId",
    "InvalidUserId",
    "Message",
    "Model",
    "ModelError",
    "ModelResponse",
    "ModelRetry",
    "OfflineModel",
    "OpenAIChatModel",
    "PostgresStore",
    "RedisStore",
    "RunContext",
    "RunOutput",
    "SQLiteStore",
    "Scope",
    "ScopeBusy",
    "Store",
    "StoreError",
    "SyncStore",
    "TenantryError",
    "Tool",
    "ToolCall",
    "ToolsetUnavailable",
    "Tracing",
    "Usage",
    "__version__",
    "open_store",
    "tool",
]
