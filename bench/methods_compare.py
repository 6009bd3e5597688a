"""The training methods side by side on the quickstart data and the embedded model (issue 13).

Each method is one `sqltune train` process on the demo training set (`sqltune data source=demo
split=train`, the quickstart's compact prompts, cutoff 512) built into a temporary folder, with the
same batch, steps, seed and schedule; then `sqltune predict` on the first `--dev` demo dev questions
with the trained run, and `sqltune eval` (EX). Reported per method: the last logged training loss
(and the mean over the run), dev EX, non-padding tokens/s from the run card, and the training
process's peak resident memory (its `ru_maxrss`, read with `os.wait4` when it exits). Methods run
one at a time, each under `nice -n 5`; the load average is recorded before and after each run,
because other jobs may share the machine. Learning rates follow LLaMA-Factory's examples (LoRA,
freeze, LLaMA Pro 1e-4; full, GaLore, APOLLO, BAdam 1e-5). LLaMA Pro trains a copy of the model
expanded by `sqltune expand num_expand=6` (made once, not timed). Mixture-of-Depths is tried and its
refusal recorded.

    python bench/methods_compare.py --out runs/methods              # every method, 40 steps
    python bench/methods_compare.py --out runs/methods --steps 20 --dev 50 --only lora,galore
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
LORA = ["finetuning_type=lora", "lora_rank=16", "lora_target=all", "learning_rate=1e-4"]
FULL = ["finetuning_type=full", "learning_rate=1e-5"]
METHODS: dict[str, list[str]] = {
    "lora": LORA,
    "full": FULL,
    "galore": [*FULL, "use_galore=true", "galore_rank=16"],
    "apollo": [*FULL, "use_apollo=true", "apollo_rank=16"],
    # LLaMA-Factory's example switches every 50 steps: in 40 steps only the first layer would train
    "badam": [
        *FULL,
        "use_badam=true",
        "badam_mode=layer",
        "badam_switch_mode=ascending",
        "badam_switch_interval=1",
    ],
    "freeze": ["finetuning_type=freeze", "learning_rate=1e-4"],
    "llama_pro": [
        "finetuning_type=freeze",
        "use_llama_pro=true",
        "freeze_trainable_layers=6",
        "freeze_trainable_modules=all",
        "learning_rate=1e-4",
    ],
    "neftune_lora": [*LORA, "neftune_noise_alpha=5"],
    "mod": [*LORA, "mixture_of_depths=convert"],
}


def sqltune(*args: str) -> list[str]:
    return [sys.executable, "-m", "sqltune", *args]


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_line() -> str:
    import torch

    from sqltune.precision import cpu_description

    capability = torch.backends.cpu.get_cpu_capability()
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.get_num_threads()} threads, capability {capability}, {cpu_description()}"
    )


def run_measured(command: list[str], log: Path, environment: dict[str, str]) -> tuple[int, float, float]:
    """Run `nice -n 5 command` alone; exit code, wall seconds and the process's peak RSS in MB."""
    began = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(
            ["nice", "-n", "5", *command], stdout=handle, stderr=subprocess.STDOUT, env=environment
        )
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, time.perf_counter() - began, usage.ru_maxrss / 1024


def last_loss(run_dir: Path) -> float | None:
    state = run_dir / "trainer_state.json"
    if not state.is_file():
        return None
    losses = [e["loss"] for e in json.loads(state.read_text())["log_history"] if "loss" in e]
    return losses[-1] if losses else None


def run_method(name: str, overrides: list[str], args, data: Path, gold: Path, environment) -> dict:
    run_dir = args.out / name
    shutil.rmtree(run_dir, ignore_errors=True)
    model = args.expanded if name == "llama_pro" else args.model
    common = [
        f"model_name_or_path={model}",
        "dataset=demo_train",
        f"dataset_dir={data}",
        "cutoff_len=512",
        f"per_device_train_batch_size={args.batch}",
        f"max_steps={args.steps}",
        "lr_scheduler_type=cosine",
        f"warmup_steps={max(1, args.steps // 10)}",
        "bf16=auto",
        "logging_steps=5",
        "save_strategy=no",
        "seed=42",
        f"output_dir={run_dir}",
    ]
    result: dict = {"name": name, "overrides": overrides, "load_before": load_average()}
    print(f"== {name} (load {result['load_before']})", file=sys.stderr, flush=True)
    code, wall, rss = run_measured(
        sqltune("train", *common, *overrides), args.out / f"{name}.train.log", environment
    )
    result.update(train_exit=code, train_wall_s=round(wall, 1), peak_rss_mb=round(rss))
    if code != 0:
        lines = (args.out / f"{name}.train.log").read_text().strip().splitlines()
        result["error"] = lines[-1] if lines else f"exit {code}"
        result["load_after"] = load_average()
        return result
    metrics = json.loads((run_dir / "sqltune_run.json").read_text())["metrics"]
    result.update(
        final_loss=last_loss(run_dir),
        mean_loss=metrics.get("train_loss"),
        tokens_per_s=metrics.get("train_tokens_per_second"),
        train_s=metrics.get("train_runtime_s"),
        train_tokens=metrics.get("train_tokens"),
        trainable=metrics.get("trainable_params"),
    )
    result["load_after_train"] = load_average()
    predictions = run_dir / "predictions" / "demo_dev.jsonl"
    code, wall, _ = run_measured(
        sqltune(
            "predict",
            f"run_dir={run_dir}",
            "dataset=demo_dev",
            f"dataset_dir={data}",
            f"max_samples={args.dev}",
            "max_new_tokens=64",
            "batch_size=16",
            f"output={predictions}",
        ),
        args.out / f"{name}.predict.log",
        environment,
    )
    result["predict_wall_s"] = round(wall, 1)
    if code == 0:
        report = args.out / f"{name}.eval.json"
        entry = json.loads((data / "dataset_info.json").read_text())["demo_dev"]["sqltune"]
        subprocess.run(
            sqltune(
                "eval",
                f"pred={predictions}",
                f"gold={gold}",
                f"db_dir={entry['db_dir']}",
                f"tables={entry['tables']}",
                f"output={report}",
                "workers=1",
            ),
            env=environment,
            capture_output=True,
            check=True,
        )
        levels = json.loads(report.read_text())["summary"]["levels"]["all"]
        result.update(ex=levels["exec"]["rate"], em=levels["exact"]["rate"], dev_n=levels["count"])
    else:
        result["error"] = f"predict exit {code}"
    result["load_after"] = load_average()
    return result


def cell(value, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def table(results: list[dict]) -> list[str]:
    lines = [
        "| method | final loss (mean) | dev EX | tokens/s | peak RSS (MB) | trainable params | "
        "train s | load before -> after |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        if r["train_exit"] != 0:
            lines.append(f"| {r['name']} | refused: {r.get('error', '')} | | | | | | {r['load_before']} |")
            continue
        lines.append(
            f"| {r['name']} | {cell(r['final_loss'], '.3f')} ({cell(r['mean_loss'], '.3f')}) | "
            f"{cell(r.get('ex'), '.3f')} | {cell(r['tokens_per_s'], '.1f')} | {r['peak_rss_mb']:,} | "
            f"{cell(r['trainable'], ',')} | {cell(r['train_s'], '.0f')} | {r['load_before']} -> {r['load_after']} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for the runs, logs and results")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8, help="per_device_train_batch_size of every method")
    parser.add_argument(
        "--dev", type=int, default=100, help="demo dev questions predicted and scored (first N)"
    )
    parser.add_argument("--only", default=",".join(METHODS), help=f"comma-separated, of {','.join(METHODS)}")
    args = parser.parse_args()

    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT / "src"), environment.get("PYTHONPATH")])
    )
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    from sqltune.models.embedded import embedded_model_dir

    args.model = str(embedded_model_dir())
    data = Path(tempfile.mkdtemp(prefix="methods-data-"))
    for split in ("train", "dev"):
        subprocess.run(
            sqltune(
                "data",
                "source=demo",
                f"split={split}",
                f"output_dir={data}",
                "prompt_format=compact",
                "include_types=false",
            ),
            env=environment,
            capture_output=True,
            check=True,
        )
    gold = data / "demo_dev_gold.sql"
    examples = [json.loads(line) for line in (data / "demo_dev.examples.jsonl").read_text().splitlines()]
    gold.write_text("".join(f"{' '.join(e['sql'].split())}\t{e['db_id']}\n" for e in examples[: args.dev]))
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    args.expanded = str(args.out / "smollm2-pro6")
    if "llama_pro" in names and not Path(args.expanded, "config.json").is_file():
        subprocess.run(
            sqltune(
                "expand",
                f"model_name_or_path={args.model}",
                "num_expand=6",
                f"output_dir={args.expanded}",
                "overwrite=true",
            ),
            env=environment,
            capture_output=True,
            check=True,
        )

    header = {
        "cpu": cpu_line(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "steps": args.steps,
        "batch": args.batch,
        "dev": args.dev,
        "data": str(data),
    }
    print(f"CPU: {header['cpu']}", file=sys.stderr)
    results = []
    for name in names:
        results.append(run_method(name, METHODS[name], args, data, gold, environment))
        (args.out / "methods.json").write_text(json.dumps({**header, "results": results}, indent=2) + "\n")
        print("\n".join(table(results[-1:])[2:]), file=sys.stderr, flush=True)
    print(f"CPU: {header['cpu']}; {header['date']}; {args.steps} steps of {args.batch}; dev EX on {args.dev}")
    print("\n".join(table(results)))
    shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
