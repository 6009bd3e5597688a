"""`sqltune export`: the merged model computes what base + adapter computed, and loads anywhere."""

import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from sqltune.cli import main as cli
from sqltune.export import chat_template_jinja
from sqltune.models.loading import load_for_inference
from sqltune.models.templates import TEMPLATES
from sqltune.runcard import RunCard
from tests.infer.conftest import tiny_model_dir, tiny_run  # noqa: F401


def test_merged_logits_equal_base_plus_adapter(tiny_run, tmp_path):  # noqa: F811
    out = tmp_path / "export"
    assert cli(["export", f"run_dir={tiny_run}", f"export_dir={out}", "export_size=40KB"]) == 0
    shards = sorted(out.glob("model-*.safetensors"))
    assert len(shards) > 1 and (out / "model.safetensors.index.json").is_file()
    assert not list(out.glob("adapter_*"))
    merged = AutoModelForCausalLM.from_pretrained(out).eval()  # plain transformers, no peft
    adapted, _, _ = load_for_inference(tiny_run, torch_dtype="float32")
    ids = torch.randint(4, 300, (2, 24))
    with torch.no_grad():
        expected = adapted(ids).logits
        assert torch.allclose(merged(ids).logits, expected, atol=1e-5)
        with adapted.disable_adapter():  # the adapter matters
            assert not torch.allclose(adapted(ids).logits, expected, atol=1e-3)
    card = RunCard.load(out)
    assert card.arguments["merged_from"] == str(tiny_run) and card.finetuning_type == "full"
    reloaded, tokenizer, _ = load_for_inference(out)  # an export is a run directory too
    assert tokenizer.chat_template == AutoTokenizer.from_pretrained(tiny_run).chat_template
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, expected, atol=1e-5)


def test_export_to_half_precision_and_refusals(tiny_run, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "bf16"
    assert cli(["export", f"run_dir={tiny_run}", f"export_dir={out}", "export_dtype=bfloat16"]) == 0
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert cli(["export", f"run_dir={tiny_run}", f"export_dir={out}"]) == 2
    assert "is not empty; overwrite=true" in capsys.readouterr().err

    card = RunCard.load(tiny_run)
    quantised = tmp_path / "gptq-base"
    shutil.copytree(card.base_model, quantised)
    config = json.loads((quantised / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    (quantised / "config.json").write_text(json.dumps(config))
    argv = ["export", f"run_dir={tiny_run}", f"export_dir={tmp_path / 'q'}", f"base_model={quantised}"]
    assert cli(argv) == 2
    assert "is quantised (gptq): a LoRA adapter cannot be merged" in capsys.readouterr().err
    assert cli(["export", f"run_dir={tiny_run}", f"export_dir={tmp_path / 'x'}", "export_size=lots"]) == 2
    assert "export_size: expected GB" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["default", "llama2", "llama3", "chatml", "mistral"])
def test_registry_templates_become_equivalent_jinja(tiny_model_dir, name):  # noqa: F811
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    template = TEMPLATES[name]
    turns = [("Show all singers", "SELECT * FROM singer"), ("How many?", None)]
    system = "Answer in SQL." if template.system else None
    pieces = template.encode(tokenizer, turns, system)
    expected = tokenizer.decode([i for p, r in pieces for i in p + r])
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": turns[0][0]},
        {"role": "assistant", "content": turns[0][1]},
        {"role": "user", "content": turns[1][0]},
    ]
    tokenizer.chat_template = chat_template_jinja(template, tokenizer)
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert tokenizer.decode(tokenizer(rendered, add_special_tokens=False)["input_ids"]) == expected
