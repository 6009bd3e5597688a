import json

import pytest

from sqltune.cli import main
from sqltune.data.demo_domains import DOMAINS
from sqltune.data.records import load_dataset
from sqltune.data.synth import TEMPLATES, synthesize
from sqltune.data.synth_profile import classify, plural, singular
from sqltune.db import execute

KINDS = {
    "count_all", "list_columns", "distinct", "count_distinct", "filter", "count_where", "two_conditions",
    "aggregate", "group_count", "group_aggregate", "group_having", "most_common", "superlative", "order_by",
    "nested_average", "join", "join_filter", "join_group", "join_most", "join_having", "nested_in", "nested_not_in",
}  # fmt: skip


def assert_all_answer(pairs, db_file):
    for pair in pairs:
        result = execute(db_file(pair["db_id"]), pair["sql"], timeout=5, max_rows=1000)
        assert result.error in (None, "too many rows"), (pair, result.error)
        assert any(v not in (None, 0, "") for row in result.rows for v in row), pair


def test_english_inflection():
    assert [plural(w) for w in ("book", "country", "order item", "address", "person", "series", "date of birth")] == [
        "books", "countries", "order items", "addresses", "people", "series", "dates of birth",
    ]  # fmt: skip
    assert [singular(w) for w in ("books", "countries", "order items", "addresses", "people", "status")] == [
        "book", "country", "order item", "address", "person", "status",
    ]  # fmt: skip
    assert plural("official ratings (millions)") == "official ratings (millions)"


def test_classify_reads_values_not_declared_types():
    assert classify("author_id", set(), [1, 2, 3]) == "id"
    assert classify("code", {"code"}, ["a", "b"]) == "id"
    assert classify("price", set(), [9.5, 12.0, 3.25]) == "number"
    assert classify("genre", set(), ["Rock", "Pop", "Rock", "Jazz", "Pop", "Rock"]) == "category"
    assert classify("name", set(), [f"Person {i}" for i in range(30)]) == "text"
    assert classify("hired", set(), ["2020-01-03", "2021-05-06", "2019-02-02"]) == "date"
    assert classify("notes", set(), ["x" * 60, "y" * 70]) == "long"
    assert classify("flag", set(), [0, 1, 1, 0]) == "long"  # a two-valued number asks nothing useful


def test_synth_on_demo_databases_covers_every_template(demo_dir):
    pairs = []
    for domain in DOMAINS:
        pairs += synthesize(demo_dir / domain.name / f"{domain.name}.sqlite", 120, seed=1, db_id=domain.name)
    assert len(pairs) == 120 * len(DOMAINS)
    assert {p["kind"] for p in pairs} == KINDS
    assert len({(p["db_id"], p["sql"]) for p in pairs}) == len(pairs)
    assert len({(p["db_id"], p["question"].lower()) for p in pairs}) == len(pairs)
    assert_all_answer(pairs, lambda db: demo_dir / db / f"{db}.sqlite")
    joins = [p for p in pairs if p["kind"].startswith("join")]
    assert all(" AS T1 JOIN " in p["sql"] and " ON T1." in p["sql"] for p in joins)
    assert len(TEMPLATES) == 17


def test_synth_is_deterministic_for_a_seed(demo_dir):
    db = demo_dir / "retail" / "retail.sqlite"
    first, again, other = synthesize(db, 40, seed=7), synthesize(db, 40, seed=7), synthesize(db, 40, seed=8)
    assert first == again
    assert first != other


def test_synth_on_spider_databases_every_sql_executes(spider_dir, tmp_path):
    """Spider's dev databases: real schemas with odd names, text-typed numbers and composite keys."""
    dev_dbs = sorted({e["db_id"] for e in json.loads((spider_dir / "dev.json").read_text())})
    folder = spider_dir / "database"
    present = [db for db in dev_dbs if (folder / db / f"{db}.sqlite").is_file()]
    assert len(present) >= 19
    pairs = []
    for db in present:
        found = synthesize(folder / db / f"{db}.sqlite", 30, seed=3, db_id=db)
        assert len(found) >= 20, db
        pairs += found
    assert_all_answer(pairs, lambda db: folder / db / f"{db}.sqlite")
    assert len({p["kind"] for p in pairs}) == len(KINDS)


def test_synth_command_feeds_the_jsonl_source(demo_dir, tmp_path, capsys):
    out = tmp_path / "pairs.jsonl"
    assert main(["data", "synth", f"db={demo_dir}", f"output={out}", "per_db=15", "seed=5"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 15 * len(DOMAINS)
    assert set(rows[0]) == {"db_id", "question", "sql", "kind", "difficulty"}
    assert "pairs written" in capsys.readouterr().err
    data = tmp_path / "data"
    assert main(["data", "source=jsonl", f"questions={out}", f"db_dir={demo_dir}", f"output_dir={data}"]) == 0
    dataset = load_dataset(data, "jsonl_train")
    assert len(dataset.records) == len(rows)
    assert {e.difficulty for e in dataset.examples} <= {"easy", "medium", "hard", "extra"}
    one = tmp_path / "one.jsonl"
    db = demo_dir / "music" / "music.sqlite"
    assert main(["data", "synth", f"db={db}", f"output={one}", "per_db=5"]) == 0
    assert {json.loads(line)["db_id"] for line in one.read_text().splitlines()} == {"music"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["per_db=3"], "synth needs db="),
        (["db=/no/such/file.sqlite"], "database not found: /no/such/file.sqlite"),
        (["db={empty}"], "no SQLite databases"),
        (["db={demo}", "per_db=0"], "per_db: must be >= 1"),
    ],
)
def test_synth_bad_inputs(args, message, demo_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    args = [a.format(empty=tmp_path / "empty", demo=demo_dir) for a in args]
    assert main(["data", "synth", f"output={tmp_path / 'p.jsonl'}", *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "p.jsonl").exists()


def test_synth_on_a_server_every_sql_runs_there(server_url, demo_dir, tmp_path, capsys):
    from sqltune.db.load import load_database

    url = server_url + "bookstore"
    load_database(demo_dir / "bookstore" / "bookstore.sqlite", url)
    pairs = synthesize(url, 40, seed=3)
    assert len(pairs) == 40 and {p["db_id"] for p in pairs} == {"bookstore"}
    for pair in pairs:
        result = execute(url, pair["sql"], timeout=10)
        assert result.ok and result.rows, (pair["sql"], result.error)
    output = tmp_path / "server_pairs.jsonl"
    assert main(["data", "synth", f"db={url}", f"output={output}", "per_db=10"]) == 0
    assert len(output.read_text().splitlines()) == 10
