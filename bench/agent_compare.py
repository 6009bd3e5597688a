"""Single-shot greedy SQL against the SQL agent on the same questions, with the same run.

The run (an SFT run, or one trained on SFT records plus `sqltune data agent` traces) answers the first
`--limit` questions of a registered dataset twice with `sqltune predict`: greedy single-shot
(`decoding=single`), then as an agent (`decoding=agent max_turns=N`: it may list tables, describe
them and run queries before its final SQL). Both are scored with sqltune's evaluator (EX, and by
Spider hardness where the dataset has a tables.json), and so is the first SQL each agent conversation
wrote, to see what the observations changed:

    sqltune data source=spider data_dir=../shared/data/spider split=dev output_dir=runs/data
    python bench/agent_compare.py --run-dir runs/spider_agent --dataset spider_dev \
        --dataset-dir runs/data --limit 200 --max-turns 4 --out runs/agent_compare

The table (printed, and written to `<out>/agent_compare.md` with the numbers in
`<out>/agent_compare.json`) gives EX single-shot vs agent overall and by hardness, how many questions
the agent answered directly (no tool call) or after tool calls, how many final answers differ from
the first SQL the conversation wrote and, of those, fixed (first SQL wrong, final right), broken
(right -> wrong) or other (both wrong, or both right), and the stop reasons. Predictions resume, so
an interrupted comparison continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

LABELS = ("single", "agent", "agent-first")


def write_gold(dataset, limit: int | None, path: Path) -> int:
    """The first `limit` gold queries as `SQL<TAB>db_id` lines (the evaluator's input)."""
    from sqltune.files import write_text

    examples = dataset.examples[:limit] if limit else dataset.examples
    write_text(path, "".join(f"{' '.join(e.sql.split())}\t{e.db_id}\n" for e in examples))
    return len(examples)


def score(predictions: Path, gold: Path, entry: dict, output: Path, timeout: float) -> dict:
    from sqltune.evaluate.run import evaluate

    db_dir = entry.get("db_dir")
    if not db_dir:
        raise SystemExit("the dataset records no db_dir (its databases): build it with `sqltune data`")
    tables = entry.get("tables")
    etype = "all" if tables else "exec"
    return evaluate(predictions, gold, db_dir, tables, etype=etype, timeout=timeout, output=output)


def ex_by_level(report: dict) -> dict:
    """EX overall and per hardness level: {level: (rate, count)} for the levels with questions."""
    levels = report["summary"]["levels"]
    found = {}
    for name, level in levels.items():
        if level.get("count") and level.get("exec"):
            found[name] = (level["exec"]["rate"], level["count"])
    return found


def changes(agent_rows: list[dict], final: list[dict], first: list[dict]) -> Counter:
    """How the agent's conversations went: direct/after tools, and changed answers fixed/broken/other."""
    counts: Counter = Counter()
    for row, now, before in zip(agent_rows, final, first):
        counts["after tool calls" if row.get("tool_calls") else "directly"] += 1
        if not row.get("changed"):
            continue
        counts["changed"] += 1
        right_now, right_before = bool(now.get("exec")), bool(before.get("exec"))
        if right_now != right_before:
            counts["fixed" if right_now else "broken"] += 1
        else:
            counts["other"] += 1
    return counts


def markdown(results: dict, counts: Counter, stops: Counter, questions: int, max_turns: int) -> str:
    levels = [name for name in results["single"] if name != "all"]
    header = ["variant", "questions", "EX", *(f"EX {name}" for name in levels)]
    lines = ["| " + " | ".join(header) + " |", "| --- | " + " | ".join("---:" for _ in header[1:]) + " |"]
    titles = {
        "single": "single-shot greedy",
        "agent": f"agent (max_turns={max_turns})",
        "agent-first": "agent, first SQL written",
    }
    for label, by_level in results.items():
        cells = [titles[label], str(by_level["all"][1]), f"{by_level['all'][0]:.3f}"]
        cells += [
            f"{by_level[name][0]:.3f} ({by_level[name][1]})" if name in by_level else "-" for name in levels
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| agent conversations | count |",
        "| --- | ---: |",
        f"| questions | {questions} |",
        f"| answered directly (no tool call) | {counts['directly']} |",
        f"| answered after tool calls | {counts['after tool calls']} |",
        f"| final SQL differs from the first SQL written | {counts['changed']} |",
        f"| of those fixed (wrong -> right) | {counts['fixed']} |",
        f"| of those broken (right -> wrong) | {counts['broken']} |",
        f"| of those other (both wrong or both right) | {counts['other']} |",
    ]
    lines += [f"| stopped: {reason} | {n} |" for reason, n in stops.most_common()]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run-dir", required=True, type=Path, help="a trained sqltune run")
    parser.add_argument("--dataset", required=True, help="registered dataset to answer, e.g. spider_dev")
    parser.add_argument(
        "--dataset-dir", type=Path, default=Path("data"), help="folder with dataset_info.json"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default <run-dir>/agent_compare)"
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--max-turns", type=int, default=4, help="agent: most responses per question")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="per response")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--cutoff-len", type=int, default=None, help="prompt + answer tokens (default: the run's)"
    )
    parser.add_argument("--timeout", type=float, default=2.0, help="agent: seconds a tool's query may run")
    parser.add_argument("--eval-timeout", type=float, default=30.0, help="seconds a query may run in scoring")
    parser.add_argument("--infer-dtype", default="auto")
    args = parser.parse_args()

    from sqltune.args import GeneratingArguments, ModelArguments, PredictArguments
    from sqltune.data.records import dataset_entry, load_dataset
    from sqltune.files import read_jsonl, write_jsonl, write_text
    from sqltune.infer.command import run_predict

    out = args.out or args.run_dir / "agent_compare"
    predictions = out / "predictions"
    dataset = load_dataset(args.dataset_dir, args.dataset)
    entry = dataset_entry(args.dataset_dir, args.dataset)["sqltune"]
    gold = out / "gold.sql"
    questions = write_gold(dataset, args.limit, gold)

    greedy = GeneratingArguments(max_new_tokens=args.max_new_tokens)
    agent = GeneratingArguments(
        max_new_tokens=args.max_new_tokens,
        decoding="agent",
        max_turns=args.max_turns,
        candidate_timeout=args.timeout,
    )
    for label, settings in (("single", greedy), ("agent", agent)):
        predict = PredictArguments(
            run_dir=str(args.run_dir),
            dataset=args.dataset,
            dataset_dir=str(args.dataset_dir),
            output=str(predictions / f"{label}.jsonl"),
            batch_size=args.batch_size,
            cutoff_len=args.cutoff_len,
            max_samples=args.limit,
            infer_dtype=args.infer_dtype,
        )
        run_predict(ModelArguments(), predict, settings)
    agent_rows = read_jsonl(predictions / "agent.jsonl")
    write_jsonl(predictions / "agent-first.jsonl", [{**row, "sql": row["first_sql"]} for row in agent_rows])

    reports = {
        label: score(
            predictions / f"{label}.jsonl", gold, entry, out / "eval" / f"{label}.json", args.eval_timeout
        )
        for label in LABELS
    }
    results = {label: ex_by_level(report) for label, report in reports.items()}
    counts = changes(agent_rows, reports["agent"]["examples"], reports["agent-first"]["examples"])
    stops = Counter(row["stop_reason"] for row in agent_rows)
    table = markdown(results, counts, stops, questions, args.max_turns)
    summary = {
        "run_dir": str(args.run_dir),
        "dataset": args.dataset,
        "questions": questions,
        "max_turns": args.max_turns,
        "max_new_tokens": args.max_new_tokens,
        "ex": {
            label: {name: {"ex": rate, "n": n} for name, (rate, n) in r.items()}
            for label, r in results.items()
        },
        "conversations": dict(counts),
        "stop_reasons": dict(stops),
    }
    write_text(out / "agent_compare.json", json.dumps(summary, indent=2) + "\n")
    write_text(out / "agent_compare.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
