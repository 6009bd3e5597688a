"""The HTTP API: OpenAI's chat completions and models, and the Text-to-SQL endpoints.

    GET  /health                 up, the model, the queue's batch statistics (no key needed)
    GET  /v1/models              the one model served
    POST /v1/chat/completions    OpenAI's request and response; stream=true as server-sent events
    GET  /v1/databases           the databases served: name, dialect, tables, columns, keys
    POST /v1/sql                 {"database", "question", "execute"} -> the SQL and its rows

Handlers only validate, queue and shape: generation happens on the queue's worker thread
(`sqltune.serve.batching`), SQL runs through `sqltune.db` (read-only, `timeout`, `max_rows`) in
a thread of the server's pool. Every refusal is a JSON error in OpenAI's shape with a 4xx status;
an unexpected failure is a 500 in the same shape, and the server keeps serving.

Streaming: a streamed answer is generated with its batch like any other, then sent as chunks of a
few characters each, ending with `data: [DONE]`. The first byte therefore arrives when the whole
answer is ready; in exchange, streamed requests are batched with the rest (see docs/serve.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Future
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from sqltune import __version__
from sqltune.db import execute
from sqltune.errors import SqltuneError
from sqltune.infer.ask import Reply
from sqltune.serve.auth import bearer_check
from sqltune.serve.chat import conversation, cut_at_stop, finish_reason, pieces
from sqltune.serve.errors import ApiError
from sqltune.serve.schemas import (
    ChatCompletion,
    ChatMessage,
    ChatRequest,
    Choice,
    SqlRequest,
    SqlResponse,
    Usage,
    json_value,
)
from sqltune.serve.service import Service
from sqltune.serve.worker import ChatResult, ChatWork, SqlWork

log = logging.getLogger("sqltune.serve")
DISCONNECT_POLL = 0.25  # seconds between checks that a waiting client is still there
TOO_MANY_ROWS = "too many rows"  # sqltune.db's error when max_rows cut the result


class ClientGone(ApiError):
    """The client disconnected while its request waited: nothing is left to answer."""

    def __init__(self) -> None:
        super().__init__(499, "the client closed the request")  # nginx's status for it; no one reads it


async def outcome(request: Request, future: Future):
    """The result of a queued job, or ClientGone when the client disconnects first: its job is then
    dropped if its batch has not started (a started batch finishes; its answer is discarded)."""
    waiting = asyncio.wrap_future(future)
    while True:
        done, _ = await asyncio.wait({waiting}, timeout=DISCONNECT_POLL)
        if done:
            return waiting.result()
        if await request.is_disconnected():
            waiting.cancel()
            raise ClientGone()


def error_response(error: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def validation_message(err: RequestValidationError) -> tuple[str, str | None]:
    """pydantic's errors as one line, and the field of the first (OpenAI's `param`)."""
    parts, first = [], None
    for item in err.errors()[:3]:
        where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        first = first or where or None
        parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
    return "; ".join(parts) or "malformed request", first


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return error_response(err)

    @app.exception_handler(SqltuneError)
    async def sqltune_error(request: Request, err: SqltuneError) -> JSONResponse:
        return error_response(ApiError(400, str(err)))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        message, param = validation_message(err)
        return error_response(ApiError(400, message, code="invalid_request", param=param))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        message = (
            f"no such endpoint: {request.method} {request.url.path}" if err.status_code == 404 else err.detail
        )
        return error_response(ApiError(err.status_code, str(message)))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("request failed: %s %s", request.method, request.url.path)
        return error_response(
            ApiError(500, f"internal error ({type(err).__name__}); the server keeps serving")
        )


def chat_routes(service: Service) -> APIRouter:
    router = APIRouter()

    @router.get("/models")
    async def models() -> dict:
        return {"object": "list", "data": [model_card(service)]}

    @router.get("/models/{model:path}")
    async def model(model: str) -> dict:
        if model != service.model_id:
            raise ApiError(
                404, f"unknown model '{model}'; this server serves '{service.model_id}'", param="model"
            )
        return model_card(service)

    @router.post("/chat/completions", response_model=None)
    async def chat_completions(body: ChatRequest, request: Request) -> ChatCompletion | EventSourceResponse:
        if body.n > service.args.max_choices:
            raise ApiError(400, f"n: at most {service.args.max_choices} choices per request", param="n")
        messages = tuple((m.role, m.text()) for m in body.messages)
        conversation(messages)  # malformed conversations are refused before they queue
        settings = service.chat_settings(
            body.max_completion_tokens or body.max_tokens, body.temperature, body.top_p
        )
        work = ChatWork(messages, settings, body.n)
        result: ChatResult = await outcome(request, service.queue.submit(work.key, work))
        choices = []
        for index, candidate in enumerate(result.candidates):
            text, stopped = cut_at_stop(candidate.text, body.stops)
            reason = finish_reason(candidate.new_tokens, settings.max_new_tokens, stopped)
            choices.append(Choice(index=index, message=ChatMessage(content=text), finish_reason=reason))
        completion_tokens = sum(c.new_tokens for c in result.candidates)
        completion = ChatCompletion(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=service.model_id,
            choices=choices,
            usage=Usage(
                prompt_tokens=result.prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=result.prompt_tokens + completion_tokens,
            ),
        )
        if not body.stream:
            return completion
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return EventSourceResponse(stream_chunks(completion, usage))

    return router


def model_card(service: Service) -> dict:
    return {"id": service.model_id, "object": "model", "created": service.created, "owned_by": "sqltune"}


async def stream_chunks(completion: ChatCompletion, usage: bool) -> AsyncIterator[dict]:
    """A finished completion as OpenAI's stream: per choice a role chunk, content chunks and a
    finish chunk; then the usage chunk when asked for; then `[DONE]`."""
    head = {"id": completion.id, "object": "chat.completion.chunk", "created": completion.created}
    head["model"] = completion.model

    def chunk(choices: list, **extra) -> dict:
        return {"data": json.dumps({**head, "choices": choices, **extra})}

    for choice in completion.choices:
        start = {"role": "assistant", "content": ""}
        yield chunk([{"index": choice.index, "delta": start, "finish_reason": None}])
        for piece in pieces(choice.message.content):
            yield chunk([{"index": choice.index, "delta": {"content": piece}, "finish_reason": None}])
        yield chunk([{"index": choice.index, "delta": {}, "finish_reason": choice.finish_reason}])
    if usage:
        yield chunk([], usage=completion.usage.model_dump())
    yield {"data": "[DONE]"}


def sql_routes(service: Service) -> APIRouter:
    router = APIRouter()

    @router.get("/databases")
    async def databases() -> dict:
        return {"object": "list", "data": list(service.summaries.values())}

    @router.post("/sql")
    async def sql(body: SqlRequest, request: Request) -> SqlResponse:
        began = time.perf_counter()
        database = service.database(body.database)
        work = SqlWork(database.name, database.target, body.question, service.sql_settings(body.decoding))
        reply: Reply = await outcome(request, service.queue.submit(work.key, work))
        result = reply.result
        if reply.is_sql and body.execute:
            max_rows = min(body.max_rows or service.args.max_rows, service.args.max_rows)
            result = await run_in_threadpool(
                execute, database.target, reply.sql, service.args.timeout, max_rows
            )
        truncated = result.error == TOO_MANY_ROWS
        return SqlResponse(
            sql=reply.sql,
            columns=list(result.columns),
            rows=[[json_value(value) for value in row] for row in result.rows],
            row_count=len(result.rows),
            truncated=truncated,
            error=None if truncated else result.error,
            seconds=round(time.perf_counter() - began, 4),
        )

    return router


def create_app(service: Service, api_key: str | None = None) -> FastAPI:
    """The FastAPI application over a loaded `Service`; closing the app stops its worker thread."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.close()

    app = FastAPI(title="sqltune serve", version=__version__, lifespan=lifespan)
    add_error_handlers(app)
    guarded = [Depends(bearer_check(api_key))]
    app.include_router(chat_routes(service), prefix="/v1", dependencies=guarded)
    app.include_router(sql_routes(service), prefix="/v1", dependencies=guarded)

    @app.get("/health")
    async def health() -> dict:
        return {
            "status": "ok",
            "model": service.model_id,
            "waiting": service.queue.waiting,
            "batching": service.queue.stats.snapshot(),
        }

    return app
