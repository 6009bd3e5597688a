"""`sqltune expand`: LLaMA Pro block expansion, and the layers `use_llama_pro=true` trains.

    sqltune expand num_expand=6 output_dir=models/smollm2-pro          # 30 -> 36 layers
    sqltune train ... model_name_or_path=models/smollm2-pro finetuning_type=freeze \\
        use_llama_pro=true freeze_trainable_layers=6

LLaMA Pro (Wu et al., 2024) adds capacity for a new domain (here: SQL over your schemas) without
touching what the model already knows: after every L/N of the L decoder layers a copy of the layer
before is inserted, N copies in all, and only the copies are trained. A copy whose output
projections (the attention's `o_proj`, the MLP's `down_proj`) are zero adds nothing to the residual
stream, so the expanded model computes exactly what the original did until training moves them.

The copies sit at every `stride`-th place (stride = (L + N) / N), which is how training finds them
again: `use_llama_pro=true` with `freeze_trainable_layers=N` trains layers stride-1, 2*stride-1, ...
(LLaMA-Factory's rule, so its expanded models train the same way here). Our own code: the method is
a few tensor copies on transformers' own decoder layers; the model is saved as a plain checkpoint.
"""

from __future__ import annotations

import copy
import shutil
import sys
from pathlib import Path

from sqltune.args import ExpandArguments
from sqltune.config import format_help, parse_args
from sqltune.errors import ConfigError

GROUPS = (ExpandArguments,)
ZEROED = ("o_proj", "down_proj")  # the projections that write a block's output into the residual stream


def expanded_layer_ids(num_layers: int, num_expanded: int) -> list[int]:
    """The indices of the `num_expanded` inserted layers in a model of `num_layers` (expanded) layers."""
    if num_expanded < 1 or num_layers % num_expanded:
        raise ConfigError(
            f"use_llama_pro: freeze_trainable_layers must divide the model's {num_layers} layers: give the "
            "num_expand of `sqltune expand`"
        )
    stride = num_layers // num_expanded
    return list(range(stride - 1, num_layers, stride))


def settings(model, finetuning) -> dict:
    """What the run card's `stage_settings` say about LLaMA Pro (nothing unless it was used)."""
    if not finetuning.use_llama_pro:
        return {}
    total = model.config.num_hidden_layers
    trained = expanded_layer_ids(total, finetuning.freeze_trainable_layers)
    return {
        "llama_pro": {
            "layers": total,
            "trained_layers": trained,
            "finetuning_type": finetuning.finetuning_type,
        }
    }


def decoder_layers(model):
    """The model's list of decoder layers (`model.model.layers`, as in llama-family models)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise ConfigError(
            f"expand: {type(model).__name__} keeps no decoder layers at model.layers (llama-family models do)"
        )
    return layers


def zero_output_projections(layer) -> None:
    """Zero the weights (and biases) of the layer's `o_proj` and `down_proj`: the layer becomes the identity."""
    import torch

    found = set()
    with torch.no_grad():
        for name, param in layer.named_parameters():
            hit = set(name.split(".")) & set(ZEROED)
            if hit:
                param.zero_()
                found |= hit
    if found != set(ZEROED):
        raise ConfigError(f"expand: the decoder layers have no {' and '.join(sorted(set(ZEROED) - found))}")


def check_num_expand(total: int, num_expand: int) -> int:
    """How many layers come before each copy; a user error unless `num_expand` divides `total`."""
    if not 1 <= num_expand <= total or total % num_expand:
        raise ConfigError(f"num_expand: must divide the model's {total} layers, not {num_expand}")
    return total // num_expand


def expand_layers(model, num_expand: int) -> list[int]:
    """Insert `num_expand` zero-output copies into the model's decoder layers (in place): one after
    every L/num_expand layers, copying the layer before it. Layer indices (the KV cache's
    `layer_idx`) and the config are updated; returns the indices of the copies."""
    import torch

    layers = decoder_layers(model)
    every = check_num_expand(len(layers), num_expand)
    expanded, sources, new_ids = [], [], []  # the layers, the original each copies, the copies' places
    for index, layer in enumerate(layers):
        expanded.append(layer)
        sources.append(index)
        if (index + 1) % every == 0:
            twin = copy.deepcopy(layer, memo={id(model.config): model.config})  # one shared config
            zero_output_projections(twin)
            new_ids.append(len(expanded))
            expanded.append(twin)
            sources.append(index)
    for index, layer in enumerate(expanded):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = index
    model.model.layers = torch.nn.ModuleList(expanded)
    types = getattr(model.config, "layer_types", None)
    if types:  # per-layer attention types (e.g. Qwen2): a copy has its original's
        model.config.layer_types = [types[source] for source in sources]
    model.config.num_hidden_layers = len(expanded)
    return new_ids


def run_expand(args: ExpandArguments) -> Path:
    """Load the model, expand it and save it (weights, config, tokenizer with its chat template)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from sqltune.models.embedded import resolve_model_path

    if not args.output_dir or args.num_expand is None:
        raise ConfigError(
            "give num_expand=N (copies to insert) and output_dir (where the expanded model goes)"
        )
    out = Path(args.output_dir)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise ConfigError(f"output_dir {out} is not empty; overwrite=true replaces it")
    path = resolve_model_path(args.model_name_or_path)
    config = AutoConfig.from_pretrained(path, trust_remote_code=args.trust_remote_code)
    check_num_expand(getattr(config, "num_hidden_layers", 0) or 0, args.num_expand)  # before the weights
    model = AutoModelForCausalLM.from_pretrained(path, dtype="auto", trust_remote_code=args.trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=args.trust_remote_code)
    before = len(decoder_layers(model))
    new_ids = expand_layers(model, args.num_expand)
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    print_summary(out, args, before, new_ids)
    return out


def print_summary(out: Path, args: ExpandArguments, before: int, new_ids: list[int]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"sqltune expand: {out}", show_header=False)
    table.add_row("from", f"{args.model_name_or_path} ({before} layers)")
    table.add_row("layers", f"{before + len(new_ids)}; new (zero output projections): {new_ids}")
    table.add_row(
        "train",
        f"sqltune train model_name_or_path={out} finetuning_type=freeze use_llama_pro=true "
        f"freeze_trainable_layers={len(new_ids)} ...",
    )
    Console(file=sys.stderr).print(table)


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(format_help(GROUPS, "expand"))
        return 0
    (args,) = parse_args(GROUPS, argv)
    run_expand(args)
    return 0
