"""Unsloth, Liger, the HQQ/EETQ quantisers, FSDP and GPTQ export: what runs on CPU is run (FSDP with
two torchrun processes over gloo), what needs a GPU or a package fails with one line here and is
run by the `gpu`-marked tests on a machine with CUDA."""

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sqltune.args import ExportArguments, ModelArguments
from sqltune.cli import main as cli
from sqltune.errors import ConfigError
from sqltune.export import calibration_set
from sqltune.models.loading import load_for_inference, load_model, load_tokenizer
from sqltune.models.templates import get_template
from sqltune.runcard import RunCard
from sqltune.train.methods.gpu import quantizer_implemented
from tests.tiny import train_options

SRC = Path(__file__).resolve().parents[2] / "src"
ON_CPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error shown without a GPU")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible)")


def has(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def options(model_dir, data_dir, out, *extra: str) -> list[str]:
    return train_options(
        model_dir,
        data_dir,
        out,
        *extra,
        cutoff_len=1024,
        per_device_train_batch_size=1,
        learning_rate="1e-3",
        max_steps=2,
        seed=3,
    )


def one_line_error(capsys, argv: list[str], message: str, out: Path) -> None:
    assert cli(argv) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("Loading")]
    assert len(err) == 1 and message in err[0], err
    assert not (out / "sqltune_run.json").exists()


@ON_CPU
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["use_unsloth=true"], "use_unsloth=true needs a CUDA GPU"),
        (["enable_liger_kernel=true"], "enable_liger_kernel=true (Liger's Triton kernels) needs a CUDA GPU"),
        (["use_liger_kernel=true"], "enable_liger_kernel=true (Liger's Triton kernels) needs a CUDA GPU"),
        (["quantization_bit=4"], "quantization_bit=4 needs a CUDA GPU"),
    ],
)
def test_gpu_only_keys_fail_with_one_line_on_cpu(
    tiny_model_dir, tiny_data_dir, tmp_path, capsys, extra, message
):
    out = tmp_path / "run"
    one_line_error(capsys, ["train", *options(tiny_model_dir, tiny_data_dir, out, *extra)], message, out)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["quantization_method=hqq"], "quantization_method=hqq: give quantization_bit=4 or 8"),
        (["quantization_method=gguf", "quantization_bit=4"], "quantization_method: unknown 'gguf'"),
        (["quantization_method=eetq", "quantization_bit=4"], "eetq quantises to 8 bits only"),
        (
            ["nproc_per_node=2", "fsdp=full_shard", "deepspeed=configs/deepspeed/ds_z2.json"],
            "fsdp and deepspeed are two ways to shard training: give only one of them",
        ),
    ],
)
def test_key_errors_are_one_line(tiny_model_dir, tiny_data_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    one_line_error(capsys, ["train", *options(tiny_model_dir, tiny_data_dir, out, *extra)], message, out)


@pytest.mark.skipif(has("eetq"), reason="checks the error shown without the eetq package")
def test_eetq_names_the_missing_distribution(tiny_model_dir):
    args = ModelArguments(
        model_name_or_path=str(tiny_model_dir), quantization_method="eetq", quantization_bit=8
    )
    with pytest.raises(ConfigError, match="package index does not offer"):
        load_model(args)


@pytest.mark.skipif(
    has("hqq") and quantizer_implemented("hqq"), reason="this transformers quantises with HQQ: trained below"
)
def test_hqq_fails_with_the_reason(tiny_model_dir):
    """transformers 5.24 has an HQQ quantiser class without its weight-loading operations; without
    the check it raises NotImplementedError from inside from_pretrained."""
    args = ModelArguments(
        model_name_or_path=str(tiny_model_dir), quantization_method="hqq", quantization_bit=4
    )
    reason = "cannot quantise with HQQ" if has("hqq") else "needs the package hqq"
    with pytest.raises(ConfigError, match=reason):
        load_model(args)


@pytest.mark.skipif(
    not (has("hqq") and quantizer_implemented("hqq")),
    reason="hqq is not installed, or this transformers cannot quantise with HQQ while loading",
)
def test_hqq_qlora_trains_two_steps(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "run"
    argv = options(
        tiny_model_dir, tiny_data_dir, out, "quantization_method=hqq", "quantization_bit=4", "lora_rank=4"
    )
    assert cli(["train", *argv]) == 0
    card = RunCard.load(out)
    assert math.isfinite(card.metrics["train_loss"]) and card.stage_settings["quantization"] == "hqq 4-bit"


def test_fsdp_trains_with_two_cpu_processes_and_reloads(tiny_model_dir, tiny_data_dir, tmp_path):
    """FSDP full sharding over gloo: both processes train, the gathered full model is saved and
    loads back, changed from the base and finite."""
    out = tmp_path / "fsdp"
    argv = options(
        tiny_model_dir,
        tiny_data_dir,
        out,
        "finetuning_type=full",
        "nproc_per_node=2",
        "fsdp=full_shard auto_wrap",
        'fsdp_config={"transformer_layer_cls_to_wrap": "LlamaDecoderLayer"}',
    )
    run = subprocess.run(
        [sys.executable, "-m", "sqltune", "train", *argv],
        env={
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    card = RunCard.load(out)
    assert card.metrics["processes"] == 2 and card.metrics["train_steps"] == 2
    assert math.isfinite(card.metrics["train_loss"])
    fsdp = card.stage_settings["fsdp"]
    assert fsdp["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp["transformer_cls_names_to_wrap"] == "LlamaDecoderLayer"
    assert card.arguments["fsdp"] and not card.arguments["deepspeed"]
    trained = load_file(out / "model.safetensors")
    base = load_file(tiny_model_dir / "model.safetensors")
    assert trained.keys() == base.keys()
    assert all(torch.isfinite(trained[name]).all() for name in trained)
    assert any(not torch.equal(trained[name], base[name]) for name in base)
    model, _, _ = load_for_inference(out)
    with torch.no_grad():
        assert torch.isfinite(model(torch.tensor([[1, 2, 3]])).logits).all()


@pytest.fixture
def lora_run(tiny_model_dir, tiny_data_dir, tmp_path) -> Path:
    out = tmp_path / "lora"
    assert cli(["train", *options(tiny_model_dir, tiny_data_dir, out, "lora_rank=4", "max_steps=1")]) == 0
    return out


def test_export_quantization_keys_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="give export_quantization_dataset"):
        ExportArguments(run_dir="r", export_dir="e", export_quantization_bit=4)
    with pytest.raises(ConfigError, match="export_quantization_bit: unknown '3'"):
        ExportArguments(
            run_dir="r", export_dir="e", export_quantization_bit=3, export_quantization_dataset="d"
        )


@pytest.mark.skipif(has("gptqmodel"), reason="checks the error shown without gptqmodel")
def test_gptq_export_without_gptqmodel_is_one_line(lora_run, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "export"
    argv = [
        "export",
        f"run_dir={lora_run}",
        f"export_dir={out}",
        "export_quantization_bit=4",
        "export_quantization_dataset=tiny_train",
        f"dataset_dir={tiny_data_dir}",
    ]
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "export_quantization_bit=4 (GPTQ) needs the package gptqmodel" in err[0], err
    assert not out.exists()


def test_gptq_calibration_set_is_our_prompts_encoded_as_in_training(lora_run, tiny_data_dir):
    card = RunCard.load(lora_run)
    tokenizer = load_tokenizer(ModelArguments(model_name_or_path=card.base_model), path=str(lora_run))
    template = get_template(card.template, tokenizer)
    args = ExportArguments(
        run_dir=str(lora_run),
        export_dir="unused",
        export_quantization_bit=4,
        export_quantization_dataset="tiny_train",
        dataset_dir=str(tiny_data_dir),
        export_quantization_nsamples=5,
    )
    examples = calibration_set(args, template, tokenizer)
    assert len(examples) == 5
    text = tokenizer.decode(examples[0]["input_ids"])
    assert "CREATE TABLE" in text and "SELECT" in text.upper()
    assert all(len(e["input_ids"]) == len(e["attention_mask"]) <= 1024 for e in examples)
    with pytest.raises(ConfigError, match="no record fits export_quantization_maxlen=8"):
        calibration_set(
            ExportArguments(**{**args.__dict__, "export_quantization_maxlen": 8}), template, tokenizer
        )


@pytest.mark.gpu
@pytest.mark.skipif(not has("gptqmodel"), reason="needs the gptqmodel package")
@needs_cuda
def test_gptq_export_on_gpu(lora_run, tiny_data_dir, tmp_path):
    out = tmp_path / "export"
    argv = ["export", f"run_dir={lora_run}", f"export_dir={out}", "export_quantization_bit=4"]
    assert cli([*argv, "export_quantization_dataset=tiny_train", f"dataset_dir={tiny_data_dir}"]) == 0
    card = RunCard.load(out)
    assert card.arguments["export_quantization"]["bits"] == 4
    model, _, _ = load_for_inference(out)
    assert model.config.quantization_config


@pytest.mark.gpu
@pytest.mark.skipif(not has("liger_kernel"), reason="needs the liger-kernel package")
@needs_cuda
def test_liger_kernel_trains_on_gpu(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "liger"
    assert (
        cli(["train", *options(tiny_model_dir, tiny_data_dir, out, "enable_liger_kernel=true", "bf16=true")])
        == 0
    )
    card = RunCard.load(out)
    assert card.stage_settings["liger_kernel"] is True and math.isfinite(card.metrics["train_loss"])


@pytest.mark.gpu
@pytest.mark.skipif(not has("unsloth"), reason="needs the unsloth package")
@needs_cuda
def test_unsloth_trains_on_gpu(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "unsloth"
    assert cli(["train", *options(tiny_model_dir, tiny_data_dir, out, "use_unsloth=true", "bf16=true")]) == 0
    card = RunCard.load(out)
    assert card.stage_settings["unsloth"] is True and math.isfinite(card.metrics["train_loss"])


@pytest.mark.gpu
@pytest.mark.skipif(not has("bitsandbytes"), reason="needs the bitsandbytes package")
@needs_cuda
def test_bitsandbytes_qlora_records_its_quantiser(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "qlora"
    assert (
        cli(["train", *options(tiny_model_dir, tiny_data_dir, out, "quantization_bit=4", "lora_rank=4")]) == 0
    )
    assert RunCard.load(out).stage_settings["quantization"] == "bitsandbytes 4-bit"
