"""`sqltune train`: one training stage from registered datasets into a run directory.

    sqltune train configs/quickstart_lora.yaml
    sqltune train configs/spider_smollm2_lora.yaml dataset=spider_train num_train_epochs=1
    sqltune train configs/spider_smollm2_lora.yaml nproc_per_node=2     # torchrun, 2 processes
    sqltune train stage=dpo dataset=my_pairs adapter_name_or_path=saves/sft   # after SFT
    sqltune train stage=grpo dataset=demo_train adapter_name_or_path=saves/sft

`stage` is one of pt, sft (default), rm, dpo, kto, orpo, simpo, ppo, grpo; each is built by its
module of `sqltune.train` (`sqltune.args.STAGE_MODULES`), and what the stages share is in
`sqltune.train.stage`.

The run directory (`output_dir`) receives the adapter or model (`save_pretrained`), the tokenizer,
`sqltune_run.json` (the run card), `trainer_state.json`, `training_loss.png`, `train.log` and the
`checkpoint-N` folders of `save_steps`. `resume_from_checkpoint=true` continues from the latest one.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import warnings
from importlib import import_module
from pathlib import Path

from sqltune import allocator
from sqltune.args import STAGE_MODULES, DataArguments, FinetuningArguments, ModelArguments, PromptArguments
from sqltune.config import as_dict, format_help, parse_args
from sqltune.errors import ConfigError, SqltuneWarning
from sqltune.models import lean
from sqltune.runcard import RUN_CARD, RunCard, git_revision, library_versions, now
from sqltune.train.arguments import TrainingArguments
from sqltune.train.methods import expand, shift_attn
from sqltune.train.methods import gpu as gpu_methods
from sqltune.train.methods import optimizers as optimizer_methods

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
    running = allocator.loaded()
    if running != "system":
        warnings.warn(
            f"low_memory_allocator applies to glibc's malloc, and this process runs on {running} "
            f"(which keeps memory low itself; {allocator.ENV}=system starts on glibc)",
            SqltuneWarning,
            stacklevel=2,
        )
        return
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
    """Train one stage (`stage=`, see the module docstring) and write the run directory; returns the run card (None
    on processes other than the first). `extra_callbacks` are added to the Trainer (e.g. a benchmark's
    step timer)."""
    from transformers import set_seed

    from sqltune.models.adapters import trainable_summary
    from sqltune.models.loading import load_tokenizer, resolve_base
    from sqltune.models.templates import get_template
    from sqltune.train import callbacks
    from sqltune.train.stage import starting_point

    names = data_args.dataset_names
    if not names:
        raise ConfigError("dataset: give one or more registered dataset names (comma-separated)")
    stage_name = finetuning_args.stage
    if stage_name != "sft" and (data_args.val_size or data_args.eval_dataset_names):
        raise ConfigError(f"stage={stage_name}: val_size and eval_dataset are not available yet (sft only)")
    optimizer_methods.configure(finetuning_args, training_args)  # GaLore, APOLLO, BAdam, NEFTune
    gpu_methods.check(model_args, training_args)  # Unsloth, Liger, FSDP
    if model_args.shift_attn:
        shift_attn.check_stage(stage_name)
    resume = resume_target(training_args)
    check_output_dir(training_args, resume)
    model_args, started_from = starting_point(model_args)
    main_process = int(os.environ.get("RANK", "0")) == 0
    if training_args.low_memory_allocator:
        return_large_frees_to_the_system()
    output_dir = Path(training_args.output_dir)
    handler = callbacks.open_log(output_dir) if main_process else None
    progress = callbacks.ProgressFileCallback(output_dir) if main_process else None
    try:
        set_seed(training_args.seed)
        base = resolve_base(model_args)
        tokenizer = load_tokenizer(model_args)
        template = get_template(model_args.template, tokenizer)
        build = import_module(f"sqltune.train.{STAGE_MODULES[stage_name]}").build
        stage = build(model_args, data_args, finetuning_args, training_args, template, tokenizer)
        trainer = stage.trainer
        optimizer_methods.attach(trainer, finetuning_args)
        if training_args.lean_activations and training_args.lean_fused_kernels == "auto":
            trainer.add_callback(lean.fused_for_long_runs())
        trainer.add_callback(callbacks.LogFileCallback(output_dir))
        if progress is not None:
            trainer.add_callback(progress)
        for callback in extra_callbacks or []:
            trainer.add_callback(callback)
        result = trainer.train(resume_from_checkpoint=resume)
        trainer.save_model()
        trainer.save_state()
        runtime = result.metrics["train_runtime"]
        counted = getattr(trainer, "train_tokens", None)  # SftTrainer counts non-padding tokens
        tokens = _sum_over_processes(trainer, counted) if counted is not None else None
        metrics = {
            "train_loss": result.training_loss,
            "train_runtime_s": round(runtime, 3),
            "train_tokens": tokens,
            "train_tokens_per_second": round(tokens / runtime, 2) if tokens is not None and runtime else None,
            "train_steps": trainer.state.global_step,
            "train_examples": stage.train_examples,
            "eval_examples": stage.eval_examples,
            "peak_memory_mb": round(peak_memory_mb(), 1),
            "memory_allocator": allocator.loaded(),
            "processes": trainer.accelerator.num_processes,
            **trainable_summary(trainer.model),
        }
        signals = stage.signals()
        if signals:  # e.g. DPO's reward margin, GRPO's reward and execution outcomes
            metrics["stage_signals"] = signals
        if stage.eval_examples:
            metrics.update({k: v for k, v in trainer.evaluate().items() if k == "eval_loss"})
        if not trainer.is_world_process_zero():
            return None
        prompt_args = stage.prompt_args or prompt_arguments_of(started_from)
        settings = dict(stage.settings)
        settings.update(optimizer_methods.settings(trainer, finetuning_args, training_args))
        settings.update(expand.settings(trainer.model, finetuning_args))  # LLaMA Pro
        settings.update(shift_attn.settings(model_args))
        settings.update(lean.settings(trainer.model))
        settings.update(gpu_methods.settings(model_args, training_args))  # Unsloth, Liger, FSDP, quantiser
        tool_formats = {s["tool_format"] for s in stage.data_stats.values() if s.get("tool_format")}
        if tool_formats:  # agent data: tools and calls in the chat template's format or sqltune's
            settings["tool_format"] = ", ".join(sorted(tool_formats))
        if model_args.adapter_name_or_path:
            settings["started_from"] = str(Path(model_args.adapter_name_or_path).resolve())
        card = RunCard(
            base_model=base,
            model_name_or_path=model_args.model_name_or_path,
            template=template.name,
            finetuning_type=finetuning_args.finetuning_type,
            stage=stage_name,
            stage_settings=settings,
            prompt_format=prompt_args.prompt_format if prompt_args else None,
            prompt_options=prompt_args.__dict__.copy() if prompt_args else {},
            datasets=names,
            dataset_dir=str(Path(data_args.dataset_dir).resolve()),
            cutoff_len=data_args.cutoff_len,
            arguments=as_dict(model_args, data_args, finetuning_args, training_args),
            data_stats=stage.data_stats,
            precision=training_precision(training_args),
            metrics=metrics,
            versions=library_versions(),
            git_revision=git_revision(),
            created=now(),
        )
        card.save(output_dir)
        callbacks.plot_loss(trainer.state.log_history, output_dir / callbacks.PLOT_FILE)
        if stage_name != "sft":  # the stage's own signals over the steps (reward, margins, KL...)
            logged = {key for row in trainer.state.log_history for key in row}
            keys = [k for k in logged if k in signals or k.startswith("execution/")]
            plot = output_dir / callbacks.SIGNALS_PLOT_FILE
            callbacks.plot_signals(trainer.state.log_history, sorted(keys), plot)
        print_summary(card, output_dir)
        if progress is not None:
            progress.finish()
        return card
    except BaseException as err:
        if progress is not None:
            progress.fail(err)
        raise
    finally:
        if handler is not None:
            callbacks.close_log(handler)


def prompt_arguments_of(card: RunCard | None) -> PromptArguments | None:
    """The prompt format of the run a stage continues (for data that does not record one)."""
    if card is None or not card.prompt_format:
        return None
    fields = PromptArguments.__dataclass_fields__
    return PromptArguments(**{k: v for k, v in card.prompt_options.items() if k in fields})


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
    table.add_row("stage", card.stage)
    if card.precision:
        table.add_row("precision", f"{card.precision['used']} on {card.precision['device']}")
    table.add_row("examples", f"{m['train_examples']} train, {m['eval_examples']} eval")
    table.add_row("schemas shortened / dropped", f"{shortened} / {dropped} (cutoff_len {card.cutoff_len})")
    table.add_row("steps", str(m["train_steps"]))
    if m.get("train_tokens") is not None:
        table.add_row("tokens (non-padding)", f"{m['train_tokens']:,}")
    table.add_row("time", f"{m['train_runtime_s']:.1f} s")
    if m.get("train_tokens_per_second") is not None:
        table.add_row("tokens/s", f"{m['train_tokens_per_second']:,.1f}")
    for key, value in m.get("stage_signals", {}).items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
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
    optimizer_methods.check_combinations(finetuning_args, training_args)  # before launching processes
    gpu_methods.check(model_args, training_args)
    if training_args.nproc_per_node > 1 and "LOCAL_RANK" not in os.environ:
        return launch(argv, training_args.nproc_per_node)
    if training_args.deepspeed:
        deepspeed_environment()
    run_train(model_args, data_args, finetuning_args, training_args)
    return 0
