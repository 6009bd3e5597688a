import json
import sqlite3

from sqltune.cli import main
from sqltune.data.records import load_dataset
from sqltune.data.sources.wikisql import load_tables, render_sql

TABLES = [
    {
        "id": "1-10015132-11",
        "header": ["Player", "No.", "Nationality", "Position", "Years in Toronto", "School/Club Team"],
        "types": ["text", "real", "text", "text", "text", "text"],
        "rows": [
            ["Antonio Lang", 21, "United States", "Guard-Forward", "1999-2000", "Duke"],
            ["Voshon Lenard", 2, "United States", "Guard", "2002-03", "Minnesota"],
            ["Martin Lewis", 32, "United States", "Guard-Forward", "1996-97", "Butler CC (KS)"],
            ["Brad Lohaus", 33, "United States", "Forward-Center", "1996", "Iowa"],
            ["Art Long", 42, "United States", "Forward-Center", "2002-03", "Cincinnati"],
            ["John Long", 25, "United States", "Guard", "1996-97", "Detroit"],
        ],
        "page_title": "Toronto Raptors all-time roster",
    },
    {
        "id": "2-1000181-1",
        "header": ["State/territory", "Text/background colour", "Format", "Current slogan"],
        "types": ["text", "text", "text", "text"],
        "rows": [
            ["Australian Capital Territory", "blue/white", "Yaa·nna", "ACT · CELEBRATION OF A CENTURY 2013"],
            ["New South Wales", "black/yellow", "aa·nn·aa", "NEW SOUTH WALES"],
            ["South Australia", "black/white", "Snnn·aaa", "SOUTH AUSTRALIA"],
            ["Victoria", "blue/white", "aaa·aaa", "VICTORIA - THE PLACE TO BE"],
        ],
    },
]
QUESTIONS = [
    {"phase": 1, "table_id": "1-10015132-11", "question": "What position does the player who played for butler cc (ks) play?",
     "sql": {"sel": 3, "conds": [[5, 0, "Butler CC (KS)"]], "agg": 0}},
    {"phase": 1, "table_id": "1-10015132-11", "question": "How many players wore number 42?",
     "sql": {"sel": 0, "conds": [[1, 0, "42"]], "agg": 3}},
    {"phase": 1, "table_id": "1-10015132-11", "question": "Highest number of a Guard-Forward?",
     "sql": {"sel": 1, "conds": [[3, 0, "Guard-Forward"], [1, 2, 30]], "agg": 1}},
    {"phase": 1, "table_id": "2-1000181-1", "question": "What is the current slogan of South Australia?",
     "sql": {"sel": 3, "conds": [[0, 0, "South Australia"]], "agg": 0}},
    {"phase": 1, "table_id": "2-1000181-1", "question": "A question without its SQL"},
]  # fmt: skip


def write_wikisql(folder):
    folder.mkdir(exist_ok=True)
    (folder / "dev.tables.jsonl").write_text("".join(json.dumps(t) + "\n" for t in TABLES))
    (folder / "dev.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return folder


def test_render_sql_quotes_names_and_values(tmp_path):
    schemas = load_tables(write_wikisql(tmp_path / "w") / "dev.tables.jsonl")
    players, plates = schemas["1-10015132-11"], schemas["2-1000181-1"]
    assert render_sql(QUESTIONS[0]["sql"], players) == (
        "SELECT Position FROM table_1_10015132_11 WHERE \"School/Club Team\" = 'Butler CC (KS)'"
    )
    assert (
        render_sql(QUESTIONS[1]["sql"], players)
        == 'SELECT count(Player) FROM table_1_10015132_11 WHERE "No." = 42'
    )
    assert render_sql(QUESTIONS[2]["sql"], players) == (
        'SELECT max("No.") FROM table_1_10015132_11 WHERE Position = \'Guard-Forward\' AND "No." < 30'
    )
    assert render_sql({"sel": 0, "agg": 0, "conds": [[3, 0, "it's"]]}, plates) == (
        "SELECT \"State/territory\" FROM table_2_1000181_1 WHERE \"Current slogan\" = 'it''s'"
    )


def test_rendered_sql_runs_over_the_table(tmp_path):
    """Build each table in SQLite with its header as column names: the rendered SQL must answer."""
    schemas = load_tables(write_wikisql(tmp_path / "w") / "dev.tables.jsonl")
    conn = sqlite3.connect(":memory:")
    for table in TABLES:
        columns = ", ".join(
            f'"{name}" {"REAL" if t == "real" else "TEXT"}'
            for name, t in zip(table["header"], table["types"])
        )
        name = schemas[table["id"]].tables[0].name
        conn.execute(f"CREATE TABLE {name} ({columns})")
        conn.executemany(
            f"INSERT INTO {name} VALUES ({', '.join('?' * len(table['header']))})", table["rows"]
        )
    answers = [conn.execute(render_sql(q["sql"], schemas[q["table_id"]])).fetchall() for q in QUESTIONS[:4]]
    assert answers == [[("Guard-Forward",)], [(1,)], [(21.0,)], [("SOUTH AUSTRALIA",)]]


def test_wikisql_source_end_to_end(tmp_path, capsys):
    folder = write_wikisql(tmp_path / "w")
    out = tmp_path / "out"
    assert (
        main(
            [
                "data",
                "source=wikisql",
                f"data_dir={folder}",
                "split=dev",
                f"output_dir={out}",
                "sample_values=2",
            ]
        )
        == 0
    )
    dataset = load_dataset(out, "wikisql_dev")
    assert len(dataset.records) == 4
    assert (
        dataset.records[3]["output"]
        == 'SELECT "Current slogan" FROM table_2_1000181_1 WHERE "State/territory" = \'South Australia\''
    )
    assert (
        dataset.records[0]["instruction"].count(
            "Table table_1_10015132_11 has columns such as Player ('Antonio Lang', 'Voshon Lenard')"
        )
        == 1
    )
    assert "1 missing SQL" in capsys.readouterr().err


def test_wikisql_bad_inputs(tmp_path, capsys):
    folder = write_wikisql(tmp_path / "w")
    out = [f"output_dir={tmp_path / 'out'}"]
    with open(folder / "dev.jsonl", "a") as handle:
        handle.write(
            json.dumps({"table_id": "9-9", "question": "q", "sql": {"sel": 0, "agg": 0, "conds": []}}) + "\n"
        )
    assert main(["data", "source=wikisql", f"data_dir={folder}", "split=dev", *out]) == 2
    assert "dev.jsonl: line 6: unknown table_id '9-9'" in capsys.readouterr().err
    (folder / "dev.tables.jsonl").write_text(json.dumps(TABLES[0]) + "\n{broken\n")
    assert main(["data", "source=wikisql", f"data_dir={folder}", "split=dev", *out]) == 2
    assert "dev.tables.jsonl: malformed JSON at line 2" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
