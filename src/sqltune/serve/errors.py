"""Errors a request can end in, each with its HTTP status and OpenAI's error fields.

OpenAI's clients read `{"error": {"message", "type", "param", "code"}}` and raise an exception
class chosen by the status (400 BadRequestError, 401 AuthenticationError, 404 NotFoundError...), so
every refusal of this server has that shape. They are raised anywhere (the worker thread too:
they travel back through the request's future) and turned into responses by `sqltune.serve.app`.
"""

from __future__ import annotations

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    503: "server_overloaded",
}


class ApiError(Exception):
    """A request the server refuses or cannot answer: the message says what to change."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param

    def body(self) -> dict:
        kind = ERROR_TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


class PromptTooLong(ApiError):
    """A prompt over `max_prompt_tokens`: 400 with both token counts, OpenAI's code for it."""

    def __init__(self, tokens: int, limit: int, param: str = "messages"):
        super().__init__(
            400,
            f"the prompt has {tokens} tokens; this server accepts at most {limit} (max_prompt_tokens)",
            code="context_length_exceeded",
            param=param,
        )
        self.tokens = tokens
        self.limit = limit
