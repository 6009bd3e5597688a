"""`sqltune data agent`: traces over a real SQLite file (and a PostgreSQL server), through the CLI: the
record format, every observation against a fresh tool call, repair candidates that really fail or differ,
counts, reruns, skipped golds, the model's own wrong answers, and the perturbations themselves."""

import json
import random
import sqlite3
from collections import Counter

import pytest
import sqlglot
from sqlglot import exp

from sqltune.cli import main as cli
from sqltune.data.prompts import Prompt
from sqltune.data.records import load_dataset
from sqltune.feedback.agent_traces import perturbations
from sqltune.infer.tools import TOOLS, SqlTools
from sqltune.models.encoding import prompt_turns
from sqltune.models.tools import read_function_call
from tests.infer.conftest import tiny_run, write_concert_db  # noqa: F401
from tests.tiny import QUESTIONS, TABLES, concert_schema, make_dataset, tiny_model_dir  # noqa: F401

DB_ID = "concert_singer"
QUESTION_COUNT = 12  # the ten questions, then two more; every fourth has an earlier turn


@pytest.fixture(scope="module")
def db_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("databases")
    write_concert_db(folder / DB_ID / f"{DB_ID}.sqlite")
    return folder


@pytest.fixture
def data(tmp_path, db_dir):
    """Twelve questions over the concert database, registered with its db_dir."""
    folder = make_dataset(tmp_path / "data", count=QUESTION_COUNT)
    registry = json.loads((folder / "dataset_info.json").read_text())
    registry["tiny_train"]["sqltune"]["db_dir"] = str(db_dir)
    (folder / "dataset_info.json").write_text(json.dumps(registry))
    return folder


def agent(data, output_dir, *extra: str) -> int:
    argv = ["data", "agent", "source_dataset=tiny_train", f"dataset_dir={data}", f"output_dir={output_dir}"]
    return cli([*argv, "dataset_name=tiny_agent", *extra])


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def agent_block(folder) -> dict:
    return json.loads((folder / "dataset_info.json").read_text())["tiny_agent"]["sqltune"]["agent"]


def result(db_dir, sql: str, ordered: bool):
    """The rows of `sql` straight from SQLite (a list when order counts, else a multiset; None when
    it fails)."""
    conn = sqlite3.connect(f"file:{db_dir / DB_ID / f'{DB_ID}.sqlite'}?mode=ro", uri=True)
    try:
        rows = conn.execute(sql).fetchall()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return rows if ordered else Counter(rows)


def calls(record: dict) -> list[tuple]:
    """(call, observation) of every tool call in a record."""
    turns = record["conversations"]
    return [
        (read_function_call(turn["value"])[0], turns[i + 1]["value"])
        for i, turn in enumerate(turns)
        if turn["from"] == "function_call"
    ]


def opening(source: dict) -> list[tuple[str, str]]:
    """The turns a trace of this source record starts with: its single-shot prompt, earlier turns answered."""
    prompt = Prompt(source["instruction"], source["input"], [tuple(t) for t in source["history"]])
    turns = []
    for user, answer in prompt_turns(prompt, None):
        turns += [("human", user)] + ([("gpt", answer)] if answer is not None else [])
    return turns


def source_of(record: dict, sources: list[dict]) -> dict:
    turns = [(t["from"], t["value"]) for t in record["conversations"]]
    return next(
        s
        for s in sources
        if turns[: len(opening(s)) + 1][-1][0] == "function_call" and turns[: len(opening(s))] == opening(s)
    )


def check_record(record: dict, source: dict) -> None:
    """The shared agent format: the single-shot prompt (with earlier turns answered), tool calls each
    followed by an observation, the gold SQL alone at the end."""
    assert set(record) == {"conversations", "tools", "db_id", "kind"} and record["db_id"] == DB_ID
    assert json.loads(record["tools"]) == TOOLS
    start = opening(source)
    turns = [(t["from"], t["value"]) for t in record["conversations"]]
    assert turns[: len(start)] == start
    assert turns[0][1] == source["instruction"] + (source["history"] or [[source["input"]]])[0][0]
    middle = turns[len(start) : -1]
    assert middle and [role for role, _ in middle] == ["function_call", "observation"] * (len(middle) // 2)
    assert turns[-1] == ("gpt", source["output"])


def test_traces_hold_real_observations_and_repairs_that_really_go_wrong(data, db_dir, tmp_path):
    out = tmp_path / "out"
    assert agent(data, out, "repair_ratio=1") == 0
    records = read_jsonl(out / "tiny_agent.jsonl")
    dataset = load_dataset(data, "tiny_train")
    schema = dataset.schemas[DB_ID]
    kinds = Counter(r["kind"] for r in records)
    assert kinds["direct"] == QUESTION_COUNT and kinds["repair"] >= QUESTION_COUNT // 2
    assert any(r["conversations"][1]["from"] == "gpt" for r in records)  # a question with an earlier turn
    with SqlTools(db_dir / DB_ID / f"{DB_ID}.sqlite", schema) as tools:
        for record in records:
            source = source_of(record, dataset.records)
            check_record(record, source)
            made = calls(record)
            for call, observation in made:  # every observation is what the tool says, asked again
                assert observation == tools.call(call)
            gold = source["output"]
            assert made[-1][0].name == "execute_sql" and made[-1][0].arguments == {"sql": gold}
            if record["kind"] == "direct":
                described = [c.arguments["table"] for c, _ in made[:-1]]
                assert made[:-1] and all(c.name == "describe_table" for c, _ in made[:-1])
                assert set(described) == {t for t in schema.table_names if t in gold.split()}
            else:  # one wrong query, then the gold one
                assert len(made) == 2 and made[0][0].name == "execute_sql"
                wrong = made[0][0].arguments["sql"]
                ordered = "order by" in gold.lower()
                assert result(db_dir, wrong, ordered) != result(db_dir, gold, ordered)
                assert made[0][1] != made[1][1]

    block = agent_block(out)
    assert block["questions"] == QUESTION_COUNT and block["records"] == len(records)
    assert block["kinds"] == dict(kinds) and block["skipped"] == {}
    assert sum(block["repair_from"].values()) == kinds["repair"] == sum(block["candidate_outcomes"].values())
    assert (
        kinds["repair"] + sum(block["no_repair"].values()) == QUESTION_COUNT
    )  # repair_ratio=1: every one tried
    assert block["repair_from"]["model"] == 0 and block["repair_from"]["dropped_join"] >= 1
    entry = json.loads((out / "dataset_info.json").read_text())["tiny_agent"]
    assert entry["formatting"] == "sharegpt" and entry["columns"] == {
        "messages": "conversations",
        "tools": "tools",
    }
    assert entry["sqltune"]["prompt"] == dataset.entry["sqltune"]["prompt"]

    # the training reader takes them as agent conversations
    from sqltune.train.data import read_samples

    samples = read_samples(out, "tiny_agent")
    assert len(samples) == len(records)
    first = samples[0]
    if hasattr(first, "messages"):
        assert first.tools == TOOLS and first.messages[0][0] == "user"
        assert [role for role, _ in first.messages][-1] == "assistant"

    # a rerun writes the same bytes; another seed draws other repairs
    again = tmp_path / "again"
    assert agent(data, again, "repair_ratio=1") == 0
    assert (again / "tiny_agent.jsonl").read_bytes() == (out / "tiny_agent.jsonl").read_bytes()
    assert agent_block(again) == block
    assert agent(data, tmp_path / "seed", "repair_ratio=1", "seed=7") == 0
    assert (tmp_path / "seed" / "tiny_agent.jsonl").read_bytes() != (out / "tiny_agent.jsonl").read_bytes()


def test_without_inspection_or_repairs_a_trace_is_one_query(data, tmp_path):
    assert agent(data, data, "inspect=false", "repair_ratio=0", "max_samples=5") == 0
    records = read_jsonl(data / "tiny_agent.jsonl")
    assert [r["kind"] for r in records] == ["direct"] * 5
    for record, source in zip(records, read_jsonl(data / "tiny_train.jsonl")):
        check_record(record, source)
        assert [c.name for c, _ in calls(record)] == ["execute_sql"]
    registry = json.loads((data / "dataset_info.json").read_text())
    assert set(registry) == {"tiny_train", "tiny_agent"}  # merged beside the source's entry
    assert agent_block(data)["kinds"] == {"direct": 5, "repair": 0}


def test_a_gold_query_that_fails_is_skipped_with_its_reason(data, tmp_path):
    for name in ("tiny_train.jsonl", "tiny_train.examples.jsonl"):
        rows = read_jsonl(data / name)
        rows[1]["output" if "output" in rows[1] else "sql"] = "SELECT nickname FROM singer"
        (data / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    assert agent(data, out, "max_samples=4") == 0
    block = agent_block(out)
    assert block["skipped"] == {"gold SQL fails": 1} and block["skipped_ids"] == {"gold SQL fails": ["ex1"]}
    assert block["kinds"]["direct"] == 3
    records = read_jsonl(out / "tiny_agent.jsonl")
    assert all("nickname" not in json.dumps(r) for r in records)


def write_predictions(path, data, answers: dict[int, str]) -> None:
    """A predictions file as `sqltune predict` writes it (index, id, db_id, question, sql, raw)."""
    examples = read_jsonl(data / "tiny_train.examples.jsonl")
    rows = [
        {
            "index": i,
            "id": examples[i]["id"],
            "db_id": DB_ID,
            "question": examples[i]["question"],
            "sql": sql,
            "raw": sql,
        }
        for i, sql in answers.items()
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_the_models_wrong_answers_become_repair_traces(data, tmp_path, capsys):
    assert QUESTIONS[0][1] == "SELECT count(*) FROM singer" and QUESTIONS[1][0].startswith("List the names")
    predictions = tmp_path / "predictions.jsonl"
    answers = {
        0: "SELECT count(*) FROM concert",  # runs, wrong count
        1: "SELECT name FROM singer WHERE country = 'France'",  # right
        2: "SELECT avg(agee) FROM singer",  # fails
        3: "",  # no SQL in the answer
    }
    write_predictions(predictions, data, answers)
    out = tmp_path / "out"
    assert agent(data, out, f"predictions={predictions}", "repair_ratio=0", "max_samples=5") == 0
    records = read_jsonl(out / "tiny_agent.jsonl")
    repairs = [r for r in records if r["kind"] == "repair"]
    assert [calls(r)[0][0].arguments["sql"] for r in repairs] == [answers[0], answers[2]]
    assert calls(repairs[0])[0][1].startswith("1 rows") and calls(repairs[1])[0][1].startswith("error:")
    block = agent_block(out)
    assert block["repair_from"]["model"] == 2 and block["candidate_outcomes"] == {
        "fails": 1,
        "wrong_result": 1,
    }
    assert block["model"] == {"wrong (used)": 2, "right": 1, "empty": 1, "not answered": 1}
    assert block["predictions"] == str(predictions.resolve())

    # a predictions file of other questions is refused in one line
    answers_elsewhere = tmp_path / "other.jsonl"
    answers_elsewhere.write_text(
        json.dumps({"index": 0, "db_id": DB_ID, "question": "?", "sql": "SELECT 1"}) + "\n"
    )
    assert agent(data, out, f"predictions={answers_elsewhere}") == 2
    assert "answers another question" in capsys.readouterr().err


def test_a_run_answers_the_questions_itself(data, tiny_run, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    assert agent(data, out, f"run_dir={tiny_run}", "max_samples=3", "max_new_tokens=8", "repair_ratio=0") == 0
    predicted = read_jsonl(out / "tiny_agent.predictions.jsonl")
    assert [row["index"] for row in predicted] == [0, 1, 2]
    block = agent_block(out)
    assert sum(block["model"].values()) == 3
    assert block["repair_from"]["model"] == block["model"].get("wrong (used)", 0) == block["kinds"]["repair"]
    repairs = [r for r in read_jsonl(out / "tiny_agent.jsonl") if r["kind"] == "repair"]
    assert {calls(r)[0][0].arguments["sql"] for r in repairs} <= {row["sql"] for row in predicted}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["repair_ratio=2"], "repair_ratio: must be in [0, 1]"),
        (["dataset_name=tiny_train"], "would replace the dataset it is built from"),
        (["predictions=/nonexistent/p.jsonl"], "predictions: file not found"),
        (["db_url=not a url"], "is not a URL"),
    ],
)
def test_mistakes_are_one_line_errors(data, capsys, extra, message):
    argv = ["data", "agent", "source_dataset=tiny_train", f"dataset_dir={data}", f"output_dir={data}"]
    assert cli([*argv, *extra]) == 2
    assert message in capsys.readouterr().err


def test_perturbations_are_the_wrong_queries_named():
    schema = concert_schema()
    join = QUESTIONS[6][1]
    found = perturbations(join, schema, "sqlite", random.Random(0))
    kinds = {kind for kind, _ in found}
    assert {"wrong_column", "dropped_join", "wrong_comparison"} <= kinds
    dropped = [sql for kind, sql in found if kind == "dropped_join"]
    assert dropped == ["SELECT T1.concert_name, T2.location FROM concert AS T1"]
    original = [(c.table, c.name) for c in sqlglot.parse_one(join).find_all(exp.Column)]
    aliases = {"T1": "concert", "T2": "stadium"}
    for kind, sql in found:
        if kind == "wrong_column":  # one column replaced by another column of the same table
            columns = [(c.table, c.name) for c in sqlglot.parse_one(sql).find_all(exp.Column)]
            changed = [(a, b) for a, b in zip(original, columns, strict=True) if a != b]
            assert len(changed) == 1
            (alias, old), (same_alias, new) = changed[0]
            assert alias == same_alias and new in TABLES[aliases[alias]] and new != old
    assert ("wrong_aggregate", "SELECT MIN(price) FROM ticket") in perturbations(
        "SELECT max(price) FROM ticket", schema, "sqlite", random.Random(0)
    )
    assert ("wrong_comparison", "SELECT COUNT(*) FROM sponsor WHERE amount < 500") in perturbations(
        QUESTIONS[8][1], schema, "sqlite", random.Random(0)
    )
    assert perturbations(join, schema, "sqlite", random.Random(3)) == perturbations(
        join, schema, "sqlite", random.Random(3)
    )
    assert perturbations("SELEC nonsense (", schema, "sqlite", random.Random(0)) == []


def test_traces_on_postgresql(data, db_dir, postgres_url, tmp_path):
    from sqltune.db.load import load_databases

    load_databases(db_dir, postgres_url + "{db_id}")
    url = postgres_url + "{db_id}"
    out = tmp_path / "out"
    assert agent(data, out, f"db_url={url}", "repair_ratio=1", "max_samples=6") == 0
    records = read_jsonl(out / "tiny_agent.jsonl")
    block = agent_block(out)
    assert block["db_url"] == url and block["kinds"]["direct"] == 6 and block["skipped"] == {}
    assert block["kinds"]["repair"] >= 1
    schema = load_dataset(data, "tiny_train").schemas[DB_ID]
    with SqlTools(postgres_url + DB_ID, schema) as tools:
        for record in records:
            for call, observation in calls(record):
                assert observation == tools.call(call)
