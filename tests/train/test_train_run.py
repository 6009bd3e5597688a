"""`sqltune train` end to end on a tiny model: every fine-tuning type, the run directory, reloading."""

import json

import pytest
import torch
from safetensors.torch import load_file

from sqltune.args import ModelArguments
from sqltune.cli import main as cli
from sqltune.models.loading import load_for_inference, load_model
from sqltune.runcard import RunCard

LLAMA_LINEAR_LAYERS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def train(model_dir, data_dir, out, *extra: str) -> RunCard:
    argv = [
        "train",
        f"model_name_or_path={model_dir}",
        f"dataset_dir={data_dir}",
        "dataset=tiny_train",
        f"output_dir={out}",
        "cutoff_len=1024",
        "max_steps=4",
        "per_device_train_batch_size=2",
        "logging_steps=1",
        "save_strategy=no",
        "lora_rank=4",
        *extra,
    ]
    assert cli(argv) == 0
    return RunCard.load(out)


def changed(model_dir, run_model) -> set[str]:
    base = dict(load_model(ModelArguments(model_name_or_path=str(model_dir))).named_parameters())
    return {
        name
        for name, param in run_model.named_parameters()
        if name in base and not torch.equal(param.detach().float(), base[name].detach().float())
    }


def test_lora_run_directory(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "run"
    card = train(tiny_model_dir, tiny_data_dir, out, "val_size=4", "learning_rate=5e-3")
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "trainer_state.json",
        "training_loss.png",
        "train.log",
        "sqltune_run.json",
    ):
        assert (out / name).is_file(), name
    assert card.base_model == str(tiny_model_dir) and card.template == "hf"
    assert card.prompt_format == "ddl" and card.datasets == ["tiny_train"] and card.cutoff_len == 1024
    assert card.arguments["lora_rank"] == 4 and card.arguments["learning_rate"] == 5e-3
    assert card.versions["transformers"] and card.created
    metrics = card.metrics
    assert metrics["train_examples"] == 20 and metrics["eval_examples"] == 4 and "eval_loss" in metrics
    assert metrics["train_tokens_per_second"] > 0 and metrics["peak_memory_mb"] > 0
    assert metrics["train_runtime_s"] > 0 and metrics["train_loss"] > 0
    assert 0 < metrics["trainable_params"] < metrics["all_params"]
    assert "step 4" in (out / "train.log").read_text()
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert {t.rsplit(".", 1)[-1] for t in adapter["target_modules"]} == LLAMA_LINEAR_LAYERS
    model, tokenizer, loaded = load_for_inference(out)
    assert loaded == card
    assert changed(tiny_model_dir, model.merge_and_unload())  # the adapter changes the weights
    assert (
        cli(
            [
                "train",
                f"model_name_or_path={tiny_model_dir}",
                f"dataset_dir={tiny_data_dir}",
                "dataset=tiny_train",
                f"output_dir={out}",
            ]
        )
        == 2
    )  # will not train over a finished run


@pytest.mark.parametrize(
    "options, in_config",
    [
        (["use_dora=true", "eval_dataset=tiny_train", "max_samples=8"], {"use_dora": True}),
        (
            ["use_rslora=true", "lora_target=q_proj,v_proj"],
            {"use_rslora": True, "target_modules": ["q_proj", "v_proj"]},
        ),
        (["pissa_init=true", "pissa_iter=2"], {"init_lora_weights": "pissa_niter_2"}),
        (
            ["loraplus_lr_ratio=16", "additional_target=embed_tokens", "lora_dropout=0.1"],
            {"modules_to_save": ["embed_tokens"]},
        ),
    ],
)
def test_lora_variants(tiny_model_dir, tiny_data_dir, tmp_path, options, in_config):
    out = tmp_path / "run"
    train(tiny_model_dir, tiny_data_dir, out, "max_steps=2", *options)
    adapter = json.loads((out / "adapter_config.json").read_text())
    for key, value in in_config.items():
        saved = (
            sorted({v.rsplit(".", 1)[-1] for v in adapter[key]}) if isinstance(value, list) else adapter[key]
        )
        assert saved == value, key
    card = load_for_inference(out)[2]
    assert ("eval_loss" in card.metrics) == any(o.startswith("eval_dataset=") for o in options)


def test_loraplus_gives_b_matrices_a_larger_learning_rate(tiny_model_dir, tiny_data_dir, tmp_path):
    from sqltune.args import FinetuningArguments
    from sqltune.models.adapters import apply_finetuning
    from sqltune.train.arguments import TrainingArguments
    from sqltune.train.trainer import SftTrainer

    args = ModelArguments(model_name_or_path=str(tiny_model_dir))
    finetuning = FinetuningArguments(lora_rank=4, loraplus_lr_ratio=16)
    model = apply_finetuning(load_model(args), finetuning, args)
    trainer = SftTrainer(
        model=model,
        args=TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3),
        finetuning_args=finetuning,
    )
    rates = {group["lr"] for group in trainer.create_optimizer().param_groups if group["params"]}
    assert rates == {1e-3, 16e-3}


def test_lora_layers_adapts_only_the_last_layers_and_backward_stops_there(
    tiny_model_dir, tiny_data_dir, tmp_path
):
    out = tmp_path / "run"
    train(tiny_model_dir, tiny_data_dir, out, "lora_layers=1", "learning_rate=1e-2")
    adapter = load_file(out / "adapter_model.safetensors")
    assert adapter and all(".layers.1." in name for name in adapter)
    assert {name.split(".")[-2] for name in adapter} == {"lora_A", "lora_B"}
    # lora_target=all: every linear layer of that decoder layer
    assert {name.split(".layers.1.")[1].split(".")[1] for name in adapter} == LLAMA_LINEAR_LAYERS

    from sqltune.args import FinetuningArguments
    from sqltune.models.adapters import apply_finetuning

    model = apply_finetuning(
        load_model(ModelArguments(model_name_or_path=str(tiny_model_dir))),
        FinetuningArguments(lora_layers=1),
        ModelArguments(model_name_or_path=str(tiny_model_dir)),
    )
    seen = []
    first_layer = model.get_base_model().model.layers[0]
    first_layer.register_forward_hook(lambda module, inputs, output: seen.append(output[0].requires_grad))
    model(input_ids=torch.tensor([[5, 6, 7]]), labels=torch.tensor([[5, 6, 7]])).loss.backward()
    assert seen == [False]  # nothing below the adapted layer is recorded for the backward pass


@pytest.mark.parametrize("count", ["0", "3"])
def test_lora_layers_out_of_range_is_a_user_error(tiny_model_dir, tiny_data_dir, tmp_path, capsys, count):
    argv = ["train", f"model_name_or_path={tiny_model_dir}", f"dataset_dir={tiny_data_dir}"]
    argv += ["dataset=tiny_train", f"output_dir={tmp_path / 'run'}", f"lora_layers={count}"]
    assert cli(argv) == 2
    assert "lora_layers: must be between 1 and 2" in capsys.readouterr().err


def test_freeze_trains_only_the_last_layer(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "run"
    card = train(
        tiny_model_dir,
        tiny_data_dir,
        out,
        "finetuning_type=freeze",
        "freeze_trainable_layers=1",
        "freeze_trainable_modules=mlp",
        "learning_rate=1e-2",
    )
    model, _, _ = load_for_inference(out)
    changed_names = changed(tiny_model_dir, model)
    assert changed_names and all(name.startswith("model.layers.1.mlp.") for name in changed_names)
    assert card.finetuning_type == "freeze" and (out / "model.safetensors").is_file()


def test_full_finetuning_learns(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "run"
    card = train(
        tiny_model_dir,
        tiny_data_dir,
        out,
        "finetuning_type=full",
        "learning_rate=1e-2",
        "max_steps=8",
        "packing=true",
        "lr_scheduler_type=constant",
    )
    losses = [
        row["loss"]
        for row in json.loads((out / "trainer_state.json").read_text())["log_history"]
        if "loss" in row
    ]
    assert losses[-1] < losses[0] - 0.5, losses
    model, _, _ = load_for_inference(out)
    assert "model.layers.0.self_attn.q_proj.weight" in changed(tiny_model_dir, model)
    assert card.metrics["trainable_params"] == card.metrics["all_params"]
    assert set(load_file(out / "model.safetensors")) >= {"model.embed_tokens.weight"}


def test_user_errors_exit_2(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    base = [
        "train",
        f"model_name_or_path={tiny_model_dir}",
        f"dataset_dir={tiny_data_dir}",
        f"output_dir={tmp_path / 'r'}",
    ]
    assert cli([*base, "dataset=nope"]) == 2
    assert "dataset 'nope' is not registered" in capsys.readouterr().err
    assert cli([*base, "dataset=tiny_train", "resume_from_checkpoint=true"]) == 2
    assert "no checkpoint-N folder" in capsys.readouterr().err
    assert cli([*base, "dataset=tiny_train", "finetuning_type=lora", "lora_target=qq_proj"]) == 2
    assert "no module named qq_proj" in capsys.readouterr().err
