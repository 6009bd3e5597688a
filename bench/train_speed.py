"""Training speed and memory: sqltune against LLaMA-Factory on the same model, records and shapes.

Both train LoRA r=16 on every linear layer of the embedded SmolLM2-135M-Instruct, on the same
random sample of Spider train records (DB-GPT-Hub prompts), cutoff_len 512, batch 8, one process on
the CPU. Each variant runs in its own process; the first `--warmup` steps are not timed. Reported:
non-padding tokens per second over the timed steps, mean step time, non-padding tokens per step and
the process's peak resident memory. sqltune variants run on the allocator `sqltune train` would
start on (`SQLTUNE_ALLOCATOR`, default tcmalloc when installed; the "glibc" variants on glibc), and
the table says which; LLaMA-Factory runs on glibc, its own default.

    # records (once): sqltune data source=spider data_dir=../shared/data/spider split=train output_dir=runs/bench-data
    python bench/train_speed.py --data runs/bench-data
    python bench/train_speed.py --data runs/bench-data --only "sqltune bf16" --steps 4
    python bench/train_speed.py --data runs/bench-data --lf-python path/to/lf-venv/bin/python

LLaMA-Factory runs from a venv of its own (`pip install llamafactory==0.9.5` there): the Python given
by `--lf-python` (default `$SQLTUNE_LF_PYTHON`). Without one, its variants are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SRC = BENCH.parent / "src"
sys.path.insert(0, str(SRC))

from sqltune import allocator  # noqa: E402

# name -> sqltune arguments beyond the shared ones ("_loss": "full" = transformers' own loss over
# every position and the whole vocabulary, to measure what the response-only head saves;
# "_allocator": SQLTUNE_ALLOCATOR, default "auto" as for `sqltune train`: tcmalloc when installed)
SQLTUNE_VARIANTS = {
    "sqltune fp32": {},
    "sqltune bf16": {"bf16": True},
    "sqltune bf16 full-vocab loss": {"bf16": True, "_loss": "full"},
    "sqltune bf16 packing": {"bf16": True, "packing": True},
    "sqltune bf16 compile": {"bf16": True, "torch_compile": True},
    "sqltune bf16 gradient checkpointing": {"bf16": True, "gradient_checkpointing": True},
    "sqltune bf16 stock activations": {"bf16": True, "lean_activations": False},
    "sqltune bf16 unfused": {"bf16": True, "lean_fused_kernels": False},
    "sqltune fp32 unfused": {"lean_fused_kernels": False},
    # glibc's malloc, as it is and with its mmap threshold pinned at 1 MiB
    "sqltune fp32 glibc": {"_allocator": "system"},
    "sqltune bf16 glibc": {"bf16": True, "_allocator": "system"},
    "sqltune bf16 low-memory allocator": {"bf16": True, "low_memory_allocator": True, "_allocator": "system"},
    # PyTorch's CPU allocator asks for transparent huge pages on large tensors (2 MB pages: fewer faults)
    "sqltune bf16 huge pages": {"bf16": True, "_env": {"THP_MEM_ALLOC_ENABLE": "1"}, "_allocator": "system"},
    "sqltune bf16 low-memory allocator huge pages": {
        "bf16": True,
        "low_memory_allocator": True,
        "_env": {"THP_MEM_ALLOC_ENABLE": "1"},
        "_allocator": "system",
    },
    # tcmalloc returning free memory sooner; jemalloc (Debian: libjemalloc2)
    "sqltune bf16 tcmalloc release rate 10": {"bf16": True, "_env": {"TCMALLOC_RELEASE_RATE": "10"}},
    "sqltune bf16 tcmalloc aggressive decommit": {
        "bf16": True,
        "_env": {"TCMALLOC_AGGRESSIVE_DECOMMIT": "true"},
    },
    "sqltune bf16 jemalloc": {"bf16": True, "_allocator": "jemalloc"},
    "sqltune bf16 jemalloc one arena": {
        "bf16": True,
        "_allocator": "jemalloc",
        "_env": {"MALLOC_CONF": "oversize_threshold:0"},
    },
}
LF_VARIANTS = {
    "llamafactory bf16": {"bf16": True},
    "llamafactory bf16 no-gc": {"bf16": True, "disable_gradient_checkpointing": True},
    # for CPUs without native bf16 (AVX2 only), where the bf16 rows above crawl
    "llamafactory fp32": {},
    "llamafactory fp32 no-gc": {"disable_gradient_checkpointing": True},
}


def make_subset(data_dir: Path, name: str, count: int, seed: int, out: Path) -> tuple[Path, Path]:
    """The same random records for both: a sqltune dataset (with sidecars) and a LLaMA-Factory one."""
    sys.path.insert(0, str(SRC))
    from sqltune.data.records import dataset_entry, register
    from sqltune.files import read_jsonl, write_json, write_jsonl

    entry = dataset_entry(data_dir, name)
    records = read_jsonl(data_dir / entry["file_name"], "records")
    examples = read_jsonl(data_dir / entry["sqltune"]["examples"], "examples")
    chosen = sorted(random.Random(seed).sample(range(len(records)), count))
    sq_dir, lf_dir = out / "sqltune-data", out / "lf-data"
    write_jsonl(sq_dir / "bench.jsonl", (records[i] for i in chosen))
    write_jsonl(sq_dir / "bench.examples.jsonl", (examples[i] for i in chosen))
    (sq_dir / "bench.schemas.json").write_bytes((data_dir / entry["sqltune"]["schemas"]).read_bytes())
    block = {
        **entry["sqltune"],
        "examples": "bench.examples.jsonl",
        "schemas": "bench.schemas.json",
        "count": count,
    }
    register(sq_dir, "bench", {**entry, "file_name": "bench.jsonl", "sqltune": block})
    columns = {"prompt": "instruction", "query": "input", "response": "output", "history": "history"}
    write_json(
        lf_dir / "dataset_info.json",
        {"bench": {"file_name": str(sq_dir / "bench.jsonl"), "columns": columns}},
    )
    return sq_dir, lf_dir


def sqltune_worker(config: dict) -> dict:
    """Train one sqltune variant in this process and return its timings."""
    sys.path.insert(0, str(SRC))
    sys.path.insert(0, str(BENCH))
    from sqltune.config import parse_args
    from sqltune.train.command import GROUPS, run_train
    from sqltune.train.trainer import SftTrainer
    from step_timer import StepTimer, count_tokens

    options = dict(config["options"])
    if options.pop("_loss", None) == "full":
        from transformers import Trainer

        SftTrainer.compute_loss = Trainer.compute_loss
        SftTrainer.loss_is_scaled_for_ga = None
    count_tokens(SftTrainer)
    timer = StepTimer(config["warmup"])
    argv = [f"{k}={v}" for k, v in {**config["common"], **options}.items()]
    run_train(*parse_args(GROUPS, argv), extra_callbacks=[timer])
    return {**timer.result(), "allocator": allocator.loaded()}


def run_variant(name: str, args: argparse.Namespace, sq_dir: Path, lf_dir: Path, work: Path) -> dict | None:
    steps = args.warmup + args.steps
    out = work / name.replace(" ", "_")
    env = {**os.environ, "PYTHONPATH": str(BENCH)}
    if name in SQLTUNE_VARIANTS:
        options = dict(SQLTUNE_VARIANTS[name])
        env.update(options.pop("_env", {}))
        env.update(allocator.preload(options.pop("_allocator", "auto")))
        common = {
            "model_name_or_path": "smollm2-135m",
            "dataset_dir": sq_dir,
            "dataset": "bench",
            "cutoff_len": args.cutoff,
            "finetuning_type": "lora",
            "lora_rank": 16,
            "lora_target": "all",
            "per_device_train_batch_size": args.batch,
            "max_steps": steps,
            "learning_rate": 1e-4,
            "logging_steps": 1,
            "save_strategy": "no",
            "output_dir": out,
            "overwrite_output_dir": True,
            "seed": 42,
            "lean_fused_kernels": True,  # as in runs of 50 steps or more (auto), not these few
        }
        config = {
            "common": {k: str(v) for k, v in common.items()},
            "options": options,
            "warmup": args.warmup,
        }
        command = [sys.executable, __file__, "--worker", json.dumps(config)]
    else:
        if not args.lf_python or not Path(args.lf_python).is_file():
            where = f"at {args.lf_python}" if args.lf_python else "given (--lf-python or SQLTUNE_LF_PYTHON)"
            print(f"skip {name}: no LLaMA-Factory Python {where}", file=sys.stderr)
            return None
        lf_args = {
            "model_name_or_path": args.model_dir,
            "stage": "sft",
            "do_train": True,
            "finetuning_type": "lora",
            "lora_rank": 16,
            "lora_target": "all",
            "dataset": "bench",
            "dataset_dir": str(lf_dir),
            "template": "smollm2",
            "cutoff_len": args.cutoff,
            "per_device_train_batch_size": args.batch,
            "max_steps": steps,
            "learning_rate": 1e-4,
            "logging_steps": 1,
            "save_strategy": "no",
            "output_dir": str(out),
            "overwrite_output_dir": True,
            "report_to": "none",
            "use_cpu": True,
            "seed": 42,
            "bench_warmup": args.warmup,
            **LF_VARIANTS[name],
        }
        stub = work / "stubs"
        (stub / "torchaudio").mkdir(parents=True, exist_ok=True)
        (stub / "torchaudio" / "__init__.py").write_text("# import-only stand-in: audio is not used here\n")
        env["PYTHONPATH"] = f"{BENCH}{os.pathsep}{stub}"
        env["DISABLE_VERSION_CHECK"] = "1"
        command = [args.lf_python, str(BENCH / "lf_worker.py"), json.dumps(lf_args)]
    run = subprocess.run(command, env=env, capture_output=True, text=True)
    for line in run.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return {"variant": name, **json.loads(line.split(" ", 1)[1])}
    print(f"{name} failed:\n{run.stderr[-3000:]}", file=sys.stderr)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help="folder with the registered Spider train records")
    parser.add_argument("--dataset", default="spider_train")
    parser.add_argument("--samples", type=int, default=400, help="records drawn (seeded) for both systems")
    parser.add_argument("--steps", type=int, default=8, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--cutoff", type=int, default=512)
    parser.add_argument("--only", help="comma-separated variant names")
    parser.add_argument(
        "--lf-python",
        default=os.environ.get("SQLTUNE_LF_PYTHON"),
        help="the Python of a LLaMA-Factory environment (default: $SQLTUNE_LF_PYTHON)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.worker:
        print("BENCH_RESULT " + json.dumps(sqltune_worker(json.loads(args.worker))), flush=True)
        return
    if args.data is None:
        parser.error("--data is required")
    sys.path.insert(0, str(SRC))
    from sqltune.models.embedded import resolve_model_path

    args.model_dir = resolve_model_path("smollm2-135m")
    names = [*SQLTUNE_VARIANTS, *LF_VARIANTS]
    if args.only:
        names = [n.strip() for n in args.only.split(",")]
        unknown = [n for n in names if n not in SQLTUNE_VARIANTS and n not in LF_VARIANTS]
        if unknown:
            parser.error(f"unknown variants: {unknown}; known: {[*SQLTUNE_VARIANTS, *LF_VARIANTS]}")
    results = []
    with tempfile.TemporaryDirectory(prefix="train-speed-") as tmp:
        work = Path(tmp)
        sq_dir, lf_dir = make_subset(args.data, args.dataset, args.samples, 0, work)
        for name in names:
            result = run_variant(name, args, sq_dir, lf_dir, work)
            if result:
                results.append(result)
                print(json.dumps(result), flush=True)
    print(
        "\n| variant | allocator | tokens/s | step time (s) | tokens/step | peak RSS (MB) |\n"
        "| --- | --- | ---: | ---: | ---: | ---: |"
    )
    for r in results:
        print(
            f"| {r['variant']} | {r.get('allocator', 'system')} | {r['tokens_per_second']} | {r['step_time_s']} "
            f"| {r['tokens_per_step']} | {r['peak_rss_mb']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
