"""Model loading options, their errors without a GPU, and loading a run for inference."""

import json
import shutil

import pytest
import torch

from sqltune.args import FinetuningArguments, ModelArguments
from sqltune.errors import ConfigError, SqltuneError
from sqltune.models.adapters import apply_finetuning
from sqltune.models.loading import load_for_inference, load_model, load_tokenizer
from sqltune.runcard import RunCard

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible)")


def test_dtype_attention_and_rope_scaling(tiny_model_dir):
    base = load_model(ModelArguments(model_name_or_path=str(tiny_model_dir)))
    half = load_model(ModelArguments(model_name_or_path=str(tiny_model_dir), torch_dtype="bfloat16"))
    assert next(half.parameters()).dtype == torch.bfloat16
    eager = load_model(ModelArguments(model_name_or_path=str(tiny_model_dir), attn_implementation="eager"))
    assert eager.config._attn_implementation == "eager"
    scaled = load_model(
        ModelArguments(model_name_or_path=str(tiny_model_dir), rope_scaling="linear", rope_factor=4.0)
    )
    assert scaled.config.rope_parameters["rope_type"] == "linear"
    assert scaled.config.max_position_embeddings == 4 * base.config.max_position_embeddings
    ids = torch.arange(40).unsqueeze(0)
    with torch.no_grad():
        assert not torch.allclose(base(ids).logits, scaled(ids).logits)  # positions are interpolated
        assert torch.allclose(base(ids).logits, eager(ids).logits, atol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error shown without a GPU")
def test_gpu_only_choices_fail_clearly_on_cpu(tiny_model_dir, tmp_path):
    for option in ({"quantization_bit": 4}, {"attn_implementation": "flash_attention_2"}):
        with pytest.raises(ConfigError, match="needs a CUDA GPU"):
            load_model(ModelArguments(model_name_or_path=str(tiny_model_dir), **option))
    gptq = tmp_path / "gptq"
    shutil.copytree(tiny_model_dir, gptq)
    config = json.loads((gptq / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4}
    (gptq / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="GPTQ checkpoint needs a CUDA GPU"):
        load_model(ModelArguments(model_name_or_path=str(gptq)))


def test_a_model_folder_that_is_not_there_is_one_line(tmp_path):
    with pytest.raises(SqltuneError, match=r"model_name_or_path=.*/absent: no such folder; give a local"):
        load_tokenizer(ModelArguments(model_name_or_path=str(tmp_path / "absent")))


def test_quantised_weights_need_lora():
    with pytest.raises(ConfigError, match="quantization_bit needs finetuning_type=lora"):
        apply_finetuning(
            torch.nn.Linear(2, 2),
            FinetuningArguments(finetuning_type="full"),
            ModelArguments(quantization_bit=4),
        )


@needs_cuda
@pytest.mark.gpu
def test_qlora_4bit_loads_on_gpu(tiny_model_dir):
    pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes (pip install 'sqltune[gpu]')")
    args = ModelArguments(model_name_or_path=str(tiny_model_dir), quantization_bit=4)
    model = apply_finetuning(load_model(args), FinetuningArguments(lora_rank=4), args)
    assert any("lora_A" in n for n, p in model.named_parameters() if p.requires_grad)


def test_load_for_inference_attaches_the_adapter(tiny_model_dir, tmp_path):
    args = ModelArguments(model_name_or_path=str(tiny_model_dir))
    torch.manual_seed(0)
    model = apply_finetuning(load_model(args), FinetuningArguments(lora_rank=4), args)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()  # a trained-looking adapter: changes the outputs
    run = tmp_path / "run"
    model.save_pretrained(run)
    load_tokenizer(args).save_pretrained(run)
    RunCard(
        str(tiny_model_dir), str(tiny_model_dir), "hf", "lora", arguments={"torch_dtype": "float32"}
    ).save(run)
    ids = torch.arange(1, 30).unsqueeze(0)
    loaded, tokenizer, card = load_for_inference(run)
    with torch.no_grad():
        assert torch.allclose(loaded(ids).logits, model(ids).logits, atol=1e-5)
        assert not torch.allclose(loaded(ids).logits, load_model(args)(ids).logits, atol=1e-3)
    assert card.template == "hf" and tokenizer.pad_token_id is not None
    # plain peft can load it too: the adapter config points at a real base model directory
    adapter_config = json.loads((run / "adapter_config.json").read_text())
    assert (tiny_model_dir / "config.json").samefile(
        f"{adapter_config['base_model_name_or_path']}/config.json"
    )
