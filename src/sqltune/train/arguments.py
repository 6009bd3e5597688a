"""The training argument group: transformers' `Seq2SeqTrainingArguments`, with sqltune's defaults.

Every Trainer option (learning rate, epochs, batch size, `save_steps`, `deepspeed`, `bf16`,
`gradient_checkpointing`...) works as documented by transformers. Only defaults change, plus
`nproc_per_node` (launch several processes with torchrun) and `overwrite_output_dir`, and `bf16`
also takes `auto` (bf16 only where the hardware computes it fast: `sqltune.precision`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import Seq2SeqTrainingArguments

from sqltune.errors import ConfigError


@dataclass
class TrainingArguments(Seq2SeqTrainingArguments):
    output_dir: str | None = field(default="saves/run", metadata={"help": "the run directory"})
    bf16: bool | str = field(
        default=False,
        metadata={
            "help": "bfloat16 compute: true, false, or auto (a GPU with bf16, a CPU with native bf16 "
            "instructions; float32 elsewhere)"
        },
    )
    logging_steps: float = field(default=5, metadata={"help": "log every N steps"})
    report_to: None | str | list[str] = field(default="none", metadata={"help": "integrations to report to"})
    train_sampling_strategy: str = field(
        default="group_by_length",
        metadata={"help": "random, sequential, group_by_length (less padding) or batch_rebalance"},
    )
    ddp_find_unused_parameters: bool | None = field(
        default=False, metadata={"help": "DDP: look for parameters without gradients (slower)"}
    )
    prediction_loss_only: bool = field(default=True, metadata={"help": "evaluation computes the loss only"})
    save_only_model: bool = field(default=False, metadata={"help": "checkpoints without optimizer state"})
    nproc_per_node: int = field(
        default=1, metadata={"help": "processes to launch with torchrun (data parallel; gloo on CPU)"}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "train into an output_dir that already holds a run"}
    )
    low_memory_allocator: bool = field(
        default=False,
        metadata={
            "help": "CPU on glibc's malloc (SQLTUNE_ALLOCATOR=system): return freed activations to "
            "the system at once (less peak RSS, ~40% slower; tcmalloc, the default where installed, "
            "keeps memory lower at full speed)"
        },
    )
    lean_activations: bool = field(
        default=True,
        metadata={
            "help": "keep less for the backward pass: RMSNorm and SwiGLU that recompute their "
            "element-wise work, the down projection's input recomputed, grouped-query attention "
            "without repeated key/value heads (CPU); Llama, Qwen2/3, Mistral (LoRA bf16 at batch "
            "8 x 512: 1.66 instead of 3.2 GB kept for the backward pass)"
        },
    )
    lean_fused_kernels: bool | str = field(
        default="auto",
        metadata={
            "help": "with lean_activations on the CPU: compile their element-wise work into fused "
            "kernels (torch.compile; about 12 s once per process, then 12% faster bf16 steps; a C++ "
            "compiler is needed, else a warning and plain operations); auto: for runs of at least "
            "50 optimizer steps"
        },
    )

    def __post_init__(self) -> None:
        from sqltune.precision import parse_bf16, resolve_training_bf16

        # what the user asked for (true/false/auto) is kept for the run card; `bf16` becomes the
        # decision, a plain bool, before transformers sees it
        self.bf16_requested = parse_bf16(self.bf16)
        self.bf16 = resolve_training_bf16(self.bf16_requested, self.fp16)
        if self.lean_fused_kernels not in (True, False, "auto"):
            raise ConfigError(
                f"lean_fused_kernels: expected true, false or auto, got {self.lean_fused_kernels!r}"
            )
        # bf16 on a machine without a GPU means bf16 autocast on the CPU (much faster than float32
        # on CPUs with bf16 instructions); transformers wants that asked for with use_cpu.
        import torch

        if (self.bf16 or self.fp16) and not torch.cuda.is_available():
            self.use_cpu = True
        super().__post_init__()
