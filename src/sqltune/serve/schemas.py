"""The shapes on the wire: OpenAI's chat-completion request and response, and the Text-to-SQL ones.

The chat shapes follow OpenAI's API reference, so that the official `openai` client (and anything
written for it) works unchanged: fields it sends that this server has no use for (`seed`,
`presence_penalty`, `user`, ...) are accepted and ignored; what would change the answer's meaning
and is not supported (tools, images, audio) is refused with a 400.
"""

from __future__ import annotations

import datetime
import decimal
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_QUESTION_CHARS = 4000


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None  # one model is served; any name is answered by it
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)  # OpenAI's newer name for max_tokens
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[Any] | None = None

    @field_validator("stop")
    @classmethod
    def at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    @field_validator("tools")
    @classmethod
    def no_tools(cls, value: list[Any] | None) -> None:
        if value:
            raise ValueError("tools are not supported by this server")
        return None

    @property
    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ChatMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int
    message: ChatMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class SqlRequest(BaseModel):
    database: str = Field(min_length=1)
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    execute: bool = True
    decoding: Literal["single", "execution_guided"] | None = None
    max_rows: int | None = Field(default=None, ge=1)  # at most the server's max_rows


class SqlResponse(BaseModel):
    sql: str  # the SQL extracted from the model's answer ("" when it wrote none)
    columns: list[str]
    rows: list[list[Any]]  # JSON-safe values (see json_value)
    row_count: int  # rows returned here
    truncated: bool  # more rows existed than max_rows
    error: str | None  # "not SQL", the database's message, "timeout"; None when the query ran
    seconds: float  # time this request spent in the server: queue, generation and query


def json_value(value: Any) -> Any:
    """A database value JSON can carry exactly: dates and times in ISO format, decimals as their
    exact text, bytes as hex (x'..', SQL's blob literal), non-finite floats as text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"x'{bytes(value).hex()}'"
    return str(value)
