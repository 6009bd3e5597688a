import json
import shutil

import pytest

from sqltune.cli import main
from sqltune.data.records import load_dataset

FIRST_TRAIN_RECORD = {
    "db_id": "department_management",
    "instruction": 'I want you to act as a SQL terminal in front of an example database, you need only to return the sql command to me.Below is an instruction that describes a task, Write a response that appropriately completes the request.\n"\n##Instruction:\ndepartment_management contains tables such as department, head, management. Table department has columns such as Department_ID, Name, Creation, Ranking, Budget_in_Billions, Num_Employees. Department_ID is the primary key.\nTable head has columns such as head_ID, name, born_state, age. head_ID is the primary key.\nTable management has columns such as department_ID, head_ID, temporary_acting. department_ID is the primary key.\nThe head_ID of management is the foreign key of head_ID of head.\nThe department_ID of management is the foreign key of Department_ID of department.\n\n',
    "input": "###Input:\nHow many heads of the departments are older than 56 ?\n\n###Response:",
    "output": "SELECT count(*) FROM head WHERE age  >  56",
    "history": [],
}


def test_spider_train_and_dev_counts_and_first_record(spider_dir, tmp_path):
    assert (
        main(["data", "source=spider", f"data_dir={spider_dir}", "split=train", f"output_dir={tmp_path}"])
        == 0
    )
    assert (
        main(["data", "source=spider", f"data_dir={spider_dir}", "split=dev", f"output_dir={tmp_path}"]) == 0
    )
    lines = (tmp_path / "spider_train.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 8659
    assert lines[0] == json.dumps(FIRST_TRAIN_RECORD, ensure_ascii=False)  # byte for byte, key order included
    assert len((tmp_path / "spider_dev.jsonl").read_text(encoding="utf-8").splitlines()) == 1034
    registry = json.loads((tmp_path / "dataset_info.json").read_text())
    assert set(registry) == {"spider_train", "spider_dev"}
    assert registry["spider_train"]["file_name"] == "spider_train.jsonl"
    assert registry["spider_train"]["columns"]["prompt"] == "instruction"
    dev = load_dataset(tmp_path, "spider_dev")
    assert len(dev.examples) == len(dev.records) == 1034
    assert dev.examples[0].question == "How many singers do we have?"
    assert "concert_singer" in dev.schemas


def test_ddl_with_values_skips_missing_databases(spider_dir, tmp_path, capsys):
    assert (
        main(
            [
                "data",
                f"data_dir={spider_dir}",
                "split=dev",
                f"output_dir={tmp_path}",
                "prompt_format=ddl",
                "sample_values=2",
            ]
        )
        == 0
    )
    dev = load_dataset(tmp_path, "spider_dev")
    assert len(dev.records) == 972  # wta_1 has no database file here
    assert "wta_1" not in dev.schemas
    record = dev.records[0]
    assert "CREATE TABLE singer (" in record["instruction"]
    assert "FOREIGN KEY (Stadium_ID) REFERENCES stadium(Stadium_ID)" in record["instruction"]
    assert "-- e.g." in record["instruction"]
    assert "62 database file missing" in capsys.readouterr().err


def test_strict_fails_on_missing_database(spider_dir, tmp_path, capsys):
    code = main(
        [
            "data",
            f"data_dir={spider_dir}",
            "split=dev",
            f"output_dir={tmp_path}",
            "sample_values=2",
            "strict=true",
        ]
    )
    assert code == 2
    assert "wta_1" in capsys.readouterr().err
    assert not (tmp_path / "spider_dev.jsonl").exists()


@pytest.fixture()
def tiny_spider(spider_dir, tmp_path):
    """A Spider-shaped folder with two dev records, for bad-input tests."""
    folder = tmp_path / "spider"
    folder.mkdir()
    shutil.copy(spider_dir / "tables.json", folder / "tables.json")
    records = [
        {"db_id": "concert_singer", "question": "How many singers?", "query": "SELECT count(*) FROM singer"},
        {"db_id": "concert_singer", "question": "", "query": "SELECT 1"},
        {"db_id": "concert_singer", "question": "Names?"},
    ]
    (folder / "dev.json").write_text(json.dumps(records))
    return folder


def test_records_without_question_or_sql_are_counted(tiny_spider, tmp_path):
    out = tmp_path / "out"
    assert main(["data", f"data_dir={tiny_spider}", "split=dev", f"output_dir={out}"]) == 0
    assert len((out / "spider_dev.jsonl").read_text().splitlines()) == 1


def test_strict_names_the_record(tiny_spider, tmp_path, capsys):
    assert (
        main(["data", f"data_dir={tiny_spider}", "split=dev", f"output_dir={tmp_path / 'o'}", "strict=true"])
        == 2
    )
    assert "dev.json: record 1: missing question" in capsys.readouterr().err


def test_unknown_db_id_is_an_error(tiny_spider, tmp_path, capsys):
    (tiny_spider / "dev.json").write_text(
        json.dumps([{"db_id": "nope", "question": "q", "query": "SELECT 1"}])
    )
    assert main(["data", f"data_dir={tiny_spider}", "split=dev", f"output_dir={tmp_path / 'o'}"]) == 2
    assert "record 0: unknown db_id 'nope'" in capsys.readouterr().err


def test_malformed_json_names_line(tiny_spider, tmp_path, capsys):
    (tiny_spider / "dev.json").write_text('[\n{"db_id": "concert_singer",\n "question": }\n]')
    assert main(["data", f"data_dir={tiny_spider}", "split=dev", f"output_dir={tmp_path / 'o'}"]) == 2
    assert "dev.json: malformed JSON at line 3" in capsys.readouterr().err


def test_missing_files_are_named(tmp_path, capsys):
    assert main(["data", f"data_dir={tmp_path}", "split=dev", f"output_dir={tmp_path / 'o'}"]) == 2
    assert "tables file not found" in capsys.readouterr().err


def test_malformed_tables_json_is_named(tiny_spider, tmp_path, capsys):
    (tiny_spider / "tables.json").write_text(
        json.dumps([{"db_id": "concert_singer", "table_names_original": ["a"]}])
    )
    assert main(["data", f"data_dir={tiny_spider}", "split=dev", f"output_dir={tmp_path / 'o'}"]) == 2
    err = capsys.readouterr().err
    assert "tables.json" in err and "concert_singer" in err and "lacks field" in err
