import json

import pytest

from sqltune.errors import DataError
from sqltune.files import atomic_open, read_json, read_jsonl, write_jsonl


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.jsonl"
    write_jsonl(target, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_jsonl(target, rows())
    assert read_jsonl(target) == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temp file left behind


def test_atomic_open_creates_parent(tmp_path):
    with atomic_open(tmp_path / "a" / "b.txt") as handle:
        handle.write("x")
    assert (tmp_path / "a" / "b.txt").read_text() == "x"


def test_malformed_json_names_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('[\n {"a": 1},\n {"a": }\n]')
    with pytest.raises(DataError, match=r"bad\.json: malformed JSON at line 3"):
        read_json(bad)


def test_malformed_jsonl_names_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"a": 1}) + "\n\n{oops\n")
    with pytest.raises(DataError, match=r"bad\.jsonl: malformed JSON at line 3"):
        read_jsonl(bad)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="not found: .*missing.json"):
        read_json(tmp_path / "missing.json")


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    current = os.umask(0o022)
    try:
        write_jsonl(tmp_path / "out.jsonl", [{"a": 1}])
    finally:
        os.umask(current)
    assert (tmp_path / "out.jsonl").stat().st_mode & 0o777 == 0o644
