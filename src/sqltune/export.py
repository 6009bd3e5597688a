"""`sqltune export`: merge a run's LoRA adapter into its base model and save a plain transformers model.

    sqltune export run_dir=saves/quickstart export_dir=exports/quickstart
    sqltune export run_dir=saves/spider export_dir=exports/spider export_size=2 export_dtype=bfloat16

The export directory holds safetensors shards of at most `export_size` GB, the tokenizer with a
chat template that renders prompts exactly as the run was trained (the run's own template, written
as Jinja when it came from sqltune's registry), and the run card, so `sqltune predict
run_dir=<export_dir>` and any transformers-based tool load it without peft.

With `export_quantization_bit=4|8 export_quantization_dataset=<a registered dataset>` the merged
model is then GPTQ-quantised with gptqmodel, calibrated on that dataset's prompts and answers
encoded exactly as in training (`calibration_set`); without gptqmodel installed this fails with one
line before anything is loaded.

The merge is done in float32 and the result cast to `export_dtype`. A LoRA adapter cannot be merged
into quantised weights (4/8-bit bitsandbytes, GPTQ, AWQ): a QLoRA run is merged into its base loaded
unquantised, and a pre-quantised base checkpoint is refused; `base_model=` points at a 16-bit copy.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

from sqltune.args import ExportArguments
from sqltune.config import format_help, parse_args
from sqltune.errors import ConfigError
from sqltune.models.templates import Template, get_template
from sqltune.runcard import RunCard

GROUPS = (ExportArguments,)


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def chat_template_jinja(template: Template, tokenizer) -> str:
    """A Jinja chat template that renders a conversation as `template.encode` does.

    The registry templates put the assistant header at the end of the user turn, so a rendering
    already ends ready for the answer (`add_generation_prompt` changes nothing). An answer that does
    not end with one of the template's stop tokens gets the tokenizer's EOS, as in training.
    """
    user_open, user_close = template.user.split("{content}")
    answer_open, answer_close = template.assistant.split("{content}")
    system_open, system_close = (template.system or "{content}").split("{content}")
    stops = set(template.stop_token_ids(tokenizer))
    closing_ids = tokenizer(answer_close, add_special_tokens=False)["input_ids"] if answer_close else []
    eos = "" if closing_ids and closing_ids[-1] in stops else "{{ eos_token }}"
    lines = [
        "{%- set ns = namespace(system=" + _literal(template.default_system) + ", first=true) -%}",
        "{%- if messages and messages[0]['role'] == 'system' %}{% set ns.system = messages[0]['content'] %}{% endif -%}",
        "{{ bos_token }}" if template.bos else "",
        "{%- for message in messages if message['role'] != 'system' -%}",
        "{%- if message['role'] == 'user' -%}",
        "{%- if ns.first and ns.system and " + ("true" if template.system else "false") + " -%}"
        "{{ " + _literal(system_open) + " + ns.system + " + _literal(system_close) + " }}{%- endif -%}",
        "{{ " + _literal(user_open) + " + message['content'] + " + _literal(user_close) + " }}",
        "{%- set ns.first = false -%}",
        "{%- else -%}",
        "{{ " + _literal(answer_open) + " + message['content'] + " + _literal(answer_close) + " }}" + eos,
        "{%- endif -%}",
        "{%- endfor -%}",
    ]
    return "".join(lines)


def saved_config(path: str) -> dict:
    config = Path(path) / "config.json"
    return json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}


def base_is_quantised(path: str) -> str | None:
    """The quantisation method of a checkpoint's config, if it has one."""
    quant = saved_config(path).get("quantization_config")
    return quant.get("quant_method", "quantised") if quant else None


def saved_dtype(path: str) -> str:
    """The dtype a checkpoint was saved in (float32 when its config does not say)."""
    config = saved_config(path)
    dtype = config.get("dtype") or config.get("torch_dtype")
    return dtype if dtype in ("float32", "bfloat16", "float16") else "float32"


def require_gptq(args: ExportArguments) -> None:
    """GPTQ export needs gptqmodel (which quantises on its own: transformers 5 only loads GPTQ)."""
    if args.export_quantization_bit:
        import torch

        from sqltune.models.loading import require

        require(
            f"export_quantization_bit={args.export_quantization_bit} (GPTQ)",
            ("gptqmodel",),
            extra=f"gptqmodel; its releases need a newer torch than this {torch.__version__}",
        )


def calibration_set(args: ExportArguments, template: Template, tokenizer) -> list[dict]:
    """GPTQ's calibration examples: the first `export_quantization_nsamples` records of
    `export_quantization_dataset` (prompt and answer, encoded as in training, schemas shortened to
    `export_quantization_maxlen` tokens), as input_ids and attention_mask lists."""
    from sqltune.train.data import encode_samples, read_samples

    name = args.export_quantization_dataset
    samples = read_samples(args.dataset_dir, name, max_samples=args.export_quantization_nsamples)
    features, _ = encode_samples(samples, template, tokenizer, args.export_quantization_maxlen)
    if not features:
        raise ConfigError(
            f"export_quantization_dataset={name}: no record fits export_quantization_maxlen="
            f"{args.export_quantization_maxlen} tokens"
        )
    return [{"input_ids": f["input_ids"], "attention_mask": [1] * len(f["input_ids"])} for f in features]


def quantize_gptq(merged: Path, target: Path, args: ExportArguments, calibration: list[dict]) -> None:
    """GPTQ-quantise the merged model in `merged` into `target` with gptqmodel."""
    from gptqmodel import GPTQModel, QuantizeConfig

    model = GPTQModel.load(str(merged), QuantizeConfig(bits=args.export_quantization_bit, group_size=128))
    model.quantize(calibration, batch_size=1)
    model.save(str(target))


def run_export(args: ExportArguments) -> Path:
    """Merge and save; returns the export directory."""
    import torch
    from peft import PeftModel
    from transformers.utils.hub import convert_file_size_to_int

    from sqltune.infer.engine import is_quantized
    from sqltune.models.loading import load_for_inference, resolve_model_path
    from sqltune.models.multimodal import is_multimodal_run
    from sqltune.models.multimodal import load_for_inference as multimodal_loader

    if not args.run_dir or not args.export_dir:
        raise ConfigError(
            "give run_dir (a run of sqltune train) and export_dir (where the merged model goes)"
        )
    try:
        convert_file_size_to_int(args.max_shard_size)
    except ValueError:
        raise ConfigError(
            f"export_size: expected GB or a size like 500MB, got {args.export_size!r}"
        ) from None
    require_gptq(args)  # before anything is loaded
    card = RunCard.load(args.run_dir)
    out = Path(args.export_dir)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise ConfigError(f"export_dir {out} is not empty; overwrite=true replaces it")
    base = resolve_model_path(args.base_model or card.base_model)
    method = base_is_quantised(base)
    if method:
        raise ConfigError(
            f"the base model {base} is quantised ({method}): a LoRA adapter cannot be merged into quantised "
            "weights; export again with base_model=<a 16-bit copy of the same model>"
        )
    overrides = {"torch_dtype": "float32", "quantization_bit": None}
    if args.base_model:
        overrides["model_name_or_path"] = base
    multimodal = is_multimodal_run(card)  # a vision-language run: its processor stands for the tokenizer
    if multimodal and args.export_quantization_bit:
        raise ConfigError("export_quantization_bit: GPTQ export of vision-language models is not available")
    loader = multimodal_loader if multimodal else load_for_inference
    model, tokenizer, _ = loader(args.run_dir, **overrides)
    if isinstance(model, PeftModel):
        if is_quantized(model.get_base_model()):  # belt and braces: never merge into quantised weights
            raise ConfigError("the base model loaded quantised; a LoRA adapter cannot be merged into it")
        model = model.merge_and_unload()
    dtype = args.export_dtype if args.export_dtype != "auto" else saved_dtype(base)
    model = model.to(getattr(torch, dtype))
    model.config.dtype = dtype
    if card.template != "hf":
        text_tokenizer = tokenizer.tokenizer if multimodal else tokenizer
        tokenizer.chat_template = chat_template_jinja(get_template(card.template), text_tokenizer)
    calibration = None
    if args.export_quantization_bit:  # checked before the merged model is written
        calibration = calibration_set(args, get_template(card.template, tokenizer), tokenizer)
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, max_shard_size=args.max_shard_size, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    quantization = None
    if calibration is not None:
        del model
        merged, staging = staging, out.with_name(f".{out.name}.gptq.partial")
        shutil.rmtree(staging, ignore_errors=True)
        quantize_gptq(merged, staging, args, calibration)
        tokenizer.save_pretrained(staging)
        shutil.rmtree(merged)
        quantization = {
            "method": "gptq",
            "bits": args.export_quantization_bit,
            "dataset": args.export_quantization_dataset,
            "samples": len(calibration),
        }
    exported = dataclasses.replace(
        card,
        finetuning_type="full",
        base_model=str(out.resolve()),
        arguments={
            **card.arguments,
            "quantization_bit": None,
            "torch_dtype": dtype,
            "merged_from": str(args.run_dir),
            "export_quantization": quantization,
        },
    )
    exported.save(staging)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    print_summary(out, card, dtype, args.max_shard_size)
    return out


def print_summary(out: Path, card: RunCard, dtype: str, shard: str) -> None:
    from rich.console import Console
    from rich.table import Table

    shards = sorted(out.glob("*.safetensors"))
    size = sum(p.stat().st_size for p in shards) / 2**20
    table = Table(title=f"sqltune export: {out}", show_header=False)
    table.add_row(
        "from", f"{card.model_name_or_path} + {card.finetuning_type} run ({card.template} template)"
    )
    table.add_row(
        "weights", f"{len(shards)} safetensors shard(s), {size:,.1f} MiB, {dtype} (max {shard} each)"
    )
    from sqltune.models.multimodal import is_multimodal_run

    auto = "AutoModelForImageTextToText" if is_multimodal_run(card) else "AutoModelForCausalLM"
    table.add_row("use", f"sqltune predict run_dir={out} ...  or  {auto}.from_pretrained('{out}')")
    Console(file=sys.stderr).print(table)


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(format_help(GROUPS, "export"))
        return 0
    (args,) = parse_args(GROUPS, argv)
    run_export(args)
    return 0
