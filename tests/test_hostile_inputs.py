"""Every input file of every command, spoiled the ways files get spoiled, through the real CLI.

Each case names a command line and the one input file it spoils: bytes that are not UTF-8, a NUL
byte, a byte-order mark, CRLF line ends, a cut-off last line, an empty file, a folder in its place.
The outcome must be one of: the same result as the intact file, one line on stderr with exit status
2 (naming the file; for a bad byte also its line and offset), or, for a prediction line, the
documented per-line failure (the example scored wrong, its error saying why). No input file may
change, whatever happens.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sqltune.cli import main
from tests.evaluate.conftest import TABLES, build_db
from tests.tiny import tiny_model_dir  # noqa: F401  (a fixture)

VARIANTS = ("bad_utf8", "nul", "bom", "crlf", "truncated", "empty", "folder")
PAIRS = [
    ("What are the singers' names?", "SELECT name FROM singer"),
    ("How many concerts are there?", "SELECT count(*) FROM concert"),
    ("Which singers are older than 40?", "SELECT name FROM singer WHERE age > 40"),
]
PREDICTIONS = [
    "SELECT name FROM singer",
    "SELECT count(*) FROM singer WHERE age > 40",
    "SELECT name FROM singer WHERE age > 40",
]


# --- the intact inputs --------------------------------------------------------------------------------
def json_list(rows: list) -> str:
    """A JSON list with one element per line, so that line 2 holds the first element."""
    return "[\n" + ",\n".join(json.dumps(row) for row in rows) + "\n]\n"


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def build_workspace(root: Path) -> None:
    """Every input file the cases read, under `root`; outputs go to `root/out`."""
    db = build_db(root / "database" / "music" / "music.sqlite")
    files = {
        "tables.json": json_list(TABLES),
        "gold.sql": "".join(f"{sql}\tmusic\n" for _, sql in PAIRS),
        "gold.json": json_list([{"db_id": "music", "question": q, "query": sql} for q, sql in PAIRS]),
        "pred.sql": "".join(f"{sql}\n" for sql in PREDICTIONS),
        "pred.jsonl": jsonl(
            [{"index": i, "db_id": "music", "sql": sql} for i, sql in enumerate(PREDICTIONS)]
        ),
        "bird_gold.json": json_list(
            [{"db_id": "music", "question": q, "SQL": sql, "difficulty": "simple"} for q, sql in PAIRS]
        ),
        "bird_pred.json": "{\n"
        + ",\n".join(
            f'"{i}": {json.dumps(sql + chr(9) + "----- bird -----" + chr(9) + "music")}'
            for i, sql in enumerate(PREDICTIONS)
        )
        + "\n}\n",
        "eval.yaml": "workers: 1\ntimeout: 5\n",
        "questions.jsonl": jsonl([{"db_id": "music", "question": q, "sql": sql} for q, sql in PAIRS]),
        "questions.json": json_list([{"db_id": "music", "question": q, "sql": sql} for q, sql in PAIRS]),
        "questions.csv": "question,sql,db_id\n" + "".join(f'"{q}",{sql},music\n' for q, sql in PAIRS),
        "spider/train_spider.json": json_list(
            [{"db_id": "music", "question": q, "query": s} for q, s in PAIRS]
        ),
        "spider/tables.json": json_list(TABLES),
        "bird/dev.json": json_list(
            [
                {"db_id": "music", "question": q, "SQL": s, "evidence": "", "difficulty": "simple"}
                for q, s in PAIRS
            ]
        ),
        "bird/dev_tables.json": json_list(TABLES),
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    for folder in ("spider/database/music", "bird/dev_databases/music"):
        (root / folder).mkdir(parents=True)
        shutil.copy(db, root / folder / "music.sqlite")
    shutil.copy(db, root / "music.sqlite")
    argv = ["data", "source=jsonl", f"questions={root / 'questions.jsonl'}", f"tables={root / 'tables.json'}"]
    assert (
        main([*argv, f"db_dir={root / 'database'}", f"output_dir={root / 'data'}", "dataset_name=music_dev"])
        == 0
    )
    rows = [
        {"index": i, "id": f"train_{i}", "db_id": "music", "question": q, "sql": s, "raw": s}
        for i, (q, s) in enumerate(PAIRS)
    ]
    (root / "answers.jsonl").write_text(jsonl(rows), encoding="utf-8")


# --- the cases ----------------------------------------------------------------------------------------
@dataclass
class Case:
    """A command line (`{ws}` is the workspace), the file it spoils, and where its result lies."""

    name: str
    target: str
    argv: str
    result: str  # the file whose content is the result ("report.json": an eval report)
    expect: dict[str, str] = field(default_factory=dict)  # variant -> outcome, where not the default


EVAL = "eval --pred {ws}/pred.sql --gold {ws}/gold.sql --db-dir {ws}/database --tables {ws}/tables.json"
EVAL_OUT = " --workers 1 --output {ws}/out/report.json"
BIRD_EVAL = "eval --format bird --etype exec --pred {ws}/bird_pred.json --gold {ws}/bird_gold.json --db-dir {ws}/database"
DATA = "data output_dir={ws}/out dataset_name=mine"
JSONL = DATA + " source=jsonl tables={ws}/tables.json db_dir={ws}/database questions={ws}/"
PREDICT = "predict dataset_dir={ws}/data dataset=music_dev output={ws}/answers.jsonl max_new_tokens=4 model_name_or_path="
PER_LINE = {"bad_utf8": "per_line", "nul": "per_line"}
# A database is binary: bytes changed inside its pages may still read (SQLite checks no sums), so
# those variants must end in a one-line error or a run, never a traceback.
DATABASE = {"bad_utf8": "error_or_ran", "nul": "error_or_ran", "bom": "error", "crlf": "error_or_ran"}

CASES = [
    Case("eval pred text", "pred.sql", EVAL + EVAL_OUT, "out/report.json", {**PER_LINE, "truncated": "ran"}),
    Case(
        "eval pred jsonl",
        "pred.jsonl",
        EVAL.replace("pred.sql", "pred.jsonl") + EVAL_OUT,
        "out/report.json",
        PER_LINE,
    ),
    Case("eval gold text", "gold.sql", EVAL + EVAL_OUT, "out/report.json"),
    Case("eval gold json", "gold.json", EVAL.replace("gold.sql", "gold.json") + EVAL_OUT, "out/report.json"),
    Case("eval tables", "tables.json", EVAL + EVAL_OUT, "out/report.json"),
    Case("eval bird pred", "bird_pred.json", BIRD_EVAL + EVAL_OUT, "out/report.json"),
    Case("eval bird gold", "bird_gold.json", BIRD_EVAL + EVAL_OUT, "out/report.json"),
    Case(
        "eval config",
        "eval.yaml",
        "eval {ws}/eval.yaml " + EVAL[5:] + EVAL_OUT,
        "out/report.json",
        {"empty": "same"},
    ),
    Case("data jsonl questions", "questions.jsonl", JSONL + "questions.jsonl", "out/mine.jsonl"),
    Case("data jsonl json questions", "questions.json", JSONL + "questions.json", "out/mine.jsonl"),
    Case(
        "data jsonl csv questions",
        "questions.csv",
        JSONL + "questions.csv",
        "out/mine.jsonl",
        {"truncated": "ran"},
    ),
    Case("data jsonl tables", "tables.json", JSONL + "questions.jsonl", "out/mine.jsonl"),
    Case(
        "data sqlite csv pairs",
        "questions.csv",
        DATA + " source=sqlite db={ws}/music.sqlite questions={ws}/questions.csv",
        "out/mine.jsonl",
        {"truncated": "ran"},
    ),
    Case(
        "data sqlite database",
        "music.sqlite",
        DATA + " source=sqlite db={ws}/music.sqlite questions={ws}/questions.jsonl",
        "out/mine.jsonl",
        DATABASE,
    ),
    Case(
        "data spider questions",
        "spider/train_spider.json",
        DATA + " source=spider data_dir={ws}/spider",
        "out/mine.jsonl",
    ),
    Case(
        "data spider tables",
        "spider/tables.json",
        DATA + " source=spider data_dir={ws}/spider",
        "out/mine.jsonl",
    ),
    Case(
        "data bird questions",
        "bird/dev.json",
        DATA + " source=bird split=dev data_dir={ws}/bird",
        "out/mine.jsonl",
    ),
    Case(
        "data bird tables",
        "bird/dev_tables.json",
        DATA + " source=bird split=dev data_dir={ws}/bird",
        "out/mine.jsonl",
    ),
    Case(
        "synth database",
        "music.sqlite",
        "data synth db={ws}/music.sqlite output={ws}/out/pairs.jsonl per_db=5",
        "out/pairs.jsonl",
        DATABASE,
    ),
    Case("predict registry", "data/dataset_info.json", PREDICT, "answers.jsonl"),
    Case("predict records", "data/music_dev.jsonl", PREDICT, "answers.jsonl"),
    Case("predict examples", "data/music_dev.examples.jsonl", PREDICT, "answers.jsonl"),
    Case("predict schemas", "data/music_dev.schemas.json", PREDICT, "answers.jsonl"),
    Case("predict resumed answers", "answers.jsonl", PREDICT, "answers.jsonl", {"empty": "answered"}),
]


# --- spoiling a file ----------------------------------------------------------------------------------
def _line_2(data: bytes) -> tuple[int, int] | None:
    """Where line 2 starts and ends, when the file has one."""
    start = data.find(b"\n") + 1
    end = data.find(b"\n", start)
    return (start, end) if start and end >= 0 else None


def _insert_in_line_2(data: bytes, byte: bytes) -> bytes:
    """`byte` inside line 2: in its SQL where it has one (inside a JSON string), else mid-line (a
    file without a line 2, such as a one-line JSON file or a database: mid-file)."""
    line = _line_2(data) or (0, len(data))
    sql = data.find(b"SELECT", *line)
    at = sql + 3 if sql >= 0 else sum(line) // 2
    return data[:at] + byte + data[at:]


def _cut_last_line(data: bytes) -> bytes:
    body = data.rstrip(b"\r\n")
    last = body.rfind(b"\n") + 1
    return body[: last + (len(body) - last) // 2]


SPOILERS = {
    "bad_utf8": lambda data: _insert_in_line_2(data, b"\xff"),
    "nul": lambda data: _insert_in_line_2(data, b"\x00"),
    "bom": lambda data: codecs.BOM_UTF8 + data,
    "crlf": lambda data: data.replace(b"\n", b"\r\n"),
    "truncated": _cut_last_line,
    "empty": lambda data: b"",
}


def spoil(path: Path, variant: str) -> None:
    if variant == "folder":
        path.unlink()
        path.mkdir()
        (path / "inside.txt").write_text("a file in a folder given as an input file\n")
    else:
        path.write_bytes(SPOILERS[variant](path.read_bytes()))


def digests(root: Path) -> dict[str, str]:
    """Every input file's hash (outputs, under `out/`, are left out)."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "out" not in path.relative_to(root).parts
    }


# --- running a case -----------------------------------------------------------------------------------
def run(case: Case, ws: Path, model: str, capsys) -> tuple[int, str, object]:
    """Exit status, stderr and the result of the case's command line."""
    argv = case.argv.format(ws=ws).split()
    if argv[0] == "predict":
        argv[-1] += model
    capsys.readouterr()
    status = main(argv)
    err = capsys.readouterr().err
    return status, err, read_result(ws / case.result) if status == 0 else None


def read_result(path: Path) -> object:
    if path.name != "report.json":
        return path.read_bytes()
    report = json.loads(path.read_text())
    return report["summary"], [(row["exec"], row.get("exact"), row["error"]) for row in report["examples"]]


def expected(case: Case, variant: str) -> str:
    return case.expect.get(variant, "same" if variant in ("bom", "crlf") else "error")


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The intact workspace, built once and copied for each test."""
    root = tmp_path_factory.mktemp("hostile") / "ws"
    build_workspace(root)
    return root


@pytest.fixture(scope="module")
def baselines() -> dict[str, object]:
    """Case name -> its result on intact files, filled by the first test of each case."""
    return {}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_spoiled_input(case, variant, tmp_path, capsys, request, template, baselines):
    ws = tmp_path / "ws"
    shutil.copytree(template, ws)
    outcome = expected(case, variant)
    model = str(request.getfixturevalue("tiny_model_dir")) if outcome == "answered" else str(ws / "no-model")
    if case.name not in baselines:
        status, err, result = run(case, ws, model, capsys)
        assert status == 0, err
        baselines[case.name] = result
        shutil.rmtree(ws / "out", ignore_errors=True)
    target = ws / case.target
    bad_line = 2 if target.is_file() and _line_2(target.read_bytes()) else 1
    spoil(target, variant)
    before = digests(ws)
    status, err, result = run(case, ws, model, capsys)
    after = digests(ws)
    if outcome == "answered":  # nothing was answered yet: predict answers every question
        assert status == 0, err
        assert len(target.read_text().splitlines()) == len(PAIRS)
        before.pop(case.target), after.pop(case.target)
    assert after == before, "an input file changed"
    if outcome == "error_or_ran":
        outcome = "error" if status == 2 else "ran"
    if outcome == "error":
        lines = err.strip().splitlines()
        assert status == 2 and len(lines) == 1, err
        assert lines[0].startswith(f"sqltune {case.argv.split()[0]}: error: ") and target.name in lines[0], (
            err
        )
        if variant in ("bad_utf8", "nul") and not case.target.endswith(".sqlite"):
            assert f": line {bad_line}: " in lines[0] and " at byte " in lines[0], err
    elif outcome == "same":
        assert status == 0, err
        if case.result != case.target:  # else the result is the input file, unchanged as checked above
            assert result == baselines[case.name]
    elif outcome == "ran":
        assert status == 0, err
    elif outcome == "per_line":
        assert status == 0, err
        summary, rows = result
        assert rows[1][:2] == (0, 0) and rows[1][2].startswith("unreadable prediction: line 2: "), rows
        assert rows[0] == baselines[case.name][1][0] and rows[2] == baselines[case.name][1][2]


# --- mistaken options ---------------------------------------------------------------------------------
MISTAKES = [
    (EVAL + " --output {ws}/gold.sql", "output {ws}/gold.sql is also an input"),
    (EVAL + " --output {ws}/pred.sql", "output {ws}/pred.sql is also an input"),
    (EVAL + " --output {ws}/database", "output {ws}/database is a folder"),
    (EVAL + " --output {ws}/pred.sql/report.json", "{ws}/pred.sql is a file, not a folder"),
    (EVAL + " --timeout nan", "timeout: expected a finite number, got 'nan'"),
    (EVAL + " --timeout inf", "timeout: expected a finite number, got 'inf'"),
    (EVAL + " --timeout -1", "timeout must be > 0"),
    (EVAL.replace("pred.sql", "index.jsonl"), "index.jsonl: line 1: index '0' is not an integer"),
    (JSONL + "questions.jsonl limit=0", "limit: must be >= 1"),
    (JSONL + "questions.jsonl limit=-1", "limit: must be >= 1"),
    (JSONL + "questions.jsonl dataset_name=../escape", "dataset_name: '../escape' is not a plain name"),
    (JSONL + "questions.jsonl dataset_name=a/b", "dataset_name: 'a/b' is not a plain name"),
    (
        JSONL + "questions.jsonl output_dir={ws}/tables.json",
        "output_dir {ws}/tables.json is a file, not a folder",
    ),
    (
        JSONL + "questions.jsonl output_dir={ws} dataset_name=questions",
        "{ws}/questions.jsonl is also an input",
    ),
    (DATA + " source=spider data_dir={ws}/gold.sql", "data_dir {ws}/gold.sql: is a file, not a folder"),
    ("data synth db={ws}/music.sqlite output={ws}/out", "output {ws}/out is a folder"),
    ("data synth db={ws}/music.sqlite output={ws}/music.sqlite", "output {ws}/music.sqlite is also an input"),
    (
        PREDICT.replace("{ws}/answers.jsonl", "{ws}/data/music_dev.jsonl") + "x",
        "music_dev.jsonl is also an input",
    ),
    (PREDICT.replace("answers.jsonl", "answers.sql") + "x format=spider", "name this one .jsonl"),
    (
        PREDICT.replace("answers.jsonl", "questions.jsonl") + "x",
        "questions.jsonl: line 1 has no integer 'index'",
    ),
]


@pytest.mark.parametrize(("argv", "message"), MISTAKES, ids=[m[1] for m in MISTAKES])
def test_mistaken_option(argv, message, template, tmp_path, capsys):
    ws = tmp_path / "ws"
    shutil.copytree(template, ws)
    (ws / "out").mkdir()
    rows = [{"index": str(i), "sql": sql} for i, sql in enumerate(PREDICTIONS)]
    (ws / "index.jsonl").write_text(jsonl(rows))
    before = digests(ws)
    assert main(argv.format(ws=ws).split()) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message.format(ws=ws) in lines[0], lines
    assert digests(ws) == before and not (tmp_path / "escape.jsonl").exists()


def test_prediction_file_format_follows_its_content(template, tmp_path, capsys):
    """JSON lines named .txt, or .json, are read as JSON lines (each line an SQL error otherwise)."""
    ws = tmp_path / "ws"
    shutil.copytree(template, ws)
    for name in ("pred.txt", "pred.json"):
        shutil.copy(ws / "pred.jsonl", ws / name)
        argv = EVAL.replace("pred.sql", name) + EVAL_OUT
        assert main(argv.format(ws=ws).split()) == 0
        report = json.loads((ws / "out" / "report.json").read_text())
        assert report["settings"]["pred_format"] == "jsonl"
        assert [row["exec"] for row in report["examples"]] == [1, 0, 1]


def test_missing_database_folder_is_said(template, tmp_path, capsys):
    ws = tmp_path / "ws"
    shutil.copytree(template, ws)
    shutil.rmtree(ws / "bird" / "dev_databases")
    with pytest.warns(UserWarning, match=r"database folder .*dev_databases does not exist"):
        assert main((DATA + " source=bird split=dev data_dir={ws}/bird").format(ws=ws).split()) == 0
