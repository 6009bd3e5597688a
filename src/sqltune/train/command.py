"""`sqltune train`: supervised fine-tuning from registered datasets into a run directory.

    sqltune train configs/quickstart_lora.yaml
    sqltune train configs/spider_smollm2_lora.yaml dataset=spider_train num_train_epochs=1
    sqltune train configs/spider_smollm2_lora.yaml nproc_per_node=2     # torchrun, 2 processes

The run directory (`output_dir`) receives the adapter or model (`save_pretrained`), the tokenizer,
`sqltune_run.json` (the run card), `trainer_state.json`, `training_loss.png`, `train.log` and the
`checkpoint-N` folders of `save_steps`. `resume_from_checkpoint=true` continues from the latest one.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from sqltune.args import DataArguments, FinetuningArguments, ModelArguments
from sqltune.config import as_dict, format_help, parse_args
from sqltune.errors import ConfigError
from sqltune.runcard import RUN_CARD, RunCard, git_revision, library_versions, now
from sqltune.train.arguments import TrainingArguments

GROUPS = (ModelArguments, DataArguments, FinetuningArguments, TrainingArguments)


def resume_target(training_args: TrainingArguments) -> bool | str | None:
    """`resume_from_checkpoint`: true = the latest checkpoint in output_dir, or a checkpoint path."""
    value = training_args.resume_from_checkpoint
    if value is None or str(value).lower() in ("false", "no", "0", ""):
        return None
    if str(value).lower() in ("true", "yes", "1", "latest"):
        from transformers.trainer_utils import get_last_checkpoint

        if (
            not Path(training_args.output_dir).is_dir()
            or get_last_checkpoint(training_args.output_dir) is None
        ):
            raise ConfigError(
                f"resume_from_checkpoint=true: no checkpoint-N folder in {training_args.output_dir}"
            )
        return True
    if not Path(value).is_dir():
        raise ConfigError(f"resume_from_checkpoint: no such checkpoint folder: {value}")
    return str(value)


def check_output_dir(training_args: TrainingArguments, resume: bool | str | None) -> None:
    out = Path(training_args.output_dir)
    holds_run = (out / RUN_CARD).is_file() or any(out.glob("checkpoint-*"))
    if holds_run and not resume and not training_args.overwrite_output_dir:
        raise ConfigError(
            f"output_dir {out} already holds a run: resume_from_checkpoint=true continues it, "
            "overwrite_output_dir=true trains over it"
        )


def return_large_frees_to_the_system() -> None:
    """Make glibc give every large allocation its own memory mapping.

    glibc raises its mmap threshold (up to 32 MiB) each time a mapped block is freed, after which
    large blocks come from its heap. Training frees and allocates activations of many sizes every
    step, so the heap fragments and the resident memory grows far past what is alive: SmolLM2 LoRA
    at batch 8 x 512 peaked at 6.2 GB instead of about 4 GB. Pinning the threshold at 1 MiB keeps
    each large tensor in its own mapping, returned to the system when freed, at the price of
    mapping and zeroing fresh pages for every activation (about a third slower on this machine),
    hence the option `low_memory_allocator`.
    """
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return  # not glibc, or the user chose a threshold
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # -3 = M_MMAP_THRESHOLD


def peak_memory_mb() -> float:
    """Peak GPU memory allocated when training on CUDA, else the process's peak resident set size."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_train(
    model_args: ModelArguments,
    data_args: DataArguments,
    finetuning_args: FinetuningArguments,
    training_args: TrainingArguments,
    extra_callbacks: list | None = None,
) -> RunCard | None:
    """Train and write the run directory; returns the run card (None on processes other than the first).
    `extra_callbacks` are added to the Trainer (e.g. a benchmark's step timer)."""
    from transformers import ProgressCallback, set_seed
    from transformers.trainer_utils import IntervalStrategy

    from sqltune.models.adapters import apply_finetuning, compute_under_autocast, trainable_summary
    from sqltune.models.loading import load_model, load_tokenizer, resolve_base
    from sqltune.models.templates import get_template
    from sqltune.train import callbacks
    from sqltune.train.data import build_features, collator, prompt_settings, split_validation, to_dataset
    from sqltune.train.trainer import SftTrainer

    names = data_args.dataset_names
    if not names:
        raise ConfigError("dataset: give one or more registered dataset names (comma-separated)")
    resume = resume_target(training_args)
    check_output_dir(training_args, resume)
    main_process = int(os.environ.get("RANK", "0")) == 0
    if training_args.low_memory_allocator:
        return_large_frees_to_the_system()
    output_dir = Path(training_args.output_dir)
    handler = callbacks.open_log(output_dir) if main_process else None
    try:
        set_seed(training_args.seed)
        base = resolve_base(model_args)
        tokenizer = load_tokenizer(model_args)
        template = get_template(model_args.template, tokenizer)
        prompt_args = prompt_settings(data_args.dataset_dir, names + data_args.eval_dataset_names)
        features, data_stats = build_features(data_args, names, template, tokenizer)
        train_features, eval_features = split_validation(features, data_args.val_size, training_args.seed)
        if data_args.eval_dataset_names:
            eval_features, eval_stats = build_features(
                data_args, data_args.eval_dataset_names, template, tokenizer
            )
            data_stats.update({f"eval:{k}": v for k, v in eval_stats.items()})
        if eval_features and training_args.eval_strategy == IntervalStrategy.NO:
            training_args.eval_strategy = IntervalStrategy.STEPS
            training_args.eval_steps = training_args.eval_steps or training_args.logging_steps
        half = "bfloat16" if training_args.bf16 else "float16" if training_args.fp16 else None
        # frozen weights in the compute dtype: half the memory and no casts every step
        load_args = (
            replace(model_args, torch_dtype=half) if half and model_args.torch_dtype == "auto" else model_args
        )
        model = apply_finetuning(load_model(load_args), finetuning_args, model_args)
        if half:
            compute_under_autocast(model)
        if training_args.gradient_checkpointing:
            model.enable_input_require_grads()  # frozen embeddings: checkpointed layers still need grads
            training_args.gradient_checkpointing_kwargs = training_args.gradient_checkpointing_kwargs or {
                "use_reentrant": False
            }
        trainer = SftTrainer(
            model=model,
            args=training_args,
            train_dataset=to_dataset(train_features),
            eval_dataset=to_dataset(eval_features) if eval_features else None,
            data_collator=collator(tokenizer, data_args.packing),
            processing_class=tokenizer,
            finetuning_args=finetuning_args,
        )
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(callbacks.TokenProgressCallback(trainer))
        trainer.add_callback(callbacks.LogFileCallback(output_dir))
        for callback in extra_callbacks or []:
            trainer.add_callback(callback)
        result = trainer.train(resume_from_checkpoint=resume)
        trainer.save_model()
        trainer.save_state()
        tokens = _sum_over_processes(trainer, trainer.train_tokens)
        runtime = result.metrics["train_runtime"]
        metrics = {
            "train_loss": result.training_loss,
            "train_runtime_s": round(runtime, 3),
            "train_tokens": tokens,
            "train_tokens_per_second": round(tokens / runtime, 2) if runtime else None,
            "train_steps": trainer.state.global_step,
            "train_examples": len(train_features),
            "eval_examples": len(eval_features),
            "peak_memory_mb": round(peak_memory_mb(), 1),
            "processes": trainer.accelerator.num_processes,
            **trainable_summary(model),
        }
        if eval_features:
            metrics.update({k: v for k, v in trainer.evaluate().items() if k == "eval_loss"})
        if not trainer.is_world_process_zero():
            return None
        card = RunCard(
            base_model=base,
            model_name_or_path=model_args.model_name_or_path,
            template=template.name,
            finetuning_type=finetuning_args.finetuning_type,
            stage=finetuning_args.stage,
            prompt_format=prompt_args.prompt_format if prompt_args else None,
            prompt_options=prompt_args.__dict__.copy() if prompt_args else {},
            datasets=names,
            dataset_dir=str(Path(data_args.dataset_dir).resolve()),
            cutoff_len=data_args.cutoff_len,
            arguments=as_dict(model_args, data_args, finetuning_args, training_args),
            data_stats=data_stats,
            precision=training_precision(training_args),
            metrics=metrics,
            versions=library_versions(),
            git_revision=git_revision(),
            created=now(),
        )
        card.save(output_dir)
        callbacks.plot_loss(trainer.state.log_history, output_dir / callbacks.PLOT_FILE)
        print_summary(card, output_dir)
        return card
    finally:
        if handler is not None:
            callbacks.close_log(handler)


def training_precision(training_args) -> dict:
    """What the run card says about precision: asked for, used, and the hardware that decided it."""
    import torch

    from sqltune.precision import cpu_description, precision_name

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({cpu_description()})"
    requested = getattr(training_args, "bf16_requested", training_args.bf16)
    return {
        "requested_bf16": requested,
        "used": precision_name(training_args.bf16, training_args.fp16),
        "device": device,
    }


def _sum_over_processes(trainer, value: int) -> int:
    import torch

    if trainer.accelerator.num_processes == 1:
        return value
    total = trainer.accelerator.gather(torch.tensor([value], device=trainer.accelerator.device)).sum()
    return int(total)


def print_summary(card: RunCard, output_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    m = card.metrics
    shortened = sum(s.get("shortened", 0) for s in card.data_stats.values())
    dropped = sum(s.get("dropped_too_long", 0) for s in card.data_stats.values())
    table = Table(title=f"sqltune train: {output_dir}", show_header=False)
    table.add_row("model", f"{card.model_name_or_path} ({card.finetuning_type}, template {card.template})")
    if card.precision:
        table.add_row("precision", f"{card.precision['used']} on {card.precision['device']}")
    table.add_row("examples", f"{m['train_examples']} train, {m['eval_examples']} eval")
    table.add_row("schemas shortened / dropped", f"{shortened} / {dropped} (cutoff_len {card.cutoff_len})")
    table.add_row("steps", str(m["train_steps"]))
    table.add_row("tokens (non-padding)", f"{m['train_tokens']:,}")
    table.add_row("time", f"{m['train_runtime_s']:.1f} s")
    table.add_row("tokens/s", f"{m['train_tokens_per_second']:,.1f}")
    table.add_row("peak memory", f"{m['peak_memory_mb']:,.0f} MB")
    table.add_row("train loss", f"{m['train_loss']:.4f}")
    if "eval_loss" in m:
        table.add_row("eval loss", f"{m['eval_loss']:.4f}")
    Console(file=sys.stderr).print(table)
    import logging

    logging.getLogger("sqltune.train").info("summary: %s", m)


def launch(argv: list[str], processes: int) -> int:
    """Re-run this command under torchrun with `processes` processes (each sees LOCAL_RANK)."""
    import sqltune

    env = dict(os.environ)
    package_root = str(Path(sqltune.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}"]
    command += ["-m", "sqltune", "train", *argv]
    return subprocess.call(command, env=env)


def use_cpu_processes() -> None:
    """Under torchrun without a GPU, tell accelerate to run one CPU process per rank (gloo); it
    otherwise sees no device to parallelise over and trains each process alone."""
    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
        os.environ.setdefault("ACCELERATE_USE_CPU", "true")


def deepspeed_environment() -> None:
    """DeepSpeed always initialises torch.distributed. Run alone (no launcher), it would look for
    MPI to learn its rank; give it the environment of a one-process group instead, and name the CPU
    accelerator when there is no GPU."""
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "RANK" not in os.environ:
        import socket

        with socket.socket() as probe:  # a free port for the one-process rendezvous
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        defaults = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
        for key, value in {**defaults, "MASTER_PORT": str(port)}.items():
            os.environ.setdefault(key, value)


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(format_help(GROUPS, "train"))
        return 0
    use_cpu_processes()
    model_args, data_args, finetuning_args, training_args = parse_args(GROUPS, argv)
    if training_args.nproc_per_node > 1 and "LOCAL_RANK" not in os.environ:
        return launch(argv, training_args.nproc_per_node)
    if training_args.deepspeed:
        deepspeed_environment()
    run_train(model_args, data_args, finetuning_args, training_args)
    return 0
