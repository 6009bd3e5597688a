"""What a training step keeps for its backward pass, tensor by tensor.

Runs the first step of the `bench/train_speed.py` setting (LoRA r=16 on every linear layer of the
embedded SmolLM2-135M-Instruct, 400 Spider train records, cutoff 512, batch 8, bf16 unless
`--fp32`) and records every tensor autograd saves during the forward pass and loss
(`torch.autograd.graph.saved_tensors_hooks`), counting each storage once. Prints the process's
resident memory before the step and after the forward pass, the total saved, and the saved
tensors grouped by shape and dtype, largest first. Model weights appear among them (saved for the
input gradients) but are not extra memory; the total says how much of it they are. The resident
memory is glibc's unless the allocator is preloaded as `sqltune train` does it
(`LD_PRELOAD=libtcmalloc_minimal.so.4 python bench/train_memory.py ...`).

    python bench/train_memory.py --data runs/bench-data            # lean activations (the default)
    python bench/train_memory.py --data runs/bench-data --stock    # the model's own modules
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH))


def resident_mb() -> dict[str, int]:
    """The process's resident memory now and at its peak (MB)."""
    from sqltune.train.command import peak_memory_mb

    status = Path("/proc/self/status").read_text().splitlines()
    now = next((int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS")), 0)
    return {"now": now, "peak": int(peak_memory_mb())}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="`sqltune data` output with spider_train")
    parser.add_argument("--dataset", default="spider_train")
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--cutoff", type=int, default=512)
    parser.add_argument("--fp32", action="store_true")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument(
        "--stock", action="store_true", help="lean_activations=false (the model's own modules)"
    )
    options = parser.parse_args()

    import torch

    import sqltune.train.trainer as trainer_module
    from sqltune.config import parse_args
    from sqltune.train.command import GROUPS, run_train
    from train_speed import make_subset

    work = Path(tempfile.mkdtemp(prefix="train-memory-"))
    data_dir, _ = make_subset(options.data, options.dataset, options.samples, 0, work)
    compute_loss = trainer_module.SftTrainer.compute_loss

    def recording(self, model, inputs, *args, **kwargs):
        saved: dict[int, tuple[int, tuple, str]] = {}

        def pack(tensor):
            storage = tensor.untyped_storage()
            saved[storage.data_ptr()] = (storage.nbytes(), tuple(tensor.shape), str(tensor.dtype))
            return tensor

        before = resident_mb()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = compute_loss(self, model, inputs, *args, **kwargs)
        after = resident_mb()  # the graph, and what it saved, is alive while `loss` is
        sizes: collections.Counter = collections.Counter()
        counts: collections.Counter = collections.Counter()
        for nbytes, shape, dtype in saved.values():
            sizes[(shape, dtype)] += nbytes
            counts[(shape, dtype)] += 1
        print(
            f"batch {tuple(inputs['input_ids'].shape)}; torch {torch.__version__}, "
            f"{torch.backends.cpu.get_cpu_capability()}"
        )
        print(
            f"resident memory before the step {before['now']} MB (peak so far {before['peak']} MB), "
            f"after the forward pass {after['now']} MB"
        )
        print(f"loss {loss.item():.3f}")
        weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
        weight_bytes = sum(s[0] for ptr, s in saved.items() if ptr in weights)
        print(
            f"saved for backward: {sum(s[0] for s in saved.values()) / 2**20:.0f} MB in {len(saved)} storages, "
            f"of which the model's own weights {weight_bytes / 2**20:.0f} MB\n"
        )
        print("| MB | tensors | shape | dtype |\n| ---: | ---: | --- | --- |")
        for (shape, dtype), nbytes in sizes.most_common(options.top):
            print(
                f"| {nbytes / 2**20:.1f} | {counts[(shape, dtype)]} | {shape} | {dtype.replace('torch.', '')} |"
            )
        raise SystemExit(0)

    trainer_module.SftTrainer.compute_loss = recording
    argv = {
        "model_name_or_path": "smollm2-135m",
        "dataset_dir": data_dir,
        "dataset": "bench",
        "cutoff_len": options.cutoff,
        "finetuning_type": "lora",
        "lora_rank": 16,
        "lora_target": "all",
        "per_device_train_batch_size": options.batch,
        "max_steps": 1,
        "save_strategy": "no",
        "output_dir": work / "run",
        "bf16": not options.fp32,
        "lean_activations": not options.stock,
    }
    run_train(*parse_args(GROUPS, [f"{key}={value}" for key, value in argv.items()]))


if __name__ == "__main__":
    main()
