"""Fixtures of the API server tests: a tiny model taught a few fixed answers, and real servers.

A random tiny model writes no SQL, so `taught_model_dir` trains one (in a few seconds) to answer
the prompts the server will build: the concert questions with one fixed query, a greeting with a
sentence that is not SQL, and the chat message "ping" with a fixed reply. The server then really
generates, extracts, executes and streams known answers, and the tests can check them exactly.

Servers are the real thing: `sqltune.serve.command.build_server` (the code `sqltune serve` runs)
on a free loopback port, uvicorn in a background thread, stopped when the module's tests end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.data.conftest import demo_dir  # noqa: F401
from tests.infer.conftest import write_concert_db
from tests.tiny import QUESTIONS, tiny_model_dir  # noqa: F401

SQL_ANSWER = "SELECT count(*) FROM singer"
GREETING_QUESTION = "Say hello to me."
GREETING = "Hello there, friend."
PING_REPLY = "pong, pong and pong."
SQL_QUESTIONS = [question for question, _ in QUESTIONS[:2]]
MAX_NEW_TOKENS = 24
MAX_PROMPT_TOKENS = 1500
PROMPT_FORMAT = "compact"  # the shortest prompts: the least to train on
TRAIN_STEPS = 60  # at lr 1e-2 the answers come out exactly from about 50 steps
TRAIN_LR = 1e-2


@pytest.fixture(scope="session")
def concert_db(tmp_path_factory) -> Path:
    return write_concert_db(tmp_path_factory.mktemp("served") / "concert_singer.sqlite")


@pytest.fixture(scope="session")
def taught_model_dir(tiny_model_dir, concert_db, tmp_path_factory) -> Path:  # noqa: F811
    """The tiny model trained to give the fixed answers above to the server's own prompts."""
    import torch

    from sqltune.args import GeneratingArguments, ModelArguments, PromptArguments
    from sqltune.infer.ask import Asker
    from sqltune.infer.engine import model_source
    from sqltune.serve.chat import encode_chat

    asker = Asker(
        model_source(None, ModelArguments(model_name_or_path=str(tiny_model_dir))),
        GeneratingArguments(max_new_tokens=MAX_NEW_TOKENS),
        PromptArguments(prompt_format=PROMPT_FORMAT),
        dtype="float32",
    )
    tokenizer = asker.engine.tokenizer
    pairs = [(asker.prompt_ids(str(concert_db), q), SQL_ANSWER) for q in SQL_QUESTIONS]
    pairs.append((asker.prompt_ids(str(concert_db), GREETING_QUESTION), GREETING))
    pairs.append((encode_chat(asker.template, tokenizer, [("user", "ping")]), PING_REPLY))
    rows = []
    for prompt, answer in pairs:
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append((prompt + answer_ids, [-100] * len(prompt) + answer_ids))
    width = max(len(ids) for ids, _ in rows)
    # padded on the right, so every row's positions start at 0 as they do when the server asks
    input_ids = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    torch.manual_seed(0)
    model = asker.engine.model  # loaded in float32 above
    optimizer = torch.optim.AdamW(model.parameters(), lr=TRAIN_LR)
    model.train()
    for _ in range(TRAIN_STEPS):
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    out = tmp_path_factory.mktemp("taught-llama")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@dataclass
class RunningServer:
    url: str  # http://127.0.0.1:PORT
    service: object  # sqltune.serve.service.Service

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=10).json()


@pytest.fixture(scope="module")
def start_server() -> Iterator:
    """`start(argv)` runs `sqltune serve argv port=0` in this process; every server is stopped at the end."""
    from sqltune.serve.command import build_server

    running = []

    def start(argv: list[str]) -> RunningServer:
        server, sock, service = build_server([*argv, "host=127.0.0.1", "port=0"])
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        running.append((server, thread, sock))
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return RunningServer(f"http://127.0.0.1:{sock.getsockname()[1]}", service)

    try:
        yield start
    finally:
        for server, thread, sock in running:
            server.should_exit = True
            thread.join(15)
            sock.close()


def server_argv(model_dir: Path, *databases: Path | str, **options) -> list[str]:
    settings = {
        "model_name_or_path": model_dir,
        "databases": ",".join(str(d) for d in databases),
        "max_new_tokens": MAX_NEW_TOKENS,
        "max_prompt_tokens": MAX_PROMPT_TOKENS,
        "prompt_format": PROMPT_FORMAT,
        "infer_dtype": "float32",
        "batch_size": 8,
        "max_wait_ms": 150,
        **options,
    }
    return [f"{key}={value}" for key, value in settings.items()]
