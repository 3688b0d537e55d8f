"""All configuration read from the environment, in one place.

Variables use the prefix `TENANTRY_` (`TENANTRY_STORE_URL`, `TENANTRY_MODEL`); the OpenAI and
Anthropic keys and base URLs are also read from the SDKs' usual `OPENAI_API_KEY` /
`OPENAI_BASE_URL` and `ANTHROPIC_API_KEY` / `ANTHROPIC_BASE_URL`.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Core settings; the server extends them."""

    model_config = SettingsConfigDict(env_prefix="TENANTRY_", extra="ignore")

    store_url: str = Field(
        "sqlite:///tenantry.db", description="Where conversations live (memory://, sqlite:///...)"
    )
    model: str | None = Field(
        None,
        description="'offline', an OpenAI-compatible model name such as 'gpt-4o-mini' "
        "(also 'openai:<name>'), or 'anthropic:<name>'. Default: OpenAI when its key or base "
        "URL is set, else offline.",
    )
    openai_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("TENANTRY_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        None, validation_alias=AliasChoices("TENANTRY_OPENAI_BASE_URL", "OPENAI_BASE_URL")
    )
    # Anthropic: used when TENANTRY_MODEL is 'anthropic:<name>'.
    anthropic_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("TENANTRY_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY")
    )
    anthropic_base_url: str | None = Field(
        None, validation_alias=AliasChoices("TENANTRY_ANTHROPIC_BASE_URL", "ANTHROPIC_BASE_URL")
    )
    memory: bool = Field(
        False,
        description="Long-term memory per user (on/off): recall into the system prompt, and "
        "learning after each turn in the background.",
    )
    memory_tools: bool = Field(
        False, description="With memory on: offer the model remember/recall/forget tools."
    )
    memory_summaries: bool = Field(
        False,
        description="Keep a summary of each session's messages that left the history window "
        "and send it to the model ahead of the window (independent of `memory`).",
    )
    # Budgets: the default limits of every user (None: no limit of that kind); an admin's
    # per-user budget (`PUT /v1/users/{user}/budget`) replaces them for that user.
    budget_tokens_per_day: int | None = Field(
        None, ge=0, description="Default budget: tokens (input + output) per user per UTC day."
    )
    budget_requests_per_day: int | None = Field(
        None, ge=0, description="Default budget: model requests per user per UTC day."
    )
    budget_tokens_per_month: int | None = Field(
        None, ge=0, description="Default budget: tokens per user per UTC calendar month."
    )
    budget_requests_per_month: int | None = Field(
        None, ge=0, description="Default budget: model requests per user per UTC calendar month."
    )
