"""The README's main job, timed: `sqltune run configs/quickstart.yaml` with variants of its settings.

Each variant is the whole command in a fresh process (`python -m sqltune run configs/quickstart.yaml
output_dir=<out>/<name> <overrides>`), timed from start to exit, and its report.json supplies EX/EM
before and after, the wall time of each step and the precision training used. The embedded model
is converted once before the first variant, so no variant pays for that.

    python bench/quickstart.py --out runs/qs-bench
    python bench/quickstart.py --out runs/qs-bench --variant "old=max_steps=40 max_new_tokens=96"
    python bench/quickstart.py --out runs/qs-bench --as-avx2     # as on a CPU without AVX-512/bf16

`--as-avx2` runs every variant as an AVX2-only CPU would: torch's kernels at their AVX2 level
(`ATEN_CPU_CAPABILITY=avx2`), oneDNN and MKL capped at AVX2 (`ONEDNN_MAX_CPU_ISA`,
`MKL_ENABLE_INSTRUCTIONS`), so bf16 matrix multiplies fall back to the slow path, and `bf16=auto`
chooses float32 as it does there. Run it alone on the machine: the figures are wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
AVX2_ENVIRONMENT = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}


def cpu_line(environment: dict[str, str]) -> str:
    """The CPU as torch sees it in the variants' environment (capability, native bf16 or not)."""
    code = (
        "import platform, torch; from sqltune.precision import cpu_description; "
        "print(platform.processor() or platform.machine(), torch.get_num_threads(), 'threads,', "
        "cpu_description())"
    )
    done = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True)
    return done.stdout.strip() or done.stderr.strip().splitlines()[-1]


def run_variant(name: str, overrides: list[str], out: Path, environment: dict[str, str]) -> dict:
    run_dir = out / name
    shutil.rmtree(run_dir, ignore_errors=True)  # nothing resumed: every step runs and is timed
    command = [sys.executable, "-m", "sqltune", "run", str(ROOT / "configs" / "quickstart.yaml")]
    command += [f"output_dir={run_dir}", *overrides]
    print(f"== {name}: {' '.join(command[2:])}", file=sys.stderr)
    began = time.perf_counter()
    with open(out / f"{name}.log", "w") as log:
        code = subprocess.call(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - began
    if code != 0:
        raise SystemExit(f"{name}: exit {code}, see {out / f'{name}.log'}")
    report = json.loads((run_dir / "report.json").read_text())
    return {"name": name, "overrides": overrides, "wall_s": round(wall, 1), "report": report}


def row(result: dict) -> str:
    report = result["report"]
    steps = report["run"]["timing"]
    train = report["run"]["train"]
    before, after = report.get("before", {}), report["after"]
    cells = [
        result["name"],
        f"{result['wall_s']:.0f}",
        *(f"{steps.get(k, 0):.0f}" for k in ("train_s", "before_s", "after_s")),
        f"{train.get('train_tokens') or 0:,}",
        report["run"].get("precision") or "-",
        f"{before.get('ex', float('nan')):.3f}",
        f"{after['ex']:.3f}",
        f"{after['ex'] - before.get('ex', 0):+.3f}",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for the variants' run dirs and logs")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help='NAME=key=value key=value ... (repeatable); default: the recipe as it is ("recipe=")',
    )
    parser.add_argument("--as-avx2", action="store_true", help="run as an AVX2-only CPU would (see above)")
    args = parser.parse_args()

    environment = dict(os.environ)
    if args.as_avx2:
        environment.update(AVX2_ENVIRONMENT)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT / "src"), environment.get("PYTHONPATH")])
    )
    args.out.mkdir(parents=True, exist_ok=True)
    convert = "from sqltune.models.embedded import embedded_model_dir; embedded_model_dir()"
    subprocess.run([sys.executable, "-c", convert], env=environment, check=True)

    variants = args.variant or ["recipe="]
    results = []
    for spec in variants:
        name, _, rest = spec.partition("=")
        results.append(run_variant(name, rest.split(), args.out, environment))
        (args.out / "quickstart.json").write_text(json.dumps(results, indent=2) + "\n")

    print(f"CPU: {cpu_line(environment)}{' (run as AVX2-only)' if args.as_avx2 else ''}")
    print(
        "| variant | wall s | train s | before s | after s | train tokens | precision | EX before | EX after | gain |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for result in results:
        print(row(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
