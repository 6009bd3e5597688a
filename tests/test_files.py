import codecs
import json

import pytest

from sqltune.errors import ConfigError, DataError
from sqltune.files import (
    Line,
    atomic_open,
    check_output,
    check_output_dir,
    plain_name,
    read_json,
    read_jsonl,
    read_lines,
    write_jsonl,
)


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


def test_text_is_utf8_without_its_byte_order_mark(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(codecs.BOM_UTF8 + b'[\r\n"caf\xc3\xa9"]\r\n')
    assert read_json(path) == ["café"]
    assert [line.text for line in read_lines(path)] == ["[", '"café"]']


def test_lines_split_as_python_text_files_split_them(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"a\r\nb\rc\n\nd")
    assert [(line.number, line.text) for line in read_lines(path)] == [
        (1, "a"),
        (2, "b"),
        (3, "c"),
        (4, ""),
        (5, "d"),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[1,\n 2\xff]\n", r"a\.json: line 2: not UTF-8 text \(invalid start byte at byte 6\)"),
        (b"[1,\r\n\r\n\x00]", r"a\.json: line 3: NUL byte at byte 7"),
        (
            codecs.BOM_UTF16_LE + "[1]".encode("utf-16-le"),
            r"a\.json: UTF-16 or UTF-32 text; save it as UTF-8",
        ),
        (b" \n", r"a\.json: empty file"),
    ],
)
def test_unreadable_text_names_file_line_and_byte(tmp_path, data, message):
    path = tmp_path / "a.json"
    path.write_bytes(data)
    with pytest.raises(DataError, match=message):
        read_json(path)


def test_unreadable_lines_can_be_kept_with_their_problem(tmp_path):
    path = tmp_path / "pred.sql"
    path.write_bytes(b"SELECT 1\nSELECT '\xff'\n")
    first, second = read_lines(path, keep_unreadable=True)
    assert first == Line(1, "SELECT 1") and second.problem == "not UTF-8 text (invalid start byte at byte 17)"
    with pytest.raises(DataError, match=r"pred\.sql: line 2: not UTF-8"):
        read_lines(path)


def test_a_folder_is_not_a_file(tmp_path):
    with pytest.raises(DataError, match="JSON file is a folder, not a file"):
        read_json(tmp_path)
    with pytest.raises(DataError, match="is a folder; give a file path inside it"):
        write_jsonl(tmp_path, [])


def test_outputs_that_would_destroy_an_input_are_refused(tmp_path):
    source = tmp_path / "gold.sql"
    source.write_text("SELECT 1\tdb\n")
    with pytest.raises(DataError, match="is also an input"):
        check_output(tmp_path / "." / "gold.sql", [None, source])
    with pytest.raises(DataError, match="gold.sql is a file, not a folder"):
        check_output(source / "report.json")
    with pytest.raises(DataError, match="is a file, not a folder"):
        check_output_dir(source)
    assert check_output(tmp_path / "new" / "report.json", [source]) == tmp_path / "new" / "report.json"


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "", "a\\b", "x y"])
def test_names_that_leave_their_folder_are_refused(name):
    with pytest.raises(ConfigError, match="is not a plain name"):
        plain_name(name, "dataset_name")


def test_plain_names_pass():
    assert plain_name("spider_dev-2.v1", "dataset_name") == "spider_dev-2.v1"
