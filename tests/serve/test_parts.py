"""The parts of `sqltune serve` on their own: the batching queue, messages to turns, stop sequences,
JSON-safe rows, the served databases, API keys, and the command's one-line errors."""

from __future__ import annotations

import datetime
import decimal
import socket
import threading
import time

import pytest

from sqltune.cli import main as cli
from sqltune.errors import ConfigError
from sqltune.serve.auth import ENV_KEY, api_key_from
from sqltune.serve.batching import BatchQueue
from sqltune.serve.chat import conversation, cut_at_stop, finish_reason, pieces
from sqltune.serve.databases import resolve_databases
from sqltune.serve.errors import ApiError
from sqltune.serve.schemas import json_value
from tests.infer.conftest import write_concert_db


# -- the queue -------------------------------------------------------------------------------------------
def recording_queue(batch_size: int = 4, max_wait: float = 0.2, max_queue: int = 64):
    calls: list[tuple] = []
    release = threading.Event()

    def run(key, payloads):
        release.wait(5)
        calls.append((key, list(payloads)))
        return [ValueError("bad") if p == "bad" else p.upper() for p in payloads]

    return BatchQueue(run, batch_size, max_wait, max_queue), calls, release


def test_jobs_that_arrive_together_are_grouped_by_key_up_to_the_batch_size():
    queue, calls, release = recording_queue(batch_size=3)
    queue.start()
    try:
        jobs = [("a", "x"), ("b", "y"), ("a", "z"), ("a", "w"), ("a", "v")]
        futures = [queue.submit(key, text) for key, text in jobs]
        release.set()
        assert [f.result(5) for f in futures] == ["X", "Y", "Z", "W", "V"]
    finally:
        queue.close()
    # at most 3 a time; then the oldest waiting job's key first: y came before v
    assert calls == [("a", ["x", "z", "w"]), ("b", ["y"]), ("a", ["v"])]
    stats = queue.stats.snapshot()
    assert stats["requests"] == 5 and queue.waiting == 0


def test_jobs_arriving_during_a_batch_join_their_kind_in_the_next():
    queue, calls, release = recording_queue(batch_size=8, max_wait=0.05)
    queue.start()
    try:
        first = queue.submit("a", "first")
        time.sleep(0.5)  # the worker runs "first" and waits for `release`
        later = [queue.submit(key, text) for key, text in [("b", "1"), ("a", "2"), ("b", "3"), ("a", "4")]]
        release.set()
        assert [f.result(5) for f in [first, *later]] == ["FIRST", "1", "2", "3", "4"]
    finally:
        queue.close()
    assert calls == [("a", ["first"]), ("b", ["1", "3"]), ("a", ["2", "4"])]


def test_a_failed_job_fails_alone_and_a_cancelled_one_is_dropped():
    queue, calls, release = recording_queue(batch_size=8, max_wait=0.05)
    queue.start()
    try:
        blocker = queue.submit("a", "first")  # the worker takes it and waits for `release`
        time.sleep(0.5)
        bad, good, gone = queue.submit("a", "bad"), queue.submit("a", "ok"), queue.submit("a", "gone")
        assert gone.cancel()
        release.set()
        assert blocker.result(5) == "FIRST" and good.result(5) == "OK"
        with pytest.raises(ValueError):
            bad.result(5)
    finally:
        queue.close()
    assert calls[-1] == ("a", ["bad", "ok"]) and queue.stats.snapshot()["dropped"] == 1


def test_a_full_queue_refuses_with_503():
    queue, _, _ = recording_queue(max_queue=2)  # never started: nothing leaves the queue
    queue.submit("a", "x")
    queue.submit("a", "y")
    with pytest.raises(ApiError) as refused:
        queue.submit("a", "z")
    assert refused.value.status == 503 and "busy" in refused.value.message


# -- chat messages ------------------------------------------------------------------------------------------
def test_messages_become_the_templates_turns():
    system, turns = conversation(
        [
            ("system", "Be brief."),
            ("user", "hi"),
            ("assistant", "hello"),
            ("developer", "Use SQL."),
            ("user", "count"),
            ("user", "singers"),
        ]
    )
    assert system == "Be brief.\n\nUse SQL." and turns == [("hi", "hello"), ("count\n\nsingers", None)]
    for messages, words in [
        ([("assistant", "x"), ("user", "y")], "must follow a user message"),
        ([("user", "x"), ("assistant", "y")], "last message must be from the user"),
        ([("system", "x")], "last message must be from the user"),
    ]:
        with pytest.raises(ApiError, match=words) as refused:
            conversation(messages)
        assert refused.value.status == 400


def test_stop_sequences_finish_reasons_and_stream_pieces():
    assert cut_at_stop("SELECT 1; SELECT 2", [";", "SELECT 2"]) == ("SELECT 1", True)
    assert cut_at_stop("no stop here", ["zz", ""]) == ("no stop here", False)
    assert finish_reason(16, 16, stopped=False) == "length" and finish_reason(16, 16, stopped=True) == "stop"
    assert finish_reason(3, 16, stopped=False) == "stop"
    text = "  SELECT name\n FROM  singer ;"
    assert "".join(pieces(text)) == text and len(pieces(text)) == 5


def test_rows_are_json_safe():
    values = [
        datetime.date(2024, 2, 29),
        datetime.datetime(2024, 2, 29, 13, 5),
        decimal.Decimal("1.10"),
        b"\x00\xff",
        float("nan"),
        2.5,
        None,
    ]
    assert [json_value(v) for v in values] == [
        "2024-02-29",
        "2024-02-29T13:05:00",
        "1.10",
        "x'00ff'",
        "nan",
        2.5,
        None,
    ]


# -- databases --------------------------------------------------------------------------------------------
def test_databases_from_files_folders_urls_and_the_demo(tmp_path, monkeypatch):
    monkeypatch.setenv("SQLTUNE_CACHE", str(tmp_path / "cache"))
    spider = tmp_path / "spider"
    write_concert_db(spider / "concert_singer" / "concert_singer.sqlite")
    write_concert_db(spider / "loose.sqlite")
    shop = write_concert_db(tmp_path / "shop.sqlite")
    served = resolve_databases([str(spider), str(shop), "postgresql://reader:pw@127.0.0.1:5432/crm", "demo"])
    assert list(served)[:4] == ["concert_singer", "loose", "shop", "crm"]
    assert {"hospital", "flights"} <= set(served) and (tmp_path / "cache" / "demo_databases").is_dir()
    crm = served["crm"]
    assert crm.dialect == "postgresql" and crm.shown == "postgresql://reader:***@127.0.0.1:5432/crm"
    with pytest.raises(ConfigError, match="two databases are named 'shop'"):
        resolve_databases([str(shop), f"sqlite:///{shop}"])
    with pytest.raises(ConfigError, match="no such SQLite file or folder"):
        resolve_databases([str(tmp_path / "missing.sqlite")])
    with pytest.raises(ConfigError, match="names no database"):
        resolve_databases(["postgresql://reader:pw@127.0.0.1:5432"])


# -- keys and the command --------------------------------------------------------------------------------
def test_the_api_key_comes_from_the_argument_else_the_environment(monkeypatch):
    monkeypatch.delenv(ENV_KEY, raising=False)
    assert api_key_from(None) is None
    monkeypatch.setenv(ENV_KEY, "from-env")
    assert api_key_from(None) == "from-env" and api_key_from("given") == "given"


def test_the_command_fails_in_one_line_before_loading_a_model(tmp_path, capsys):
    assert cli(["serve", "--help"]) == 0
    assert "max_wait_ms" in capsys.readouterr().out
    assert cli(["serve", f"databases={tmp_path / 'missing.sqlite'}", "port=0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such SQLite file or folder" in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert cli(["serve", f"port={taken.getsockname()[1]}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot listen on 127.0.0.1:" in err
    assert cli(["serve", "batch_size=0"]) == 2 and "batch_size: must be >= 1" in capsys.readouterr().err


def test_a_chat_request_overrides_only_the_settings_it_gives():
    from types import SimpleNamespace

    from sqltune.args import GeneratingArguments
    from sqltune.serve.service import Service

    server = GeneratingArguments(max_new_tokens=100, num_beams=2, top_k=7, decoding="execution_guided")
    service = Service(None, SimpleNamespace(settings=server), {}, {}, None, "m", 0)
    default = service.chat_settings(None, None, None)
    assert (default.max_new_tokens, default.do_sample, default.num_beams, default.top_k) == (100, False, 2, 7)
    assert default.decoding == "single" and not default.stop_after_statement
    sampled = service.chat_settings(16, 0.5, 0.9)
    assert (sampled.max_new_tokens, sampled.do_sample, sampled.temperature, sampled.top_p) == (
        16,
        True,
        0.5,
        0.9,
    )
    assert sampled.num_beams == 1 and sampled.top_k == 7
    assert service.chat_settings(None, 0, None).do_sample is False
    assert service.sql_settings(None).decoding == "execution_guided"
    assert service.sql_settings("single").decoding == "single"
