"""Time `sqltune data` conversions end to end (process start to exit) and print a markdown table.

    python bench/data_timings.py [--shared ../shared] [--repeat 3]

Each conversion runs as its own `python -m sqltune data ...` process writing to a fresh temporary
folder; the table gives the records written (read back from dataset_info.json) and the best wall
time over the repeats. Results are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def conversions(shared: Path) -> list[tuple[str, list[str]]]:
    data = shared / "data"
    return [
        ("spider_train", ["source=spider", f"data_dir={data / 'spider'}", "split=train"]),
        (
            "spider_train",
            [
                "source=spider",
                f"data_dir={data / 'spider'}",
                "split=train",
                "prompt_format=ddl",
                "sample_values=3",
            ],
        ),
        ("spider_dev", ["source=spider", f"data_dir={data / 'spider'}", "split=dev"]),
        (
            "bird_minidev",
            [
                "source=bird",
                f"data_dir={data / 'bird' / 'mini_dev'}",
                "split=dev",
                "dataset_name=bird_minidev",
            ],
        ),
        ("sparc_dev", ["source=sparc", f"data_dir={data / 'sparc'}", "split=dev"]),
        ("cosql_dev", ["source=cosql", f"data_dir={data / 'cosql'}", "split=dev"]),
        ("demo_train", ["source=demo", "split=train"]),
        ("demo_dev", ["source=demo", "split=dev"]),
    ]


def sqltune(args: list[str]) -> float:
    """Run `python -m sqltune ARGS` from this checkout; return its wall time in seconds."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "sqltune", *args],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def convert(args: list[str], name: str) -> tuple[int, float]:
    """(records written, seconds) of one `sqltune data` conversion into a fresh folder."""
    with tempfile.TemporaryDirectory() as out:
        seconds = sqltune(["data", *args, f"output_dir={out}"])
        count = json.loads((Path(out) / "dataset_info.json").read_text())[name]["sqltune"]["count"]
    return count, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    print(f"| command (`sqltune data ...`) | records | seconds (best of {options.repeat}) |")
    print("| --- | ---: | ---: |")
    for name, args in conversions(options.shared):
        results = [convert(args, name) for _ in range(options.repeat)]
        shown = " ".join(a.replace(str(options.shared), "../shared") for a in args)
        print(f"| `{shown}` | {results[0][0]} | {min(s for _, s in results):.2f} |", flush=True)
    with tempfile.TemporaryDirectory() as out:
        pairs_file = Path(out) / "pairs.jsonl"
        db = options.shared / "data" / "spider" / "database"
        seconds = sqltune(["data", "synth", f"db={db}", f"output={pairs_file}", "per_db=50"])
        pairs = len(pairs_file.read_text().splitlines())
    print(f"| `synth db=../shared/data/spider/database per_db=50` | {pairs} pairs | {seconds:.2f} |")


if __name__ == "__main__":
    main()
