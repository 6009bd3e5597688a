"""Benchmark: `sqltune eval` on the full Spider dev set, EM + EX, value plugging off and on.

    python bench/eval_speed.py --spider-dir ../shared/data/spider [--pred PRED] [--workers N]
        [--official-dir DIR --official-python PY]

The gold file is Spider's dev_gold.sql without the examples whose database is absent (wta_1),
written to a temporary folder; the predictions default to the gold queries themselves. With
--official-dir (a checkout of test-suite-sql-eval, with nltk's punkt data available to
--official-python), the official evaluator is timed on the same files and its printed EX/EM are
shown next to ours, so identical results can be checked on the same machine.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sqltune.evaluate import evaluate  # noqa: E402


def dev_files(spider_dir: Path, folder: Path, pred: Path | None) -> tuple[Path, Path, int]:
    database = spider_dir / "database"
    lines = [line for line in (spider_dir / "dev_gold.sql").read_text().splitlines() if line.strip()]
    kept = [line for line in lines if (database / line.split("\t")[1]).is_dir()]
    gold = folder / "dev_gold.txt"
    gold.write_text("\n".join(kept) + "\n")
    if pred is None:
        pred = folder / "dev_pred.txt"
        pred.write_text("\n".join(line.split("\t")[0] for line in kept) + "\n")
    return gold, pred, len(kept)


def official(args, gold: Path, pred: Path, plug: bool) -> tuple[float, str]:
    command = [
        args.official_python,
        "evaluation.py",
        "--gold", str(gold),
        "--pred", str(pred),
        "--db", str(args.spider_dir / "database"),
        "--table", str(args.spider_dir / "tables.json"),
        "--etype", "all",
    ] + (["--plug_value"] if plug else [])  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, cwd=args.official_dir, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    scores = re.findall(r"^(execution|exact match)\s+(.*)$", done.stdout, flags=re.M)
    return seconds, "; ".join(f"{name}: {values.split()[-1]}" for name, values in scores)


def cli(args, gold: Path, pred: Path, plug: bool) -> float:
    """Wall time of `sqltune eval` as a fresh process (interpreter start and imports included)."""
    command = [
        sys.executable, "-m", "sqltune", "eval",
        "--pred", str(pred), "--gold", str(gold),
        "--db-dir", str(args.spider_dir / "database"), "--tables", str(args.spider_dir / "tables.json"),
        "--workers", str(args.workers),
    ] + (["--plug-value"] if plug else [])  # fmt: skip
    start = time.perf_counter()
    subprocess.run(
        command, capture_output=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spider-dir", type=Path, required=True)
    parser.add_argument("--pred", type=Path, default=None, help="predictions (default: the gold queries)")
    parser.add_argument("--workers", type=int, default=0, help="0 = one per CPU")
    parser.add_argument("--repeat", type=int, default=3, help="runs per setting; the best is reported")
    parser.add_argument("--official-dir", type=Path, default=None)
    parser.add_argument("--official-python", default=sys.executable)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gold, pred, count = dev_files(args.spider_dir, Path(tmp), args.pred)
        print(f"Spider dev: {count} examples, predictions {args.pred or 'gold'}")
        for plug in (False, True):
            times, report = [], None
            for _ in range(args.repeat):
                start = time.perf_counter()
                report = evaluate(
                    pred,
                    gold,
                    args.spider_dir / "database",
                    args.spider_dir / "tables.json",
                    etype="all",
                    plug_value=plug,
                    workers=args.workers,
                )
                times.append(time.perf_counter() - start)
            levels = report["summary"]["levels"]["all"]
            ours = f"EX {levels['exec']['rate']:.3f} EM {levels['exact']['rate']:.3f}"
            line = (
                f"plug_value={'on ' if plug else 'off'}  sqltune {min(times):5.2f} s in-process,"
                f" {cli(args, gold, pred, plug):5.2f} s as a command ({ours}, workers={report['settings']['workers']})"
            )
            if args.official_dir:
                seconds, scores = official(args, gold, pred, plug)
                line += f"  official {seconds:5.2f} s ({scores})"
            print(line, flush=True)


if __name__ == "__main__":
    main()
