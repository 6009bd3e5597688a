"""Speed of `sqltune train stage=grpo` on this CPU: seconds per step, completions per second, and
where a step's time goes (sampling the completions, scoring them by execution, the update).

    python bench/grpo_speed.py --run-dir runs/qs/final --dataset-dir runs/qs/final/data \
        --out runs/grpo-speed --steps 6 --batch 16 --generations 8

It continues the given SFT run (LoRA) on its demo_train questions, as `configs/quickstart_rl.yaml`
does, with `max_completion_length` 64. Sampling is timed by wrapping the policy's `generate`, the
execution reward by wrapping `ExecutionReward.__call__`; the update is the rest of the step. The
first `--warmup` steps are left out of the averages. Run it alone on the machine: the figures are
wall times. Prints one JSON object and writes it to `<out>/grpo_speed.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH))

SPENT = {"generate": 0.0, "reward": 0.0, "completions": 0}


def timed(function, key: str, count=None):
    def wrapper(*args, **kwargs):
        began = time.perf_counter()
        try:
            result = function(*args, **kwargs)
        finally:
            SPENT[key] += time.perf_counter() - began
        if count is not None:
            SPENT["completions"] += count(args, kwargs, result)
        return result

    return wrapper


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run-dir", required=True, help="the SFT run to continue (LoRA)")
    parser.add_argument("--dataset-dir", required=True, help="folder holding demo_train (with its db_dir)")
    parser.add_argument("--dataset", default="demo_train")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16, help="completions per step")
    parser.add_argument("--generations", type=int, default=8, help="completions per question")
    parser.add_argument("--max-completion-length", type=int, default=64)
    args = parser.parse_args()

    from transformers import TrainerCallback

    from sqltune.config import parse_args
    from sqltune.precision import cpu_description
    from sqltune.train.command import GROUPS, run_train
    from sqltune.train.rewards import ExecutionReward
    from step_timer import StepTimer

    ExecutionReward.__call__ = timed(
        ExecutionReward.__call__, "reward", lambda a, k, result: len(result)
    )  # one score per completion

    class PerStep(TrainerCallback):
        """The sampling and reward seconds of each step (after the policy's generate is wrapped)."""

        def __init__(self) -> None:
            self.rows: list[dict] = []
            self.mark = dict(SPENT)

        def on_train_begin(self, targs, state, control, model=None, **kwargs):
            model.generate = timed(model.generate, "generate")

        def on_step_end(self, targs, state, control, **kwargs):
            self.rows.append({k: SPENT[k] - self.mark[k] for k in SPENT})
            self.mark = dict(SPENT)

    timer, per_step = StepTimer(args.warmup), PerStep()
    out = Path(args.out)
    argv = [
        "stage=grpo",
        f"dataset={args.dataset}",
        f"dataset_dir={args.dataset_dir}",
        f"adapter_name_or_path={args.run_dir}",
        f"output_dir={out / 'run'}",
        "overwrite_output_dir=true",
        "cutoff_len=512",
        f"max_completion_length={args.max_completion_length}",
        f"per_device_train_batch_size={args.batch}",
        f"num_generations={args.generations}",
        f"max_steps={args.warmup + args.steps}",
        "learning_rate=1e-4",
        "logging_steps=1",
        "save_strategy=no",
        "bf16=auto",
        "seed=42",
    ]
    card = run_train(*parse_args(GROUPS, argv), extra_callbacks=[timer, per_step])
    steady = per_step.rows[args.warmup :]
    step_s = timer.result()["step_time_s"]
    generate_s = sum(r["generate"] for r in steady) / len(steady)
    reward_s = sum(r["reward"] for r in steady) / len(steady)
    completions = sum(r["completions"] for r in steady) / len(steady)
    result = {
        "cpu": cpu_description(),
        "precision": card.precision.get("used"),
        "steps_timed": len(steady),
        "completions_per_step": completions,
        "seconds_per_step": step_s,
        "completions_per_second": round(completions / step_s, 3),
        "generate_s_per_step": round(generate_s, 2),
        "reward_s_per_step": round(reward_s, 3),
        "update_s_per_step": round(step_s - generate_s - reward_s, 2),
        "generate_share": round(generate_s / step_s, 3),
        "mean_completion_tokens": card.metrics.get("stage_signals", {}).get("completions/mean_length"),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "grpo_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
