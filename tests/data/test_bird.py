import json

from sqltune.cli import main
from sqltune.data.records import load_dataset


def test_bird_mini_dev_keeps_evidence_and_difficulty(bird_dir, tmp_path):
    args = ["data", "source=bird", f"data_dir={bird_dir / 'mini_dev'}", "split=dev", f"output_dir={tmp_path}"]
    assert main([*args, "dataset_name=bird_minidev"]) == 0
    dataset = load_dataset(tmp_path, "bird_minidev")
    assert len(dataset.records) == len(dataset.examples) == 500
    first = dataset.examples[0]
    assert (first.id, first.db_id, first.difficulty) == ("1471", "debit_card_specializing", "simple")
    assert first.evidence.startswith("ratio of customers who pay in EUR")
    record = dataset.records[0]
    assert record["input"] == f"###Input:\n{first.question}\nEvidence: {first.evidence}\n\n###Response:"
    assert record["output"].startswith("SELECT CAST(SUM(IIF(Currency = 'EUR', 1, 0)) AS FLOAT)")  # key "SQL"
    assert "debit_card_specializing contains tables such as customers, gasstations" in record["instruction"]
    assert dataset.entry["sqltune"]["tables"].endswith("mini_dev/dev_tables.json")


def test_bird_dev_finds_the_tables_file_in_a_subfolder(bird_dir, tmp_path):
    assert main(["data", "source=bird", f"data_dir={bird_dir}", "split=dev", f"output_dir={tmp_path}"]) == 0
    dataset = load_dataset(tmp_path, "bird_dev")
    assert len(dataset.records) == 1534
    assert dataset.examples[0].sql.startswith("SELECT `Free Meal Count (K-12)`")  # key "sql" in this copy
    assert {e.difficulty for e in dataset.examples} == {"simple", "moderate", "challenging"}
    assert dataset.entry["sqltune"]["tables"].endswith("mini_dev/dev_tables.json")


def test_bird_bad_inputs_name_the_file(bird_dir, tmp_path, capsys):
    folder = tmp_path / "bird"
    folder.mkdir()
    (folder / "dev.json").write_text(json.dumps([{"db_id": "financial", "question": "q", "SQL": "SELECT 1"}]))
    out = [f"output_dir={tmp_path / 'out'}"]
    assert main(["data", "source=bird", f"data_dir={folder}", "split=dev", *out]) == 2
    assert "tables file not found: no dev_tables.json" in capsys.readouterr().err
    tables = f"tables={bird_dir / 'mini_dev' / 'dev_tables.json'}"
    assert main(["data", "source=bird", f"data_dir={folder}", "split=dev", tables, *out]) == 0
    (folder / "dev.json").write_text('[\n{"db_id": "financial",\n"question": "q" "SQL": 1}\n]')
    assert (
        main(["data", "source=bird", f"data_dir={folder}", "split=dev", tables, *out, "dataset_name=b2"]) == 2
    )
    assert "dev.json: malformed JSON at line 3" in capsys.readouterr().err
    assert not (tmp_path / "out" / "b2.jsonl").exists()
