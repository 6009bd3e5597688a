import json
import shutil

from sqltune.cli import main
from sqltune.data.prompts import DBGPT_INPUT
from sqltune.data.records import load_dataset


def test_sparc_dev_history_holds_the_earlier_turns(sparc_dir, tmp_path):
    sparc = sparc_dir
    assert main(["data", "source=sparc", f"data_dir={sparc}", "split=dev", f"output_dir={tmp_path}"]) == 0
    records = load_dataset(tmp_path, "sparc_dev").records
    assert len(records) == 1203
    turns = json.loads((sparc / "dev.json").read_text())[0]["interaction"]  # 3 turns over flight_2
    rendered = [[DBGPT_INPUT.format(t["utterance"]), t["query"]] for t in turns]
    assert [r["history"] for r in records[:3]] == [[], rendered[:1], rendered[:2]]
    assert records[2]["input"] == rendered[2][0] and records[2]["output"] == turns[2]["query"]
    assert records[3]["history"] == []  # a new conversation starts afresh
    assert sum(len(r["history"]) for r in records) == 1230  # n(n-1)/2 summed over the conversations


def test_cosql_dev_converts_every_turn(cosql_dir, tmp_path):
    cosql = cosql_dir
    assert main(["data", "source=cosql", f"data_dir={cosql}", "split=dev", f"output_dir={tmp_path}"]) == 0
    dataset = load_dataset(tmp_path, "cosql_dev")
    assert len(dataset.records) == 1007
    assert sum(len(r["history"]) for r in dataset.records) == 1436
    assert dataset.examples[0].id == "dev_0_0" and dataset.examples[0].source == "cosql"


def chase_folder(demo_dir, tmp_path):
    """CHASE's layout: Chase/chase_dev.json, chase_tables.json, flat database/<db_id>.sqlite."""
    folder = tmp_path / "chase"
    (folder / "Chase").mkdir(parents=True)
    (folder / "database").mkdir()
    shutil.copy(demo_dir / "tables.json", folder / "Chase" / "chase_tables.json")
    shutil.copy(demo_dir / "music" / "music.sqlite", folder / "database" / "music.sqlite")
    conversations = [
        {
            "database_id": "music",
            "interaction": [
                {"utterance": "有多少位艺术家？", "query": "SELECT count(*) FROM artists", "sql": {}},
                {"utterance": "他们的名字是什么？", "query": "SELECT name FROM artists", "sql": {}},
                {"utterance": "按成立年份排序", "query": "", "sql": {}},
                {
                    "utterance": "哪位成立最早？",
                    "query": "SELECT name FROM artists ORDER BY formed_year LIMIT 1",
                },
            ],
            "final": {
                "utterance": "哪位成立最早？",
                "query": "SELECT name FROM artists ORDER BY formed_year LIMIT 1",
            },
        }
    ]
    (folder / "Chase" / "chase_dev.json").write_text(json.dumps(conversations, ensure_ascii=False))
    return folder


def test_chase_layout_and_skipped_turns(demo_dir, tmp_path, capsys):
    folder = chase_folder(demo_dir, tmp_path)
    args = ["data", "source=chase", f"data_dir={folder}", "split=dev", f"output_dir={tmp_path / 'out'}"]
    assert main([*args, "sample_values=2"]) == 0
    dataset = load_dataset(tmp_path / "out", "chase_dev")
    assert [e.question for e in dataset.examples] == [
        "有多少位艺术家？",
        "他们的名字是什么？",
        "哪位成立最早？",
    ]
    assert dataset.examples[2].history == [
        ("有多少位艺术家？", "SELECT count(*) FROM artists"),
        ("他们的名字是什么？", "SELECT name FROM artists"),
    ]
    assert (
        "name ('The Velvet Owls', 'Neon Harbor')" in dataset.records[0]["instruction"]
    )  # flat db file found
    assert "1 missing SQL" in capsys.readouterr().err
    assert main([*args, "strict=true", "dataset_name=strict"]) == 2
    assert "chase_dev.json: conversation 0, turn 2: missing SQL (strict=true)" in capsys.readouterr().err


def test_multiturn_unknown_db_id(demo_dir, tmp_path, capsys):
    folder = chase_folder(demo_dir, tmp_path)
    path = folder / "Chase" / "chase_dev.json"
    path.write_text(path.read_text().replace('"database_id": "music"', '"database_id": "nope"'))
    assert (
        main(["data", "source=chase", f"data_dir={folder}", "split=dev", f"output_dir={tmp_path / 'o'}"]) == 2
    )
    assert "conversation 0: unknown db_id 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
