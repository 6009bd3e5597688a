"""Summaries of scored examples: counts next to every rate, the official tables, a JSON report.

The Spider summary reproduces the official evaluator's numbers: EX and EM per hardness level,
partial-match accuracy/recall/F1 per clause (averaged the official way: accuracy over examples
whose prediction has the clause, recall over those whose gold has it, F1 from the two averages,
and 1 when both are 0), and for multi-turn files the per-turn rates and the interaction-level joint
accuracy (an interaction counts only if every one of its turns is right).

On a database server, examples whose gold query failed there are not scored; each level counts
them (`gold_failed_on_server`) beside its EX, whose count is then the examples that were scored.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from sqltune.evaluate.bird import DIFFICULTIES, r_ves
from sqltune.evaluate.spider.exact import CLAUSES
from sqltune.evaluate.spider.hardness import LEVELS
from sqltune.files import write_json

TURNS = ("turn 1", "turn 2", "turn 3", "turn 4", "turn > 4")


def _rate(rows: list[dict], key: str) -> dict | None:
    scored = [row[key] for row in rows if row.get(key) is not None]
    if not scored:
        return None
    correct = sum(scored)
    return {"correct": correct, "count": len(scored), "rate": correct / len(scored)}


def _partial(rows: list[dict]) -> dict:
    out = {}
    for clause in CLAUSES:
        scores = [row["partial"][clause] for row in rows if row.get("partial")]
        with_pred = [s["acc"] for s in scores if s["pred_total"] > 0]
        with_gold = [s["rec"] for s in scores if s["label_total"] > 0]
        acc = sum(with_pred) / len(with_pred) if with_pred else 0.0
        rec = sum(with_gold) / len(with_gold) if with_gold else 0.0
        f1 = 1.0 if acc == 0 and rec == 0 else 2 * acc * rec / (acc + rec)
        out[clause] = {"acc": acc, "rec": rec, "f1": f1}
    return out


def _server_counts(rows: list[dict], examples: list[dict]) -> dict:
    """`gold_failed_on_server` for a server run (its rows carry `gold_failed`), nothing otherwise."""
    if not any("gold_failed" in row for row in examples):
        return {}
    return {"gold_failed_on_server": sum(bool(row.get("gold_failed")) for row in rows)}


def _turn_name(turn: int) -> str:
    return f"turn {turn}" if turn <= 4 else "turn > 4"


def summarize(examples: list[dict], format: str, etype: str, multi_turn: bool) -> dict:
    errors = Counter(_error_kind(row["error"]) for row in examples if row["error"])
    if format == "bird":
        levels = {}
        for level in (*DIFFICULTIES, "all"):
            rows = [r for r in examples if level == "all" or r.get("difficulty") == level]
            rewards = [r["reward"] for r in rows if r.get("reward") is not None]
            levels[level] = {
                "count": len(rows),
                "exec": _rate(rows, "exec"),
                "r_ves": r_ves(rewards) if rewards else None,
                **_server_counts(rows, examples),
            }
        return {"levels": levels, "errors": dict(errors)}
    levels = {}
    for level in (*LEVELS, "all"):
        rows = [r for r in examples if level == "all" or r["hardness"] == level]
        levels[level] = {"count": len(rows), "exec": _rate(rows, "exec"), "exact": _rate(rows, "exact")}
        levels[level].update(_server_counts(rows, examples))
        if etype != "exec":
            levels[level]["partial"] = _partial(rows)
    summary: dict = {"levels": levels, "errors": dict(errors)}
    if multi_turn:
        sessions: dict[int, list[dict]] = {}
        for row in examples:
            sessions.setdefault(row["session"], []).append(row)
        joint = {"count": len(sessions)}
        for key in ("exec", "exact"):
            if any(row[key] is not None for row in examples):
                correct = sum(all(r[key] == 1 for r in turns) for turns in sessions.values())
                joint[key] = {"correct": correct, "count": len(sessions), "rate": correct / len(sessions)}
        summary["joint"] = joint
        summary["turns"] = {}
        for name in TURNS:
            rows = [r for r in examples if _turn_name(r["turn"]) == name]
            summary["turns"][name] = {
                "count": len(rows),
                "exec": _rate(rows, "exec"),
                "exact": _rate(rows, "exact"),
            }
    return summary


def _error_kind(error: str) -> str:
    """Group error messages for the summary: the database's message up to the first colon."""
    for kind in ("gold query does not parse", "gold query failed"):
        if error.startswith(kind):
            return kind
    return error.split(":")[0]


OFFICIAL_FIELDS = ("pred", "exact", "exec", "pred_parse_ok", "error")


def compare_official(
    examples: list[dict], originals: list[dict], format: str, etype: str, multi_turn: bool
) -> dict:
    """The "extraction" and "official" blocks of a report scored with SQL extraction.

    `originals` are the rows whose text extraction changed, scored as written; every other row
    scores the same either way, so together they give the official evaluator's numbers. Each
    changed example also gets its official scores under "official", so that a reader can see row by
    row what extraction gained or lost.
    """
    official = {row["index"]: row for row in originals}
    counts = {key: {"gained": 0, "lost": 0} for key in ("exec", "exact")}
    for row in examples:
        written = official.get(row["index"])
        if written is None:
            continue
        row["official"] = {key: written[key] for key in OFFICIAL_FIELDS}
        for key, count in counts.items():
            count["gained"] += int(row[key] == 1 and written[key] == 0)
            count["lost"] += int(row[key] == 0 and written[key] == 1)
    rows = [official.get(row["index"], row) for row in examples]
    return {
        "extraction": {"changed": len(official), "count": len(examples), **counts},
        "official": {"summary": summarize(rows, format, etype, multi_turn)},
    }


def _cell(score: dict | None) -> str:
    return "-" if score is None else f"{score['correct']} ({score['rate']:.3f})"


def _rate_cells(summary: dict, key: str) -> list[str]:
    """One rate per level, then the joint rate of a multi-turn file."""
    cells = [_cell(level[key]) for level in summary["levels"].values()]
    return cells + ([_cell(summary["joint"].get(key))] if "joint" in summary else [])


def print_summary(report: dict, file=None) -> None:
    """The familiar score table on the terminal (stderr by default), counts next to rates.

    With extraction, each EX/EM row is followed by the official one (lines scored as written).
    """
    from rich.console import Console
    from rich.table import Table

    summary, settings = report["summary"], report["settings"]
    official = report.get("official", {}).get("summary")
    levels = list(summary["levels"])
    table = Table(title=f"sqltune eval ({settings['format']}, {settings['database_variant']})")
    table.add_column("")
    joint = summary.get("joint")
    for name in levels + (["joint"] if joint else []):
        table.add_column(name, justify="right")
    counts = [str(summary["levels"][n]["count"]) for n in levels]
    table.add_row("count", *counts, *([str(joint["count"])] if joint else []))
    on_server = "gold_failed_on_server" in summary["levels"]["all"]
    if on_server:
        failed = [str(summary["levels"][n]["gold_failed_on_server"]) for n in levels]
        table.add_row("gold failed on server", *failed, *([""] if joint else []))
    rates = [("execution (EX)", "exec")]
    if settings["format"] != "bird":
        rates.append(("exact match (EM)", "exact"))
    for name, key in rates:
        if official:
            table.add_row(f"{name}, extracted", *_rate_cells(summary, key))
            table.add_row(f"{name}, official", *_rate_cells(official, key))
        else:
            table.add_row(name, *_rate_cells(summary, key))
    if settings["format"] == "bird":
        table.add_row("R-VES", *[_ves(summary["levels"][n]["r_ves"]) for n in levels])
    elif "partial" in summary["levels"]["all"]:
        for clause in CLAUSES:
            cells = [f"{summary['levels'][n]['partial'][clause]['f1']:.3f}" for n in levels]
            table.add_row(f"  F1 {clause}", *cells, *([""] if joint else []))
    console = Console(file=file or sys.stderr)
    console.width = max(console.width, 120)  # the official table is wide; never wrap its cells
    console.print(table)
    options = ", ".join(
        f"{k}={settings[k]}" for k in ("etype", "plug_value", "keep_distinct", "timeout", "extract")
    )
    console.print(f"settings: {options}; {settings['evaluator_version']}")
    if on_server:
        for line in _server_lines(summary["levels"]["all"], settings):
            console.print(line, soft_wrap=True)  # unwrapped: a URL stays whole
    if "extraction" in report:
        console.print(_extraction_line(report["extraction"]))
    if summary["errors"]:
        console.print("errors: " + ", ".join(f"{n} {kind}" for kind, n in summary["errors"].items()))


def _server_lines(level: dict, settings: dict) -> list[str]:
    scored = level["exec"]["count"] if level["exec"] else 0
    lines = [
        f"database: {settings['db_url']}",
        f"EX is over the {scored} examples whose gold query ran on the server; "
        f"{level['gold_failed_on_server']} gold queries failed there (gold SQL runs as written) "
        "and are not scored",
    ]
    return lines + ([settings["exact_match"]] if settings.get("exact_match") else [])


def _extraction_line(extraction: dict) -> str:
    changes = ", ".join(
        f"{name} +{extraction[key]['gained']} -{extraction[key]['lost']}"
        for name, key in (("EX", "exec"), ("EM", "exact"))
    )
    return (
        f"extraction changed {extraction['changed']} of {extraction['count']} predictions; "
        f"against the official scoring (lines as written): {changes}"
    )


def _ves(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def write_report(path: str | Path, report: dict) -> None:
    write_json(path, report)
