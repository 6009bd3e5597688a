"""The SQL agent loop (`sqltune.infer.agent`), `sqltune predict decoding=agent` and `sqltune ask --agent`.

A tiny random model does not call tools by itself, so the loop's logic is tested with generations the
test controls: `Script` answers each prompt with the next text of its question's script. Everything
else is real: the tiny tokenizer and its chat template encode every round's prompt (`Script` decodes
each prompt it is given, so a test can check that an observation really reached the model), the
tools run on a real SQLite database built here, and the CLI tests load the real tiny model, whose
`HfEngine.generate` alone is replaced. One end-to-end test runs the trained tiny run unscripted.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections import defaultdict
from pathlib import Path

import pytest

from sqltune.args import GeneratingArguments, PromptArguments
from sqltune.cli import main as cli
from sqltune.data.example import Example
from sqltune.data.prompts import build_prompt
from sqltune.files import read_jsonl
from sqltune.infer.agent import STOP_REASONS, Agent, AgentTask, opening_messages
from sqltune.infer.engine import Batch, Candidate
from sqltune.infer.hf import HfEngine
from sqltune.infer.tools import TOOLS
from sqltune.models.encoding import encode_conversation
from sqltune.models.templates import get_template
from tests.infer.conftest import write_concert_db
from tests.tiny import QUESTIONS, concert_schema

COUNT_Q, FRANCE_Q, AGE_Q, CONCERT_Q = (q for q, _ in QUESTIONS[:4])
SLOW_SQL = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


def call(name: str, **arguments) -> str:
    """A tool call as the model writes it (the default format)."""
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def sql_call(sql: str) -> str:
    return call("execute_sql", sql=sql)


class Script:
    """Generations chosen by the test: each prompt gets the next text of its question's script (the
    question is the one asked last in the decoded prompt); a question without a script answers
    `default`. Keeps every decoded prompt per question and the number of generate calls."""

    def __init__(self, responses: dict[str, list[str]], default: str = "SELECT 1", batch_size: int = 2):
        self.responses = {question: list(texts) for question, texts in responses.items()}
        self.default = default
        self.batch_size = batch_size
        self.prompts: dict[str, list[str]] = defaultdict(list)
        self.calls = 0

    def question(self, text: str) -> str | None:
        asked = {q: text.rfind(q) for q, _ in QUESTIONS if q in text}
        return max(asked, key=asked.get) if asked else None

    def generate(self, tokenizer, prompts, settings: GeneratingArguments, candidates: int = 1):
        assert candidates == 1 and not settings.do_sample and not settings.stop_after_statement
        self.calls += 1
        for start in range(0, len(prompts), self.batch_size):
            indices = list(range(start, min(start + self.batch_size, len(prompts))))
            answers = []
            for index in indices:
                text = tokenizer.decode(prompts[index])
                question = self.question(text)
                self.prompts[question].append(text)
                script = self.responses.get(question)
                reply = script.pop(0) if script else self.default
                answers.append([Candidate(reply, len(tokenizer(reply)["input_ids"]) + 1)])
            yield Batch(indices, answers, 0.01)


class ScriptedEngine:
    """The engine protocol over the real tiny tokenizer, generating from a `Script`."""

    def __init__(self, tokenizer, script: Script) -> None:
        self.tokenizer = tokenizer
        self.script = script

    def generate(self, prompts, settings, candidates=1):
        return self.script.generate(self.tokenizer, prompts, settings, candidates)


@pytest.fixture
def concert_db(tmp_path) -> Path:
    return write_concert_db(tmp_path / "concert.sqlite")


def task(question: str, db: Path) -> AgentTask:
    schema = concert_schema()
    example = Example("q", schema.db_id, question, "")
    return AgentTask(
        opening_messages(build_prompt(example, schema, PromptArguments(prompt_format="dbgpt"))), db, schema
    )


def run_agent(tokenizer, db: Path, responses: dict, budget: int = 100_000, timeout: float = 2.0, **settings):
    """Run the agent on the scripted questions; returns ({question: answer}, the script, the batches)."""
    script = Script(responses)
    engine = ScriptedEngine(tokenizer, script)
    agent = Agent(engine, get_template("auto", tokenizer), GeneratingArguments(**settings), budget, timeout)
    questions = list(responses)
    batches = list(agent.run([task(q, db) for q in questions]))
    answers = {questions[i]: answer for batch in batches for i, answer in batch}
    assert sorted(answers) == sorted(questions) and all(
        a.stop_reason in STOP_REASONS for a in answers.values()
    )
    return answers, script, batches


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_call_its_real_observation_then_the_answer(tiny_tokenizer, concert_db):
    responses = {
        COUNT_Q: [
            call("list_tables"),
            sql_call("SELECT count(*) FROM singers"),
            sql_call("SELECT count(*) FROM singer"),
            "SELECT count(*) FROM singer;",
        ],
        FRANCE_Q: [
            call("describe_table", table="singer"),
            "SELECT name FROM singer WHERE country = 'France'",
        ],
        AGE_Q: ["SELECT avg(age) FROM singer"],
    }
    answers, script, batches = run_agent(tiny_tokenizer, concert_db, responses)
    count = answers[COUNT_Q]
    assert [role for role, _ in count.trajectory] == [
        "user",
        *["function_call", "observation"] * 3,
        "assistant",
    ]
    observations = [content for role, content in count.trajectory if role == "observation"]
    assert observations[0] == "\n".join(concert_schema().table_names)
    assert observations[1].startswith("error: ") and "no such table: singers" in observations[1]
    assert observations[2] == "1 rows\ncount(*)\n3"
    assert (count.stop_reason, count.turns, count.tool_calls) == ("answered", 4, 3)
    assert count.sql == "SELECT count(*) FROM singer" and count.raw == "SELECT count(*) FROM singer;"
    assert count.first_sql == "SELECT count(*) FROM singers" and count.changed
    assert json.loads(count.trajectory[1][1]) == {"name": "list_tables", "arguments": {}}
    # every observation reached the model: the 4th prompt holds all three, in the default tool format
    last_prompt = script.prompts[COUNT_Q][-1]
    assert all(f"Observation:\n{text}" in last_prompt for text in observations)
    assert (
        '"name": "execute_sql"' in last_prompt and last_prompt.count("<tool_call>") == 4
    )  # 1 in the tools text
    expected, _ = encode_conversation(
        count.trajectory[:-1], get_template("auto", tiny_tokenizer), tiny_tokenizer, tools=TOOLS
    )
    assert last_prompt == tiny_tokenizer.decode(expected)

    france = answers[FRANCE_Q]
    described = france.trajectory[2][1]
    assert described.startswith("table singer\n- singer_id (number) primary key e.g. 1, 2, 3")
    assert "- country (text) e.g. France, Spain" in described
    assert (france.stop_reason, france.turns, france.first_sql, france.changed) == (
        "answered",
        2,
        "SELECT name FROM singer WHERE country = 'France'",
        False,
    )
    direct = answers[AGE_Q]
    assert (direct.turns, direct.tool_calls, direct.trajectory[-1]) == (
        1,
        0,
        ("assistant", "SELECT avg(age) FROM singer"),
    )
    # lock step: one generate call per round, answers yielded as their conversations end
    assert script.calls == 4
    assert [sorted(a.turns for _, a in batch) for batch in batches] == [[1], [2], [4]]


def test_a_malformed_call_ends_with_the_best_sql_so_far(tiny_tokenizer, concert_db):
    responses = {
        COUNT_Q: [
            sql_call("SELECT name FROM singer"),
            sql_call("SELECT nme FROM singer"),
            '<tool_call>\n{"name": execute_sql}',
        ],
        FRANCE_Q: ['<tool_call>{"name": "execute_sql", "arguments": "SELECT"}</tool_call>'],
    }
    answers, _, _ = run_agent(tiny_tokenizer, concert_db, responses)
    broken = answers[COUNT_Q]
    assert (broken.stop_reason, broken.turns, broken.tool_calls) == ("malformed call", 3, 2)
    assert broken.sql == "SELECT name FROM singer"  # the last query that returned rows, not the failed one
    assert broken.trajectory[-1] == ("assistant", '<tool_call>\n{"name": execute_sql}')
    nothing_ran = answers[FRANCE_Q]
    assert nothing_ran.stop_reason == "malformed call" and nothing_ran.tool_calls == 0
    assert (
        nothing_ran.sql == nothing_ran.first_sql == 'SELECT"}</tool_call>'
    )  # the single-shot extraction of its text


def test_a_repeated_call_is_a_loop_and_is_not_run_again(tiny_tokenizer, concert_db):
    looping = sql_call("SELECT name FROM singer WHERE age > 100")
    answers, _, _ = run_agent(tiny_tokenizer, concert_db, {COUNT_Q: [looping, looping, "SELECT 2"]})
    loop = answers[COUNT_Q]
    assert (loop.stop_reason, loop.turns, loop.tool_calls) == ("repeated call", 2, 1)
    assert [role for role, _ in loop.trajectory] == ["user", "function_call", "observation", "function_call"]
    assert loop.trajectory[2][1] == "0 rows\nname"
    assert loop.sql == "SELECT name FROM singer WHERE age > 100"  # it ran (no rows): still the best


def test_max_turns_answers_with_the_last_query_that_returned_rows(tiny_tokenizer, concert_db):
    responses = {
        COUNT_Q: [
            sql_call("SELECT name FROM singer WHERE country = 'France'"),
            sql_call("SELECT nme FROM singer"),
            sql_call("SELECT name FROM singer WHERE country = 'Peru'"),
            "SELECT 2",
        ],
        FRANCE_Q: [
            sql_call("SELECT nme FROM singer"),
            sql_call("SELECT age FROM singr"),
            "SELECT 3",
            "SELECT 4",
        ],
    }
    answers, script, _ = run_agent(tiny_tokenizer, concert_db, responses, max_turns=3)
    capped = answers[COUNT_Q]
    assert (capped.stop_reason, capped.turns, capped.tool_calls) == ("max_turns", 3, 3)
    assert capped.trajectory[-1] == ("observation", "0 rows\nname")  # the last call still ran
    assert capped.sql == "SELECT name FROM singer WHERE country = 'France'" and not capped.changed
    assert len(script.prompts[COUNT_Q]) == 3  # never asked a 4th time
    failing = answers[FRANCE_Q]  # nothing ran: the last SQL it wrote
    assert failing.stop_reason == "answered" and failing.sql == "SELECT 3"
    assert failing.first_sql == "SELECT nme FROM singer" and failing.changed


def test_slow_and_destructive_sql_are_error_observations(tiny_tokenizer, concert_db):
    before = checksum(concert_db)
    responses = {
        COUNT_Q: [sql_call(SLOW_SQL), "SELECT count(*) FROM singer"],
        FRANCE_Q: [
            sql_call("DROP TABLE singer"),
            sql_call("DELETE FROM singer"),
            "SELECT count(*) FROM singer",
        ],
        AGE_Q: [sql_call("SELECT 1; DELETE FROM singer"), sql_call("UPDATE singer SET age = 0"), "SELECT 1"],
    }
    began = time.perf_counter()
    answers, _, _ = run_agent(tiny_tokenizer, concert_db, responses, timeout=0.5)
    assert time.perf_counter() - began < 20
    assert answers[COUNT_Q].trajectory[2] == ("observation", "error: timeout")
    assert answers[COUNT_Q].stop_reason == "answered"
    for question in (FRANCE_Q, AGE_Q):
        refused = [c for role, c in answers[question].trajectory if role == "observation"]
        assert len(refused) == 2 and all(text.startswith("error: ") for text in refused), refused
        assert answers[question].stop_reason == "answered"
    assert checksum(concert_db) == before
    assert sqlite3.connect(concert_db).execute("SELECT count(*) FROM singer").fetchone() == (3,)


def test_a_conversation_that_outgrows_the_budget_ends_context_full(tiny_tokenizer, concert_db):
    first = task(COUNT_Q, concert_db).messages
    template = get_template("auto", tiny_tokenizer)
    opening, _ = encode_conversation(first, template, tiny_tokenizer, tools=TOOLS)
    responses = {
        COUNT_Q: [
            sql_call("SELECT count(*) FROM singer"),
            call("describe_table", table="concert"),
            "SELECT 1",
        ]
    }
    after_first = encode_conversation(
        [
            *first,
            (
                "function_call",
                json.dumps({"name": "execute_sql", "arguments": {"sql": "SELECT count(*) FROM singer"}}),
            ),
            ("observation", "1 rows\ncount(*)\n3"),
        ],
        template,
        tiny_tokenizer,
        tools=TOOLS,
    )[0]
    budget = len(after_first) + 10  # room for the first observation, not for a table description
    answers, script, _ = run_agent(tiny_tokenizer, concert_db, responses, budget=budget)
    full = answers[COUNT_Q]
    assert len(opening) < len(after_first) <= budget
    assert (full.stop_reason, full.turns, full.tool_calls) == ("context full", 2, 2)
    assert full.trajectory[-1][1].startswith("table concert")
    assert full.sql == "SELECT count(*) FROM singer" and len(script.prompts[COUNT_Q]) == 2


# ---- through the CLI, on the real tiny model --------------------------------------------------------


def scripted(monkeypatch, responses: dict, default: str = "SELECT 1") -> Script:
    """Replace the real engine's generation with `responses` (the model still loads)."""
    script = Script(responses, default)
    monkeypatch.setattr(
        HfEngine,
        "generate",
        lambda engine, prompts, settings, candidates=1: script.generate(
            engine.tokenizer, prompts, settings, candidates
        ),
    )
    return script


def predict(*argv: str) -> int:
    return cli(["predict", "max_new_tokens=8", "infer_dtype=float32", "cutoff_len=4096", *argv])


def test_predict_writes_trajectories_and_resumes(
    diverse_model_dir, db_data_dir, tmp_path, monkeypatch, capsys
):
    script = scripted(
        monkeypatch,
        {
            COUNT_Q: [sql_call("SELECT count(*) FROM singers"), "SELECT count(*) FROM singer"],
            FRANCE_Q: [
                sql_call("SELECT name FROM singer WHERE country = 'France'"),
                call("list_tables"),
                "```sql\nSELECT name FROM singer WHERE country = 'France';\n```",
            ],
        },
        default="SELECT count(*) FROM concert",
    )
    out = tmp_path / "preds.jsonl"
    base = [f"model_name_or_path={diverse_model_dir}", f"dataset_dir={db_data_dir}", "dataset=concert_dev"]
    assert predict(*base, f"output={out}", "decoding=agent", "max_turns=4", "--format", "spider") == 0
    rows = read_jsonl(out)
    assert [r["index"] for r in rows] == list(range(6))
    count, france = rows[0], rows[1]
    assert count["question"] == COUNT_Q and count["sql"] == "SELECT count(*) FROM singer"
    assert count["first_sql"] == "SELECT count(*) FROM singers" and count["changed"] is True
    assert [t["role"] for t in count["trajectory"]] == ["user", "function_call", "observation", "assistant"]
    assert count["trajectory"][0]["content"].endswith(f"{COUNT_Q}\n\n###Response:")  # the single-shot prompt
    assert "no such table: singers" in count["trajectory"][2]["content"]
    assert (count["turns"], count["stop_reason"], count["tool_calls"]) == (2, "answered", 1)
    assert france["sql"] == "SELECT name FROM singer WHERE country = 'France'" and france["changed"] is False
    assert france["turns"] == 3 and france["trajectory"][2]["content"] == "2 rows\nname\nJoe\nLi"
    assert all(r["stop_reason"] == "answered" and r["turns"] == 1 for r in rows[2:])
    assert all(
        r["prompt_tokens"] > 700 and r["new_tokens"] > 0 for r in rows
    )  # the tool list is in the prompt
    lines = out.with_suffix(".sql").read_text().split("\n")
    assert lines[0] == "SELECT count(*) FROM singer"
    assert "6 answered" in capsys.readouterr().err
    assert len(script.prompts[COUNT_Q]) == 2

    out.write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))  # as if interrupted
    rerun = scripted(monkeypatch, {}, default="SELECT count(*) FROM stadium")
    assert predict(*base, f"output={out}", "decoding=agent") == 0
    err = capsys.readouterr().err
    assert "6 (2 answered now)" in err and "agent stopped" in err and "2 answered" in err
    resumed = read_jsonl(out)
    assert resumed[:4] == rows[:4] and [r["sql"] for r in resumed[4:]] == ["SELECT count(*) FROM stadium"] * 2
    assert sum(len(p) for p in rerun.prompts.values()) == 2


def test_predict_decoding_agent_end_to_end_on_a_trained_run(tiny_run, db_data_dir, tmp_path):
    """Unscripted: the tiny run's own text goes through the loop (it does not call tools; whatever it
    writes ends the conversation with a recorded reason)."""
    out = tmp_path / "agent.jsonl"
    argv = [f"run_dir={tiny_run}", f"dataset_dir={db_data_dir}", "dataset=concert_dev", f"output={out}"]
    assert predict(*argv, "decoding=agent", "max_turns=2", "max_samples=3", "batch_size=2") == 0
    rows = read_jsonl(out)
    assert len(rows) == 3
    for row in rows:
        assert row["stop_reason"] in STOP_REASONS and 1 <= row["turns"] <= 2
        assert row["trajectory"][0]["role"] == "user" and row["new_tokens"] > 0
        assert isinstance(row["first_sql"], str) and isinstance(row["changed"], bool)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["decoding=agent", "do_sample=true"], "decoding=agent decodes greedily"),
        (["decoding=agent", "num_beams=2"], "decoding=agent decodes greedily"),
        (["decoding=agent", "max_turns=0"], "max_turns: must be >= 1"),
        (["decoding=single", "db_url=postgresql://u@127.0.0.1:1/{db_id}"], "execution_guided or agent"),
    ],
)
def test_agent_settings_errors_are_one_line(argv, message, db_data_dir, capsys):
    assert predict(f"dataset_dir={db_data_dir}", "dataset=concert_dev", *argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_ask_agent_shows_the_tool_steps_then_the_sql_and_rows(tiny_run, tmp_path, monkeypatch, capsys):
    db = write_concert_db(tmp_path / "concert.sqlite")
    before = checksum(db)
    scripted(
        monkeypatch,
        {
            COUNT_Q: [
                call("describe_table", table="singer"),
                sql_call("DELETE FROM singer"),
                sql_call("SELECT count(*) FROM singer"),
                "SELECT count(*) FROM singer",
            ]
        },
    )
    status = cli(
        [
            "ask",
            "--agent",
            "--db",
            str(db),
            f"run_dir={tiny_run}",
            COUNT_Q,
            "max_new_tokens=8",
            "cutoff_len=4096",
        ]
    )
    out, err = capsys.readouterr()
    assert status == 0
    assert out.startswith("SELECT count(*) FROM singer\n") and "3" in out
    assert '> {"name": "describe_table", "arguments": {"table": "singer"}}' in err
    assert "  table singer\n  - singer_id e.g. 1, 2, 3\n" in err  # introspected: no declared types
    assert "  error: " in err and "  1 rows\n  count(*)\n  3" in err
    assert "agent: answered after 4 turns, 3 tool call(s)" in err
    assert checksum(db) == before
