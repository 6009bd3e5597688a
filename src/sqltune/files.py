"""Reading and writing the project's files: atomically, and with errors that name the file and line.

Every text input (questions, tables, gold, predictions, records, configs) is read by `read_text` or
`read_lines`: UTF-8, with a leading byte-order mark dropped (spreadsheet programs and Windows editors
write one), lines split at `\n`, `\r\n` or `\r` as Python's text files split them. A byte that is
not UTF-8, a NUL byte or a UTF-16 file is an error that names the file, the line and the byte
offset: guessing another decoding would silently change what is trained on or scored.

Every output of sqltune (records, registries, predictions, reports) is written to a temporary file in
the same folder and renamed over the target, so an interrupted run never leaves a half-written file.
`check_output` refuses, before any work starts, an output that is one of the command's inputs, a
folder, or under a regular file; `plain_name` refuses names that would leave their folder.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqltune.errors import ConfigError, DataError

_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # UTF-32's marks start with these too
_LINE_END = re.compile(rb"\r\n|\r|\n")
_PLAIN_NAME = re.compile(r"\w[\w.-]*")


# --- writing ------------------------------------------------------------------------------------------
def check_output(
    path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = (), what: str = "output"
) -> Path:
    """Refuse an output path that would destroy an input or fail only after the work is done: one of
    `inputs`, an existing folder, or a path under a regular file. Commands call it before they start."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{what} {path} is a folder; give a file path inside it")
    _check_parents(path, what)
    for source in inputs:
        if source is not None and path.exists() and Path(source).exists() and path.samefile(source):
            raise DataError(f"{what} {path} is also an input ({source}); writing it would destroy that input")
    return path


def check_output_dir(path: str | os.PathLike, what: str = "output_dir") -> Path:
    """Refuse an output folder that is a regular file (or lies under one)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{what} {path} is a file, not a folder")
    _check_parents(path, what)
    return path


def _check_parents(path: Path, what: str) -> None:
    existing = next((parent for parent in path.parents if parent.exists()), None)
    if existing is not None and not existing.is_dir():
        raise DataError(f"{what} {path}: {existing} is a file, not a folder")


def plain_name(name: str, what: str) -> str:
    """`name` when it is a plain file name (letters, digits, `_`, `-`, `.`, not starting with a dot),
    so that files named after it stay in their folder."""
    if not _PLAIN_NAME.fullmatch(name):
        raise ConfigError(
            f"{what}: {name!r} is not a plain name (letters, digits, '_', '-' and '.'; no folders)"
        )
    return name


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write; on success rename it over `path`, on error
    delete it. For writers that need a file name (SQLite, save_pretrained) rather than a handle."""
    path = check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[Any]:
    """Open a temporary file beside `path`; on success rename it over `path`, on error delete it."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else encoding) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path) as handle:
        handle.write(text)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    with atomic_open(path) as handle:
        json.dump(obj, handle, ensure_ascii=False, indent=indent)
        handle.write("\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write one JSON object per line; return the number of lines written."""
    count = 0
    with atomic_open(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False))
            handle.write("\n")
            count += 1
    return count


# --- reading ------------------------------------------------------------------------------------------
def require_file(path: str | os.PathLike, what: str = "file") -> Path:
    """Return `path` as a Path, or raise a DataError that names it when it is missing or a folder."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{what} is a folder, not a file: {path}")
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    return path


@dataclass(frozen=True)
class Line:
    """One line of a text file, without its line ending. `problem` says why it could not be read;
    then `text` has the unreadable bytes replaced by U+FFFD, to find the line's place, never to use
    as its content."""

    number: int
    text: str
    problem: str | None = None


def read_text(path: str | os.PathLike, what: str = "text file") -> str:
    """The file's text (see the module docstring); an unreadable byte names the file, line and offset."""
    path = require_file(path, what)
    data = path.read_bytes()
    start = _text_start(path, data)
    try:
        return _decode(data, start, len(data))
    except _Unreadable as err:
        line = 1 + sum(1 for _ in _LINE_END.finditer(data, 0, err.offset))
        raise DataError(f"{path}: line {line}: {err}") from None


def read_lines(path: str | os.PathLike, what: str = "text file", keep_unreadable: bool = False) -> list[Line]:
    """The file's lines. A line with a byte that is not UTF-8, or a NUL byte, is an error, unless
    `keep_unreadable`: then it is kept with a `problem` that says what is wrong (for prediction
    files, where one broken model output must not stop a whole evaluation)."""
    path = require_file(path, what)
    data = path.read_bytes()
    lines = []
    for number, (start, end) in enumerate(_split_lines(data, _text_start(path, data)), start=1):
        try:
            lines.append(Line(number, _decode(data, start, end)))
        except _Unreadable as err:
            if not keep_unreadable:
                raise DataError(f"{path}: line {number}: {err}") from None
            text = data[start:end].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
            lines.append(Line(number, text, str(err)))
    return lines


def _text_start(path: Path, data: bytes) -> int:
    """Where the text starts: after a UTF-8 byte-order mark; a UTF-16 or UTF-32 file is refused."""
    if data.startswith(_UTF16_BOMS):
        raise DataError(f"{path}: UTF-16 or UTF-32 text; save it as UTF-8")
    return len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0


def _split_lines(data: bytes, start: int) -> Iterator[tuple[int, int]]:
    """(start, end) byte offsets of each line; a final line ending does not start another line."""
    for end in _LINE_END.finditer(data, start):
        yield start, end.start()
        start = end.end()
    if start < len(data):
        yield start, len(data)


class _Unreadable(ValueError):
    """Bytes that are not text; `offset` counts from the start of the file."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset


def _decode(data: bytes, start: int, end: int) -> str:
    try:
        text = data[start:end].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = start + err.start
        raise _Unreadable(offset, f"not UTF-8 text ({err.reason} at byte {offset})") from None
    nul = data.find(b"\x00", start, end)
    if nul >= 0:
        raise _Unreadable(nul, f"NUL byte at byte {nul}")
    return text


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Load a JSON document; a syntax error names the file, line and column."""
    text = read_text(path, what)
    if not text.strip():
        raise DataError(f"{path}: empty file (expected JSON)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from None


def read_jsonl(path: str | os.PathLike, what: str = "JSONL file") -> list[dict]:
    """Load a JSON-lines file (blank lines skipped); a bad line names the file and line number."""
    return [row for _, row in read_jsonl_lines(read_lines(path, what), path)]


def read_jsonl_lines(lines: Iterable[Line], path: str | os.PathLike) -> Iterator[tuple[Line, dict]]:
    """(line, object) for each non-blank line read by `read_lines`; a line that is not a JSON object
    is an error naming it."""
    for line in lines:
        if not line.text.strip():
            continue
        try:
            row = json.loads(line.text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: malformed JSON at line {line.number}: {err.msg}") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}: line {line.number} is not a JSON object")
        yield line, row
