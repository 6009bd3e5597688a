"""Extracting the one SQL query from a model's raw answer.

Models wrap their SQL in code fences, explanations, echoes of the prompt, comments and semicolons.
Prediction applies this rule to every answer and writes the result, which `sqltune eval` then scores
as written, as the official evaluator does; `sqltune eval --extract` applies the same rule to files
of raw model text. `extract_sql` does, in order:

1. Code fence: if the text holds a fenced block (three backticks, with or without a language tag
   such as `sql`), only the first block is kept; an unclosed fence keeps the rest of the text.
2. Curly quotes become straight quotes: `‘ ’` -> `'` and `“ ”` -> `"`.
3. Comments are removed: `-- ...` to the end of the line and `/* ... */` (not inside literals).
4. Prose or a prompt echo before the SQL is dropped: the query starts at the first SELECT, or WITH
   opening a common table expression (`WITH name AS (`), in any case, that begins a line or follows
   `:`; if there is none, at the first one anywhere. Text with neither is kept as it is (it will
   fail honestly).
5. The first complete statement: the text is cut at the first `;` outside a quoted literal or
   identifier and outside parentheses, so trailing semicolons and any second statement go, while
   a `;` left inside a subquery (`IN (SELECT ... ;)`, which the official evaluator accepts) stays.
   A `)` without its `(` does not count, so stray closing parentheses cannot hide a second statement.
6. One line: runs of whitespace outside literals become one space; line breaks and tabs inside a
   literal become spaces too; the result is stripped.

The rule never changes what is inside a literal other than line breaks and tabs, and never
reorders or adds SQL. An answer with no SQL at all gives an empty string.

`statement_complete` tells generation when an answer already holds everything this rule will
keep (a closed first code fence, or a statement ended by a `;` at depth 0), so a model that would
go on writing prose or a second query can stop there.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"```[^\n`]*\n?(.*?)(?:```|\Z)", re.S)
_CURLY = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
# SELECT, or WITH opening a common table expression (so the prose word "with" does not count).
_START = re.compile(r"\bselect\b|\bwith\s+(?:recursive\s+)?[\w\"`\[\]]+\s*(?:\([^)]*\)\s*)?as\s*\(", re.I)
_QUOTES = "'\"`["
_CLOSING = {"'": "'", '"': '"', "`": "`", "[": "]"}
_NESTING = {"(": 1, ")": -1}


def _scan(text: str):
    """Yield (index, char, inside_literal) while tracking quoted literals and identifiers."""
    quote = None
    for i, char in enumerate(text):
        if quote:
            if char == _CLOSING[quote]:
                quote = None
            yield i, char, True
        elif char in _QUOTES:
            quote = char
            yield i, char, True
        else:
            yield i, char, False


def _strip_comments(text: str) -> str:
    out, i, quote = [], 0, None
    while i < len(text):
        char = text[i]
        if quote:
            if char == _CLOSING[quote]:
                quote = None
        elif char in _QUOTES:
            quote = char
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = len(text) if end < 0 else end + 2
            out.append(" ")
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _line_start_of_sql(text: str) -> int | None:
    """The first SELECT/WITH that begins the text or a line, or follows `:`."""
    for match in _START.finditer(text):
        before = text[: match.start()].rstrip(" \t")
        if not before or before.endswith(("\n", ":")):
            return match.start()
    return None


def _start_of_sql(text: str) -> int:
    start = _line_start_of_sql(text)
    if start is not None:
        return start
    first = _START.search(text)
    return first.start() if first else 0


def _statement_end(text: str) -> int | None:
    """Index of the `;` that ends the first statement of `text`, if it has one."""
    depth = 0
    for i, char, inside in _scan(text):
        if inside:
            continue
        if char == ";" and depth == 0:
            return i
        depth = max(0, depth + _NESTING.get(char, 0))
    return None


def statement_complete(text: str) -> bool:
    """Whether more text could no longer change what `extract_sql` keeps of this answer: its first
    code fence is closed, or (with no fence opened) a SELECT/WITH starting a line is followed by the
    `;` that ends its statement. Text without either may still grow into an answer."""
    if "```" in text:
        return bool(re.search(r"```[^\n`]*\n?.*?```", text, re.S))
    text = _strip_comments(text.translate(_CURLY))
    start = _line_start_of_sql(text)
    return start is not None and _statement_end(text[start:]) is not None


def extract_sql(text: str) -> str:
    """The single-line SQL statement in a model's answer, by the rule in the module docstring."""
    fence = _FENCE.search(text)
    if fence:
        text = fence.group(1)
    text = _strip_comments(text.translate(_CURLY))
    text = text[_start_of_sql(text) :]
    end = _statement_end(text)
    out = []
    for _, char, inside in _scan(text if end is None else text[:end]):
        if char.isspace():
            if inside or (out and out[-1] != " "):
                out.append(" ")
            continue
        out.append(char)
    return "".join(out).strip()
