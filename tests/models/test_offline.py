from __future__ import annotations

import pytest
from pydantic import SecretStr

from tenantry import FunctionModel, Message, OfflineModel, OpenAIChatModel
from tenantry.errors import InvalidInput
from tenantry.models import ModelResponse, model_from_settings
from tenantry.models.offline import reply_to
from tenantry.settings import Settings
from tenantry.types import ToolCall


def _conversation(*texts: str) -> list[Message]:
    history: list[Message] = []
    for text in texts:
        history.append(Message.user(text))
        history.append(Message.assistant(reply_to(history)))
    return history


@pytest.mark.parametrize(
    ("statement", "question", "name"),
    [
        ("My name is Alice", "What's my name?", "Alice"),
        ("my name is Alice Smith and I like tea", "What is my name?", "Alice Smith"),
        ("Call me Bob.", "who am I?", "Bob"),
        ("Hi! My name is Zoë", "Do you remember my name?", "Zoë"),
        ("私の名前はアリスです", "私の名前は何ですか？", "アリス"),
    ],
)
def test_it_remembers_a_name_from_the_history(statement: str, question: str, name: str) -> None:
    history = _conversation(statement, "How are you?", question)
    assert history[-1].content == f"Your name is {name}."


def test_the_newest_name_wins() -> None:
    history = _conversation("My name is Alice", "Actually, my name is Carol", "What's my name?")
    assert history[-1].content == "Your name is Carol."


def test_without_a_name_in_the_history_it_says_so() -> None:
    assert "don't know your name" in reply_to([Message.user("What is my name?")])


def test_anything_else_gets_a_short_reply_saying_it_is_offline() -> None:
    reply = reply_to([Message.user("Tell me a story about dragons " * 10)])
    assert "offline model" in reply
    assert len(reply) < 250
    assert "offline model" in reply_to([])


async def test_complete_and_stream_agree() -> None:
    model = OfflineModel()
    messages = [Message.user("My name is Alice")]
    response = await model.complete(messages)
    items = [item async for item in model.stream(messages)]
    assert isinstance(items[-1], ModelResponse)
    assert "".join(i for i in items if isinstance(i, str)) == response.content
    assert response.usage.requests == 1
    assert response.usage.output_tokens > 0


async def test_function_model_answers_with_the_function() -> None:
    seen: list[int] = []

    def answer(messages: object, tools: object) -> str:
        seen.append(len(messages))  # type: ignore[arg-type]
        return "ok"

    async def with_tools(messages: object, tools: object) -> ModelResponse:
        return ModelResponse(tool_calls=(ToolCall("c", "f"),))

    assert (await FunctionModel(answer).complete([Message.user("x")])).content == "ok"
    assert seen == [1]
    response = await FunctionModel(with_tools).complete([])
    assert response.tool_calls[0].name == "f"
    items = [i async for i in FunctionModel(answer).stream([Message.user("x")])]
    assert items[0] == "ok"


def test_the_default_model_is_offline_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TENANTRY_MODEL"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(model_from_settings(), OfflineModel)
    assert isinstance(model_from_settings(Settings(model="offline")), OfflineModel)


def test_a_key_or_base_url_selects_the_openai_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("TENANTRY_MODEL", raising=False)
    model = model_from_settings()
    assert isinstance(model, OpenAIChatModel)
    assert model.name == "gpt-4o-mini"
    local = model_from_settings(
        Settings(model="openai:llama3.2", openai_base_url="http://127.0.0.1:11434/v1")
    )
    assert isinstance(local, OpenAIChatModel)
    assert local.name == "llama3.2"
    unnamed = model_from_settings(Settings(openai_base_url="http://127.0.0.1:11434/v1"))
    assert isinstance(unnamed, OpenAIChatModel)
    assert (unnamed.name, unnamed.model) == ("auto", None)  # asked of the server when used
    keyed = model_from_settings(Settings(model="gpt-4o", openai_api_key=SecretStr("sk")))
    assert keyed.name == "gpt-4o"
    with pytest.raises(InvalidInput, match="unknown model provider"):
        model_from_settings(Settings(model="acme:big"))
