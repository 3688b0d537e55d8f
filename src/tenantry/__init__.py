"""tenantry: one agent instance, many users, each with isolated history and session state.

from tenantry import Agent, InMemoryStore

agent = Agent(name="support", store=InMemoryStore(max_messages=100))
agent.run("My name is Alice", user_id="user-a")
agent.run("What's my name?", user_id="user-a").content  # 'Your name is Alice.'
"""

import typing

from tenantry._version import __version__
from tenantry.agent import Agent
from tenantry.errors import (
    BudgetExceeded,
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
    InvalidInput,
    InvalidMemory,
    InvalidMessage,
    InvalidModelAnswer,
    InvalidScope,
    InvalidSessionId,
    InvalidState,
    InvalidStoreURL,
    InvalidUserId,
    MaxLoopsExceeded,
    MemoryConflict,
    MemoryNotFound,
    MissingDependency,
    ModelError,
    ModelHTTPError,
    ModelRetry,
    ModelUnreachable,
    RateLimitNotShared,
    ScopeBusy,
    ScopeLockLost,
    StoreClosed,
    StoreError,
    StoreSchemaError,
    StoreUnavailable,
    TenantryError,
    ToolDefinitionError,
    ToolError,
    ToolsetUnavailable,
)
from tenantry.memory import MemoryConfig
from tenantry.models import (
    Embedder,
    FunctionModel,
    Model,
    ModelBase,
    ModelResponse,
    OfflineModel,
    OpenAIEmbedder,
)
from tenantry.storage import InMemoryStore, Snapshot, SQLiteStore, Store, SyncStore, open_store
from tenantry.tenancy import Scope
from tenantry.tools import RunContext, Tool, tool
from tenantry.tracing import Tracing
from tenantry.types import (
    Admission,
    Budget,
    Memory,
    Message,
    RunOutput,
    Summary,
    ToolCall,
    ToolSpec,
    Usage,
    UsageDay,
)

if typing.TYPE_CHECKING:
    from tenantry.models.anthropic import AnthropicModel
    from tenantry.models.openai import OpenAIChatModel
    from tenantry.storage.postgres import PostgresStore
    from tenantry.storage.redis import RedisStore


def __getattr__(name: str) -> typing.Any:
    # Provider SDKs are imported only by those who use them (tenantry[openai], [anthropic]).
    if name in ("AnthropicModel", "OpenAIChatModel"):
        from tenantry import models

        return getattr(models, name)
    if name in ("PostgresStore", "RedisStore"):  # extras: tenantry[postgres], tenantry[redis]
        from tenantry import storage

        return getattr(storage, name)
    raise AttributeError(f"module 'tenantry' has no attribute {name!r}")


__all__ = [
    "Admission",
    "Agent",
    "AnthropicModel",
    "Budget",
    "BudgetExceeded",
    "Embedder",
    "FunctionModel",
    "IdempotencyKeyReused",
    "InMemoryStore",
    "InvalidIdempotencyKey",
    "InvalidInput",
    "InvalidMemory",
    "InvalidMessage",
    "InvalidModelAnswer",
    "InvalidScope",
    "InvalidSessionId",
    "InvalidState",
    "InvalidStoreURL",
    "InvalidUserId",
    "MaxLoopsExceeded",
    "Memory",
    "MemoryConfig",
    "MemoryConflict",
    "MemoryNotFound",
    "Message",
    "MissingDependency",
    "Model",
    "ModelBase",
    "ModelError",
    "ModelHTTPError",
    "ModelResponse",
    "ModelRetry",
    "ModelUnreachable",
    "OfflineModel",
    "OpenAIChatModel",
    "OpenAIEmbedder",
    "PostgresStore",
    "RateLimitNotShared",
    "RedisStore",
    "RunContext",
    "RunOutput",
    "SQLiteStore",
    "Scope",
    "ScopeBusy",
    "ScopeLockLost",
    "Snapshot",
    "Store",
    "StoreClosed",
    "StoreError",
    "StoreSchemaError",
    "StoreUnavailable",
    "Summary",
    "SyncStore",
    "TenantryError",
    "Tool",
    "ToolCall",
    "ToolDefinitionError",
    "ToolError",
    "ToolSpec",
    "ToolsetUnavailable",
    "Tracing",
    "Usage",
    "UsageDay",
    "__version__",
    "open_store",
    "tool",
]
