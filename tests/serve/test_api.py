"""`sqltune serve` as a user meets it: a real server on a loopback port, called with httpx and with
the official `openai` client, plain and streaming; the Text-to-SQL endpoints on real SQLite files;
every bad request refused with a 4xx JSON error while the server keeps serving; concurrent requests
batched, as the server's own statistics show."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import openai
import pytest

from tests.serve.conftest import (
    GREETING_QUESTION,
    MAX_NEW_TOKENS,
    MAX_PROMPT_TOKENS,
    PING_REPLY,
    SQL_ANSWER,
    SQL_QUESTIONS,
    server_argv,
)

PING = [{"role": "user", "content": "ping"}]


@pytest.fixture(scope="module")
def served(start_server, taught_model_dir, concert_db, demo_dir):
    """A server of the taught model over the concert database and the demo databases, no key."""
    return start_server(server_argv(taught_model_dir, concert_db, demo_dir))


@pytest.fixture(scope="module")
def client(served) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0, timeout=30)


def post(served, path: str, body) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    headers = {"Content-Type": "application/json"}
    return httpx.post(f"{served.url}{path}", content=content, headers=headers, timeout=30)


def assert_openai_error(response: httpx.Response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and isinstance(error["message"], str)
    for word in words:
        assert word in error["message"], error
    return error


# -- the OpenAI-compatible endpoints ------------------------------------------------------------------
def test_models_lists_the_served_model(client, served, taught_model_dir):
    models = client.models.list().data
    assert [m.id for m in models] == [taught_model_dir.name] and models[0].owned_by == "sqltune"
    assert client.models.retrieve(taught_model_dir.name).id == taught_model_dir.name
    health = served.health()
    assert health["status"] == "ok" and health["model"] == taught_model_dir.name


def test_openai_client_chat(client):
    completion = client.chat.completions.create(model="any-name", messages=PING)
    choice = completion.choices[0]
    assert choice.message.content == PING_REPLY and choice.message.role == "assistant"
    assert choice.finish_reason == "stop" and completion.object == "chat.completion"
    usage = completion.usage
    assert usage.prompt_tokens > 5 and 5 < usage.completion_tokens < MAX_NEW_TOKENS
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_openai_client_streaming_ends_with_done(client, served):
    stream = client.chat.completions.create(
        model="m", messages=PING, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == PING_REPLY and len(chunks) > 3
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    with httpx.stream(
        "POST", f"{served.url}/v1/chat/completions", json={"messages": PING, "stream": True}
    ) as r:
        lines = [line for line in r.iter_lines() if line.strip()]
    assert r.headers["content-type"].startswith("text/event-stream") and lines[-1] == "data: [DONE]"


def test_stop_max_tokens_and_n(client):
    stopped = client.chat.completions.create(model="m", messages=PING, stop=[",", "zzz"])
    assert stopped.choices[0].message.content == "pong" and stopped.choices[0].finish_reason == "stop"
    short = client.chat.completions.create(model="m", messages=PING, max_tokens=3)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3
    assert PING_REPLY.startswith(short.choices[0].message.content)
    for temperature in (0, 0.9):  # n best beams when greedy, n samples when sampling
        several = client.chat.completions.create(model="m", messages=PING, n=2, temperature=temperature)
        assert [c.index for c in several.choices] == [0, 1]
        assert several.usage.completion_tokens > 0


def test_a_conversation_with_system_and_history(client):
    messages = [
        {"role": "system", "content": "You answer pings."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": [{"type": "text", "text": "ping"}]},
    ]
    completion = client.chat.completions.create(model="m", messages=messages, max_tokens=5)
    assert completion.choices[0].finish_reason in ("stop", "length") and completion.usage.prompt_tokens > 10


# -- the Text-to-SQL endpoints ----------------------------------------------------------------------------
def test_databases_lists_names_and_schemas(served):
    data = httpx.get(f"{served.url}/v1/databases").json()["data"]
    names = [d["name"] for d in data]
    assert names[0] == "concert_singer" and {"hospital", "flights", "bookstore"} <= set(names)
    concert = data[0]
    singer = next(t for t in concert["tables"] if t["name"] == "singer")
    assert concert["dialect"] == "sqlite" and [c["name"] for c in singer["columns"]][:2] == [
        "singer_id",
        "name",
    ]


def test_sql_generates_executes_and_returns_rows(served, concert_db):
    before = concert_db.read_bytes()
    answer = post(served, "/v1/sql", {"database": "concert_singer", "question": SQL_QUESTIONS[0]}).json()
    assert answer == {
        "sql": SQL_ANSWER,
        "columns": ["count(*)"],
        "rows": [[3]],
        "row_count": 1,
        "truncated": False,
        "error": None,
        "seconds": answer["seconds"],
    }
    assert answer["seconds"] > 0
    unexecuted = post(
        served, "/v1/sql", {"database": "concert_singer", "question": SQL_QUESTIONS[1], "execute": False}
    )
    assert unexecuted.json()["sql"] == SQL_ANSWER and unexecuted.json()["rows"] == []
    guided = {"database": "concert_singer", "question": SQL_QUESTIONS[0], "decoding": "execution_guided"}
    assert post(served, "/v1/sql", guided).json()["rows"] == [[3]]
    assert concert_db.read_bytes() == before


def test_an_answer_that_is_not_sql_runs_nothing(served, concert_db):
    before = concert_db.read_bytes()
    answer = post(served, "/v1/sql", {"database": "concert_singer", "question": GREETING_QUESTION}).json()
    assert answer["error"] == "not SQL" and answer["rows"] == [] and answer["columns"] == []
    assert concert_db.read_bytes() == before


def test_sql_on_a_demo_database_reports_the_database_error(served):
    answer = post(
        served, "/v1/sql", {"database": "hospital", "question": "How many doctors are there?"}
    ).json()
    assert set(answer) == {"sql", "columns", "rows", "row_count", "truncated", "error", "seconds"}
    assert answer["error"] is not None or answer["row_count"] >= 0


# -- bad requests: 4xx in OpenAI's shape, and the server keeps serving --------------------------------
def test_bad_requests_get_json_errors(served, client):
    error = assert_openai_error(
        post(served, "/v1/sql", {"database": "nope", "question": "How many?"}), 404, "unknown database 'nope'"
    )
    assert error["param"] == "database" and "concert_singer" in error["message"]
    assert_openai_error(post(served, "/v1/sql", {"database": "concert_singer"}), 400, "question")
    assert_openai_error(
        post(served, "/v1/sql", {"database": "concert_singer", "question": ""}), 400, "question"
    )
    assert_openai_error(post(served, "/v1/chat/completions", {"model": "m"}), 400, "messages")
    assert_openai_error(post(served, "/v1/chat/completions", {"messages": []}), 400, "messages")
    assert_openai_error(
        post(served, "/v1/chat/completions", {"messages": [{"role": "robot", "content": "hi"}]}), 400, "role"
    )
    assert_openai_error(
        post(served, "/v1/chat/completions", {"messages": [{"role": "user"}]}), 400, "content"
    )
    assert_openai_error(
        post(served, "/v1/chat/completions", {"messages": [*PING, {"role": "assistant", "content": "x"}]}),
        400,
        "last message must be from the user",
    )
    assert_openai_error(post(served, "/v1/chat/completions", "{not json"), 400)
    assert_openai_error(post(served, "/v1/chat/completions", {"messages": PING, "n": 99}), 400, "n: at most")
    assert_openai_error(post(served, "/v1/chat/completions", {"messages": PING, "temperature": -1}), 400)
    assert_openai_error(httpx.get(f"{served.url}/v1/nothing"), 404, "no such endpoint")
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="m", messages=[{"role": "robot", "content": "x"}])
    assert client.chat.completions.create(model="m", messages=PING).choices[0].message.content == PING_REPLY


def test_an_oversized_prompt_is_refused_with_its_token_count(served, client):
    huge = [{"role": "user", "content": "ping " * MAX_PROMPT_TOKENS}]
    error = assert_openai_error(
        post(served, "/v1/chat/completions", {"messages": huge}), 400, f"at most {MAX_PROMPT_TOKENS}"
    )
    assert error["code"] == "context_length_exceeded" and error["message"].startswith("the prompt has ")
    tokens = int(error["message"].split()[3])
    assert tokens > MAX_PROMPT_TOKENS
    assert client.chat.completions.create(model="m", messages=PING).choices[0].message.content == PING_REPLY


def test_clients_that_leave_do_not_stop_the_server(served, client):
    with httpx.stream(
        "POST", f"{served.url}/v1/chat/completions", json={"messages": PING, "stream": True}
    ) as r:
        next(r.iter_raw())  # the first bytes, then the connection closes mid-stream
    before = served.health()["batching"]["requests"]
    body = json.dumps({"database": "concert_singer", "question": SQL_QUESTIONS[0]}).encode()
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as raw:  # a request, then gone before its answer
        head = f"POST /v1/sql HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        raw.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    deadline = time.monotonic() + 10
    while served.health()["batching"]["requests"] == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert served.health()["batching"]["requests"] == before + 1
    assert client.chat.completions.create(model="m", messages=PING).choices[0].message.content == PING_REPLY
    assert served.health()["status"] == "ok"


# -- batching ---------------------------------------------------------------------------------------------
def test_concurrent_requests_share_generate_calls(served):
    async def ask_together() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=served.url, timeout=60) as http:
            sql = [
                http.post("/v1/sql", json={"database": "concert_singer", "question": q})
                for q in SQL_QUESTIONS * 4
            ]
            chat = [http.post("/v1/chat/completions", json={"messages": PING}) for _ in range(8)]
            return await asyncio.gather(*sql, *chat)

    before = served.health()["batching"]
    responses = asyncio.run(ask_together())
    after = served.health()["batching"]
    assert all(r.status_code == 200 for r in responses)
    assert all(r.json()["rows"] == [[3]] for r in responses[:8])
    assert all(r.json()["choices"][0]["message"]["content"] == PING_REPLY for r in responses[8:])
    calls = after["generate_calls"] - before["generate_calls"]
    assert after["generated"] - before["generated"] == 16
    assert calls < 8, after  # 16 requests; one call per kind when they all arrive within max_wait_ms
    assert max(int(size) for size in after["batch_sizes"]) >= 4


# -- auth ---------------------------------------------------------------------------------------------------
def test_an_api_key_is_required_when_set(start_server, taught_model_dir, concert_db):
    keyed = start_server(server_argv(taught_model_dir, concert_db, api_key="s3cret"))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        response = httpx.get(f"{keyed.url}/v1/models", headers=headers)
        assert_openai_error(response, 401, "API key")
        assert response.headers["www-authenticate"] == "Bearer"
    assert_openai_error(httpx.post(f"{keyed.url}/v1/sql", json={}), 401)
    assert httpx.get(f"{keyed.url}/health").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="wrong", max_retries=0).models.list()
    good = openai.OpenAI(base_url=f"{keyed.url}/v1", api_key="s3cret", max_retries=0)
    assert good.chat.completions.create(model="m", messages=PING).choices[0].message.content == PING_REPLY
    answer = httpx.post(
        f"{keyed.url}/v1/sql",
        json={"database": "concert_singer", "question": SQL_QUESTIONS[0]},
        headers={"Authorization": "Bearer s3cret"},
    )
    assert answer.json()["rows"] == [[3]]
