"""Optimizer-side training methods: GaLore, APOLLO, BAdam and NEFTune, as keys of `sqltune train`.

GaLore, APOLLO and BAdam train every weight (`finetuning_type=full`) while keeping much less
optimizer state than AdamW's two full-size moments per weight:

* GaLore (`use_galore`) projects the gradient of each targeted 2-D weight onto a rank
  `galore_rank` subspace (refreshed every `galore_update_interval` steps from an SVD of the
  gradient) and keeps Adam's moments there, so a (m x n) weight's state is (m x r) or (r x m).
* APOLLO (`use_apollo`) keeps Adam's moments of a low-rank (by default random) projection of the
  gradient only to estimate a per-channel (or per-tensor) scale, and applies that scale to the raw
  gradient: SGD-like memory, AdamW-like updates.
* BAdam (`use_badam`) is block-coordinate descent: `badam_mode=layer` trains one decoder layer at a
  time for `badam_switch_interval` steps with Adam state for that block only, every other weight
  frozen and unchanged; `badam_mode=ratio` updates a fraction `badam_update_ratio` of the entries
  of every weight, through sparse gradients.

NEFTune (`neftune_noise_alpha`, transformers' own key) adds uniform noise of scale
alpha / sqrt(length x hidden) to the input embeddings while training (never in eval mode), which
regularises supervised fine-tuning.

The libraries do the work. GaLore and APOLLO go through transformers' own optimizers
(`optim=galore_adamw[_layerwise]`, `galore_adafactor`, `galore_adamw_8bit`, `apollo_adamw[_layerwise]`
with `optim_target_modules` and `optim_args`), which import `galore_torch` and `apollo_torch`;
`configure` sets those Trainer options before a stage builds its Trainer, so TRL stages get them
too. BAdam is the `badam` package's `BlockOptimizer` / `BlockOptimizerRatio`, handed to the Trainer
through its optimizer-factory hook (`Trainer.optimizer_cls_and_kwargs`, `attach`), so whichever
stage's Trainer creates the optimizer creates this one. NEFTune is the Trainer's own. What was
used is recorded in the run card's `stage_settings` (`settings`).
"""

from __future__ import annotations

import os
import warnings
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

from sqltune.errors import ConfigError, SqltuneWarning

if TYPE_CHECKING:
    from sqltune.args import FinetuningArguments

GALORE_PROJ_TYPES = ("std", "reverse_std", "right", "left", "full")
APOLLO_PROJS = ("random", "svd")
APOLLO_PROJ_TYPES = ("std", "right", "left")
APOLLO_SCALE_TYPES = ("channel", "tensor")
BADAM_MODES = ("layer", "ratio")
BADAM_SWITCH_MODES = ("ascending", "descending", "random", "fixed")
BADAM_MASK_MODES = ("adjacent", "scatter")

# `galore_target=all` / `apollo_target=all`: every linear layer inside the decoder layers (as for
# `lora_target=all`: not the head), as a regular expression for transformers' optim_target_modules
DECODER_LINEAR = r".*\.layers\.\d+\..+"
# the user's `optim` -> the low-rank optimizer of transformers that replaces it
_ADAMW = ("adamw_torch", "adamw_torch_fused", "adamw_hf")
GALORE_OPTIMIZERS = {
    **dict.fromkeys(_ADAMW, "galore_adamw"),
    "adafactor": "galore_adafactor",
    "adamw_bnb_8bit": "galore_adamw_8bit",
    "adamw_8bit": "galore_adamw_8bit",
}
APOLLO_OPTIMIZERS = dict.fromkeys(_ADAMW, "apollo_adamw")
NEFTUNE_STAGES = ("sft", "pt")
PACKAGES = {"galore": "galore-torch", "apollo": "apollo-torch", "badam": "badam"}


def used_method(finetuning: FinetuningArguments) -> str | None:
    """Which of GaLore, APOLLO and BAdam the run uses: "galore", "apollo", "badam" or None."""
    for name in ("galore", "apollo", "badam"):
        if getattr(finetuning, f"use_{name}"):
            return name
    return None


def check_keys(finetuning: FinetuningArguments) -> None:
    """The checks that need only the fine-tuning keys (FinetuningArguments calls this)."""
    chosen = [name for name in ("use_galore", "use_apollo", "use_badam") if getattr(finetuning, name)]
    if len(chosen) > 1:
        raise ConfigError(f"{' and '.join(chosen)}: choose one of GaLore, APOLLO and BAdam")
    if chosen and finetuning.finetuning_type != "full":
        raise ConfigError(
            f"{chosen[0]}=true trains every weight: it needs finetuning_type=full, "
            f"not {finetuning.finetuning_type}"
        )
    choices = {
        "galore_proj_type": GALORE_PROJ_TYPES,
        "apollo_proj": APOLLO_PROJS,
        "apollo_proj_type": APOLLO_PROJ_TYPES,
        "apollo_scale_type": APOLLO_SCALE_TYPES,
        "badam_mode": BADAM_MODES,
        "badam_switch_mode": BADAM_SWITCH_MODES,
        "badam_mask_mode": BADAM_MASK_MODES,
    }
    for key, allowed in choices.items():
        if getattr(finetuning, key) not in allowed:
            raise ConfigError(
                f"{key}: unknown '{getattr(finetuning, key)}', choose one of {', '.join(allowed)}"
            )
    positive = ("galore_rank", "galore_update_interval", "apollo_rank", "apollo_update_interval")
    for key in (*positive, "badam_switch_interval"):
        if getattr(finetuning, key) < 1:
            raise ConfigError(f"{key}: must be >= 1")
    for key in ("galore_scale", "apollo_scale"):
        if not getattr(finetuning, key) > 0:
            raise ConfigError(f"{key}: must be > 0")
    if not 0 < finetuning.badam_update_ratio <= 1:
        raise ConfigError("badam_update_ratio: must be in (0, 1]")
    if finetuning.badam_start_block is not None and finetuning.badam_start_block < 0:
        raise ConfigError("badam_start_block: must be >= 0 (a decoder layer's index)")
    if finetuning.badam_verbose not in (0, 1, 2):
        raise ConfigError("badam_verbose: 0, 1 or 2")
    for key in ("galore_target", "apollo_target"):
        names = _names(getattr(finetuning, key))
        if not names or ("all" in names and len(names) > 1):
            raise ConfigError(f"{key}: give linear module names, comma-separated, or all")


def _names(value: str) -> list[str]:
    return [part.strip() for part in str(value).split(",") if part.strip()]


def _processes(training_args) -> int:
    return max(training_args.nproc_per_node, int(os.environ.get("WORLD_SIZE", "1")))


def check_combinations(finetuning: FinetuningArguments, training_args) -> None:
    """What these methods cannot be combined with, known before anything is loaded: the stage,
    DeepSpeed, several processes, the Trainer's own optimizer keys."""
    method = used_method(finetuning)
    stage = finetuning.stage
    alpha = training_args.neftune_noise_alpha
    if alpha is not None:
        if not alpha > 0:
            raise ConfigError("neftune_noise_alpha: must be > 0 (typical values 5 to 15)")
        if stage not in NEFTUNE_STAGES:
            raise ConfigError(
                f"neftune_noise_alpha: NEFTune is for supervised training (stage=sft or pt); stage={stage} "
                "would also add the noise where it compares with a reference or samples answers"
            )
    if method is None:
        return
    package = PACKAGES[method]
    if find_spec(package.replace("-", "_")) is None:
        raise ConfigError(f"use_{method}=true needs the {package} package: pip install 'sqltune[methods]'")
    if training_args.deepspeed:
        raise ConfigError(f"use_{method}=true does not work with DeepSpeed here: leave out deepspeed")
    layerwise = method != "badam" and getattr(finetuning, f"{method}_layerwise")
    if method == "badam" and _processes(training_args) > 1:
        raise ConfigError("use_badam=true trains in one process: leave out nproc_per_node")
    if layerwise and _processes(training_args) > 1:
        raise ConfigError(f"{method}_layerwise=true trains in one process: leave out nproc_per_node")
    if layerwise and training_args.gradient_accumulation_steps != 1:
        raise ConfigError(
            f"{method}_layerwise=true updates each weight during the backward pass: "
            "gradient_accumulation_steps must be 1"
        )
    if method == "badam" and stage in ("rm", "ppo"):  # BAdam's blocks are the decoder layers only
        head = "score" if stage == "rm" else "value"
        raise ConfigError(
            f"use_badam=true does not work with stage={stage}: its {head} head would not be trained"
        )
    if layerwise and stage == "ppo":  # the value head joins the optimizer after the per-weight hooks
        raise ConfigError(
            f"{method}_layerwise=true does not work with stage=ppo: its value head would not be trained"
        )
    if method in ("galore", "apollo"):
        if training_args.optim_args or training_args.optim_target_modules:
            raise ConfigError(
                f"use_{method}=true sets optim_args and optim_target_modules itself "
                f"(from the {method}_* keys): leave them out"
            )
        table = GALORE_OPTIMIZERS if method == "galore" else APOLLO_OPTIMIZERS
        if _optim_name(training_args) not in table:
            raise ConfigError(
                f"use_{method}=true replaces optim={_optim_name(training_args)}: "
                f"leave optim out, or choose one of {', '.join(table)}"
            )
        if table[_optim_name(training_args)].endswith("8bit"):
            import torch

            if not torch.cuda.is_available():
                raise ConfigError(
                    f"optim={_optim_name(training_args)} (GaLore's 8-bit AdamW) needs a CUDA GPU"
                )


def _optim_name(training_args) -> str:
    optim = training_args.optim
    return getattr(optim, "value", optim)


def configure(finetuning: FinetuningArguments, training_args) -> None:
    """Check the combinations, then, for GaLore and APOLLO, set the Trainer options that make
    transformers build their optimizers (before a stage builds its Trainer or TRL config)."""
    from transformers.training_args import OptimizerNames

    check_combinations(finetuning, training_args)
    method = used_method(finetuning)
    if method not in ("galore", "apollo"):
        return
    table = GALORE_OPTIMIZERS if method == "galore" else APOLLO_OPTIMIZERS
    name = table[_optim_name(training_args)]
    if getattr(finetuning, f"{method}_layerwise"):
        name += "_layerwise"
    options = {
        "rank": getattr(finetuning, f"{method}_rank"),
        "update_proj_gap": getattr(finetuning, f"{method}_update_interval"),
        "scale": getattr(finetuning, f"{method}_scale"),
        "proj_type": getattr(finetuning, f"{method}_proj_type"),
    }
    if method == "apollo":
        options.update(proj=finetuning.apollo_proj, scale_type=finetuning.apollo_scale_type)
    targets = _names(getattr(finetuning, f"{method}_target"))
    training_args.optim = OptimizerNames(name)
    training_args.optim_args = ",".join(f"{key}={value}" for key, value in options.items())
    training_args.optim_target_modules = DECODER_LINEAR if targets == ["all"] else targets
    allow_projectors_in_checkpoints(method)
    if training_args.weight_decay:  # transformers builds these optimizers' parameter groups itself
        warnings.warn(
            f"use_{method}=true: transformers' {name} applies no weight decay; "
            f"weight_decay={training_args.weight_decay} is ignored",
            SqltuneWarning,
            stacklevel=2,
        )


def allow_projectors_in_checkpoints(method: str) -> None:
    """The optimizer state in a checkpoint holds each weight's projector object (its rank, scale
    and basis matrix); torch's safe loading refuses unknown classes, so resuming would fail. These
    plain-data classes of the installed package are added to its allowed list."""
    import torch

    if method == "galore":
        from galore_torch.galore_projector import GaLoreProjector

        torch.serialization.add_safe_globals([GaLoreProjector])
    else:
        from apollo_torch.random_projector import GradientProjector
        from apollo_torch.svd_projector import GaLoreProjector as SvdProjector

        torch.serialization.add_safe_globals([GradientProjector, SvdProjector])


def projected_weights(model, target_modules: str | list[str]) -> list[str]:
    """The weights whose gradients a GaLore/APOLLO optimizer projects: the linear layers that
    transformers' own rule (`check_target_module_exists`) selects."""
    import torch
    from transformers.trainer_utils import check_target_module_exists

    return [
        f"{name}.weight"
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and check_target_module_exists(target_modules, name)
    ]


def attach(trainer, finetuning: FinetuningArguments) -> None:
    """After the stage has built its Trainer: check GaLore/APOLLO's targets against the model (one
    line instead of transformers' error at the first step), or give the Trainer BAdam's optimizer."""
    method = used_method(finetuning)
    model = trainer.model
    if method in ("galore", "apollo"):
        targets = _names(getattr(finetuning, f"{method}_target"))
        if targets == ["all"] and not projected_weights(model, DECODER_LINEAR):
            raise ConfigError(
                f"{method}_target=all: this model has no linear layers inside `.layers.N.` decoder "
                f"layers; name them ({method}_target=q_proj,v_proj,...)"
            )
        unknown = [t for t in targets if t != "all" and not projected_weights(model, [t])]
        if unknown:
            raise ConfigError(f"{method}_target: no linear layer named {', '.join(unknown)} in this model")
    elif method == "badam":
        from sqltune.models.adapters import layer_count

        start = finetuning.badam_start_block
        if finetuning.badam_mode == "layer" and start is not None and start >= layer_count(model):
            raise ConfigError(
                f"badam_start_block: must be below {layer_count(model)}, the model's layer count"
            )
        trainer.optimizer_cls_and_kwargs = (BAdamFactory, {"trainer": trainer, "finetuning": finetuning})
        if finetuning.badam_mode == "ratio":  # sparse gradients: torch's clip_grad_norm_ cannot take them
            from types import MethodType

            from badam import clip_grad_norm_old_version

            trainer.accelerator.clip_grad_norm_ = MethodType(clip_grad_norm_old_version, trainer.accelerator)


class BAdamFactory:
    """The Trainer's optimizer factory (`optimizer_cls_and_kwargs`): the Trainer calls
    `BAdamFactory()(model, **kwargs)` where it would build its own optimizer."""

    def __call__(self, model, *, trainer, finetuning: FinetuningArguments):
        import torch

        args = trainer.args
        decay = set(trainer.get_decay_parameter_names(model))
        named = list(model.named_parameters())
        groups = [
            {"params": [p for n, p in named if n in decay], "weight_decay": args.weight_decay},
            {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
        ]
        if finetuning.badam_mode == "ratio":
            from badam import BlockOptimizerRatio

            head_is_separate = any("lm_head" in name for name, _ in named)
            return BlockOptimizerRatio(
                param_groups=groups,
                named_parameters_list=named,
                update_ratio=finetuning.badam_update_ratio,
                switch_every=finetuning.badam_switch_interval,
                mask_mode=finetuning.badam_mask_mode,
                verbose=finetuning.badam_verbose,
                lr=args.learning_rate,
                betas=(args.adam_beta1, args.adam_beta2),
                eps=args.adam_epsilon,
                include_embedding=False,
                # a head tied to the embeddings has no parameter of its own to leave out
                include_lm_head=not head_is_separate,
            )
        from badam import BlockOptimizer

        if args.bf16:
            # BAdam's saving: weights in bfloat16, float32 copies (and Adam state) of the one
            # trained block only, which BlockOptimizer keeps itself
            for param in model.parameters():
                if param.dtype == torch.float32:
                    param.data = param.data.to(torch.bfloat16)
        optimizer_cls, kwargs = trainer.get_optimizer_cls_and_kwargs(args, model)
        with warnings.catch_warnings():  # float32 weights are the norm on CPUs without bf16
            warnings.filterwarnings("ignore", message="BAdam expect model to be loaded in fp16/bf16")
            optimizer = BlockOptimizer(
                base_optimizer=optimizer_cls(groups, **kwargs),
                named_parameters_list=named,
                switch_block_every=finetuning.badam_switch_interval,
                start_block=finetuning.badam_start_block,
                switch_mode=finetuning.badam_switch_mode,
                verbose=finetuning.badam_verbose,
            )
        # badam 1.4 switches after a step when global_step + 1 (global_step already counting that
        # step) is a multiple of the interval, so the first block gets one step less than the
        # others; counting from -1 gives every block exactly badam_switch_interval steps
        optimizer.global_step = -1
        return optimizer


def settings(trainer, finetuning: FinetuningArguments, training_args) -> dict[str, Any]:
    """What the run card's `stage_settings` say about these methods (only those used)."""
    out: dict[str, Any] = {}
    if training_args.neftune_noise_alpha is not None:
        out["neftune_noise_alpha"] = training_args.neftune_noise_alpha
    method = used_method(finetuning)
    if method in ("galore", "apollo"):
        keys = ["rank", "target", "update_interval", "scale", "proj_type", "layerwise"]
        if method == "apollo":
            keys += ["proj", "scale_type"]
        out[method] = {
            "optim": _optim_name(trainer.args),
            **{key: getattr(finetuning, f"{method}_{key}") for key in keys},
            "projected_weights": len(projected_weights(trainer.model, trainer.args.optim_target_modules)),
        }
    elif method == "badam":
        keys = ["mode", "switch_interval"]
        keys += (
            ["switch_mode", "start_block"]
            if finetuning.badam_mode == "layer"
            else ["update_ratio", "mask_mode"]
        )
        out["badam"] = {key: getattr(finetuning, f"badam_{key}") for key in keys}
        optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate's wrapper
        if finetuning.badam_mode == "layer" and hasattr(optimizer, "block_prefix_list"):
            out["badam"]["blocks"] = len(optimizer.block_prefix_list)
            out["badam"]["weights_dtype"] = "bfloat16" if training_args.bf16 else "float32"
    return out
