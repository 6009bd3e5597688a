"""Architecture methods on tiny random models built here: LLaMA Pro (`sqltune expand`, `use_llama_pro`),
LongLoRA's S2-Attn (`shift_attn`) and Mixture-of-Depths (`mixture_of_depths`, refused with its reason)."""

import copy
import importlib.util
import json
import math
import sys

import pytest
import torch
from safetensors.torch import load_file

from sqltune.cli import main as cli
from sqltune.models.loading import load_for_inference
from sqltune.runcard import RunCard
from sqltune.train.methods import shift_attn
from sqltune.train.methods.expand import expand_layers
from tests.tiny import build_tokenizer, train_options

ZEROED = ("o_proj", "down_proj")


def tiny_config(model_type: str = "llama", layers: int = 4):
    from transformers import AutoConfig

    return AutoConfig.for_model(
        model_type,
        vocab_size=320,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )


def save_model(folder, config, seed: int = 0):
    """A random model of `config` with the tiny tokenizer (its ChatML template), saved in `folder`."""
    from transformers import AutoModelForCausalLM

    tokenizer = build_tokenizer()
    config.vocab_size = len(tokenizer)
    config.pad_token_id, config.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def four_layers(tmp_path_factory):
    return save_model(tmp_path_factory.mktemp("four-layers"), tiny_config(layers=4))


@pytest.fixture(scope="module")
def expanded(four_layers, tmp_path_factory):
    out = tmp_path_factory.mktemp("expanded") / "model"
    assert cli(["expand", f"model_name_or_path={four_layers}", "num_expand=2", f"output_dir={out}"]) == 0
    return out


def load(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder).eval()


def batch(seed: int = 1, length: int = 20, vocab: int = 300):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (2, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, length - 6 :] = 0  # the second row is padded on the right
    return ids, mask


def train(model_dir, data_dir, out, *extra: str) -> int:
    options = train_options(
        model_dir, data_dir, out, *extra, max_steps=3, per_device_train_batch_size=2, bf16="false"
    )
    return cli(["train", *options])


def one_line_error(capsys) -> str:
    """The error a command ended with: one line, the last one, no traceback (library progress bars,
    such as transformers' weight loading, may come before it)."""
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if ": error: " in line]
    assert errors == lines[-1:] and not any("Traceback" in line for line in lines), lines
    return errors[0]


# ---- LLaMA Pro -------------------------------------------------------------------------------------


def test_expand_inserts_zeroed_copies_and_keeps_the_logits(four_layers, expanded):
    original, grown = load(four_layers), load(expanded)
    assert grown.config.num_hidden_layers == 6
    # layers 0 1 [copy of 1] 2 3 [copy of 3]
    source = {0: 0, 1: 1, 2: 1, 3: 2, 4: 3, 5: 3}
    old = original.state_dict()
    for name, value in grown.state_dict().items():
        if ".layers." not in name:
            assert torch.equal(value, old[name]), name
            continue
        index = int(name.split(".layers.")[1].split(".")[0])
        twin = name.replace(f".layers.{index}.", f".layers.{source[index]}.")
        zeroed = index in (2, 5) and any(f".{z}." in name for z in ZEROED)
        assert torch.equal(value, torch.zeros_like(value) if zeroed else old[twin]), name
    ids, mask = batch()
    with torch.no_grad():
        before = original(ids, attention_mask=mask).logits
        after = grown(ids, attention_mask=mask).logits
    assert torch.allclose(before, after, rtol=0, atol=1e-6)
    tokenizer_config = json.loads((expanded / "tokenizer_config.json").read_text())
    template = tokenizer_config.get("chat_template") or (expanded / "chat_template.jinja").read_text()
    assert "<|im_start|>" in template


def test_expand_renumbers_the_layers_for_the_kv_cache(four_layers):
    original, grown = load(four_layers), load(four_layers)
    assert expand_layers(grown, 4) == [1, 3, 5, 7]
    indices = [layer.self_attn.layer_idx for layer in grown.model.layers]
    assert indices == list(range(8)) and grown.config.num_hidden_layers == 8
    ids = torch.randint(5, 300, (1, 6), generator=torch.Generator().manual_seed(3))
    options = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
    options.update(output_logits=True, return_dict_in_generate=True)
    before, after = original.generate(ids, **options), grown.generate(ids, **options)
    assert torch.equal(before.sequences, after.sequences)
    for step_before, step_after in zip(before.logits, after.logits, strict=True):  # each step from the cache
        assert torch.allclose(step_before, step_after, rtol=0, atol=1e-6)


def test_expand_keeps_per_layer_types(tmp_path):
    qwen = load(save_model(tmp_path / "qwen2", tiny_config("qwen2", layers=2)))
    assert expand_layers(qwen, 1) == [2]
    assert qwen.config.layer_types == ["full_attention"] * 3


@pytest.mark.parametrize(
    "options, message",
    [
        (["num_expand=3"], "num_expand: must divide the model's 4 layers, not 3"),
        (["num_expand=0"], "num_expand: must be >= 1"),
        ([], "give num_expand=N"),
    ],
)
def test_expand_user_errors(four_layers, tmp_path, capsys, options, message):
    argv = ["expand", f"model_name_or_path={four_layers}", f"output_dir={tmp_path / 'out'}", *options]
    assert cli(argv) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_expand_refuses_a_full_output_dir(four_layers, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    argv = ["expand", f"model_name_or_path={four_layers}", f"output_dir={tmp_path / 'out'}", "num_expand=1"]
    assert cli(argv) == 2
    assert "is not empty; overwrite=true replaces it" in one_line_error(capsys)


def test_llama_pro_freeze_trains_only_the_new_blocks(expanded, tiny_data_dir, tmp_path):
    out = tmp_path / "run"
    options = [
        "finetuning_type=freeze",
        "use_llama_pro=true",
        "freeze_trainable_layers=2",
        "learning_rate=1e-2",
    ]
    assert train(expanded, tiny_data_dir, out, *options) == 0
    start, trained = load_file(expanded / "model.safetensors"), load_file(out / "model.safetensors")
    assert start.keys() == trained.keys()
    changed = {name for name in start if not torch.equal(start[name], trained[name])}
    assert all(".layers.2." in name or ".layers.5." in name for name in changed), changed
    for index in (2, 5):  # the zero-initialised projections learnt something
        for projection in ("self_attn.o_proj", "mlp.down_proj"):
            assert f"model.layers.{index}.{projection}.weight" in changed
    card = RunCard.load(out)
    assert card.arguments["use_llama_pro"] is True and card.arguments["freeze_trainable_layers"] == 2
    assert card.stage_settings["llama_pro"] == {
        "layers": 6,
        "trained_layers": [2, 5],
        "finetuning_type": "freeze",
    }
    per_layer = sum(v.numel() for k, v in start.items() if ".layers.2." in k)
    assert card.metrics["trainable_params"] == 2 * per_layer
    assert math.isfinite(card.metrics["train_loss"])


def test_llama_pro_lora_adapts_only_the_new_blocks(expanded, tiny_data_dir, tmp_path):
    out = tmp_path / "run"
    options = ["use_llama_pro=true", "freeze_trainable_layers=2", "lora_rank=4"]
    assert train(expanded, tiny_data_dir, out, *options) == 0
    adapted = {
        int(name.split(".layers.")[1].split(".")[0]) for name in load_file(out / "adapter_model.safetensors")
    }
    assert adapted == {2, 5}
    assert RunCard.load(out).stage_settings["llama_pro"]["trained_layers"] == [2, 5]
    model, _, _ = load_for_inference(out)
    assert model.config.num_hidden_layers == 6


@pytest.mark.parametrize(
    "options, message",
    [
        (
            ["finetuning_type=full", "use_llama_pro=true"],
            "use_llama_pro trains only the expanded blocks: finetuning_type=freeze or lora",
        ),
        (
            ["finetuning_type=freeze", "use_llama_pro=true", "freeze_trainable_layers=4"],
            "use_llama_pro: freeze_trainable_layers must divide the model's 6 layers",
        ),
        (["use_llama_pro=true", "lora_layers=1"], "use_llama_pro chooses the layers itself"),
    ],
)
def test_llama_pro_user_errors(expanded, tiny_data_dir, tmp_path, capsys, options, message):
    assert train(expanded, tiny_data_dir, tmp_path / "run", *options) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "run" / "sqltune_run.json").exists()


# ---- S2-Attn ---------------------------------------------------------------------------------------


def reference_attention(query, key, value, padding, size: int) -> torch.Tensor:
    """S2-Attn written out from its definition, one head at a time, in float64: the sequence is
    filled up to whole groups of `size`; in the second half of the heads the groups start half a
    group later (wrapping around); a query sees the keys of its group that are not in its future
    and not padding (and itself)."""
    batch, heads, length, dim = query.shape
    repeats = heads // key.shape[1]
    slots = math.ceil(length / size) * size
    positions = torch.arange(length)
    out = torch.zeros(batch, length, heads, dim, dtype=torch.float64)
    for head in range(heads):
        shift = size // 2 if head >= heads - heads // 2 else 0
        group = ((positions - shift) % slots) // size
        allowed = (group[:, None] == group[None, :]) & (positions[None, :] <= positions[:, None])
        for row in range(batch):
            visible = (allowed & padding[row].bool()[None, :]) | torch.eye(length, dtype=torch.bool)
            q = query[row, head].double()
            k, v = key[row, head // repeats].double(), value[row, head // repeats].double()
            scores = (q @ k.T) / math.sqrt(dim)
            weights = scores.masked_fill(~visible, float("-inf")).softmax(-1)
            out[row, :, head] = weights @ v
    return out


@pytest.mark.parametrize("ratio, length", [(0.25, 16), (0.25, 13), (0.5, 10), (1.0, 12)])
def test_s2_attention_matches_its_definition(ratio, length):
    from transformers.masking_utils import sdpa_mask
    from transformers.models.llama.modeling_llama import LlamaAttention

    module = LlamaAttention(tiny_config(), layer_idx=0).train()
    setattr(module, shift_attn.RATIO_ATTRIBUTE, ratio)
    generator = torch.Generator().manual_seed(length)
    query = torch.randn(2, 4, length, 8, generator=generator)
    key, value = (torch.randn(2, 2, length, 8, generator=generator) for _ in range(2))
    padding = torch.ones(2, length, dtype=torch.long)
    padding[1, -3:] = 0
    mask = sdpa_mask(2, length, length, attention_mask=padding.bool(), allow_is_causal_skip=False)
    out, _ = shift_attn.shifted_sparse_attention(module, query, key, value, mask, scaling=8**-0.5)
    size = math.ceil(length * ratio)
    expected = reference_attention(query, key, value, padding, size)
    real = padding.bool()
    assert torch.allclose(out[real].double(), expected[real], atol=1e-5)
    if ratio < 1:  # the groups really cut attention: plain causal attention gives something else
        plain = reference_attention(query, key, value, padding, size=length)
        assert not torch.allclose(out[real].double(), plain[real], atol=1e-3)


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_s2_with_one_group_equals_plain_attention_and_inference_attends_as_usual(model_type):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    plain = AutoModelForCausalLM.from_config(tiny_config(model_type, layers=2))
    sparse = copy.deepcopy(plain)  # with its own config, where the attention setting lives
    ids, mask = batch(length=16)
    real = mask.bool()

    def logits(model):
        return model(ids, attention_mask=mask).logits[real]

    plain.train()
    sparse.train()
    shift_attn.apply_shift_attn(sparse, group_size_ratio=1.0)  # one group: the shift only reorders
    assert sparse.config._attn_implementation == shift_attn.ATTENTION_NAME
    assert plain.config._attn_implementation == "sdpa"
    assert torch.allclose(logits(sparse), logits(plain), atol=1e-5)
    shift_attn.apply_shift_attn(sparse, group_size_ratio=0.25)
    assert not torch.allclose(logits(sparse), logits(plain), atol=1e-3)
    plain.eval()
    sparse.eval()  # inference: plain attention, whatever the groups
    with torch.no_grad():
        assert torch.allclose(logits(sparse), logits(plain), atol=1e-6)


@pytest.mark.parametrize(
    "extra", [[], ["packing=true", "finetuning_type=freeze", "freeze_trainable_layers=1"]]
)
def test_training_with_shift_attn_runs_and_predicts_with_plain_attention(
    tiny_model_dir, tiny_data_dir, tmp_path, extra
):
    out = tmp_path / "run"
    assert train(tiny_model_dir, tiny_data_dir, out, "shift_attn=true", "lora_rank=4", *extra) == 0
    card = RunCard.load(out)
    assert card.arguments["shift_attn"] is True and card.arguments["group_size_ratio"] == 0.25
    assert card.stage_settings["shift_attn"]["group_size_ratio"] == 0.25
    assert "llama_pro" not in card.stage_settings
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    losses = [row["loss"] for row in history if "loss" in row]
    assert len(losses) == 3 and all(math.isfinite(loss) for loss in losses)
    if extra:
        assert "sqltune_s2_attn" not in (out / "config.json").read_text()
    else:  # the same first step with plain attention sees more of the prompt: another loss
        plain = tmp_path / "plain"
        assert train(tiny_model_dir, tiny_data_dir, plain, "lora_rank=4", "max_steps=1") == 0
        plain_history = json.loads((plain / "trainer_state.json").read_text())["log_history"]
        assert abs(plain_history[0]["loss"] - losses[0]) > 1e-4
    model, _, _ = load_for_inference(out)
    assert model.config._attn_implementation != shift_attn.ATTENTION_NAME
    predictions = tmp_path / "predictions.jsonl"
    argv = ["predict", f"run_dir={out}", f"dataset_dir={tiny_data_dir}", "dataset=tiny_train"]
    assert cli([*argv, "max_samples=2", "max_new_tokens=4", f"output={predictions}"]) == 0
    assert len(predictions.read_text().splitlines()) == 2


def test_a_later_stage_trains_with_its_own_attention_choice(tiny_model_dir, pair_data, tmp_path, capsys):
    sft = tmp_path / "sft"
    assert train(tiny_model_dir, pair_data, sft, "lora_rank=4", "max_steps=1") == 0
    dpo = tmp_path / "dpo"  # the base model and template come from the SFT run's card, S2-Attn from here
    argv = ["train", "stage=dpo", "dataset=tiny_pairs", f"dataset_dir={pair_data}", f"output_dir={dpo}"]
    argv += [f"adapter_name_or_path={sft}", "max_steps=1", "per_device_train_batch_size=2", "bf16=false"]
    assert cli([*argv, "shift_attn=true", "save_strategy=no"]) == 0
    card = RunCard.load(dpo)
    assert card.base_model == str(tiny_model_dir) and card.arguments["shift_attn"] is True
    assert card.stage_settings["shift_attn"]["group_size_ratio"] == 0.25
    argv = ["train", "stage=grpo", "dataset=tiny_train", f"dataset_dir={pair_data}"]
    assert (
        cli([*argv, f"output_dir={tmp_path / 'grpo'}", f"adapter_name_or_path={sft}", "shift_attn=true"]) == 2
    )
    assert one_line_error(capsys) == (
        "sqltune train: error: shift_attn: stage=grpo samples answers, which needs the model's full "
        "attention; S2-Attn is for pt, sft, rm, dpo, kto, orpo and simpo"
    )


def test_shift_attn_refuses_other_model_types_in_one_line(tiny_data_dir, tmp_path, capsys):
    from transformers import GPT2Config

    gpt2 = save_model(tmp_path / "gpt2", GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=512))
    assert train(gpt2, tiny_data_dir, tmp_path / "run", "shift_attn=true") == 2
    assert one_line_error(capsys) == (
        "sqltune train: error: shift_attn: S2-Attn supports llama-family models "
        "(llama, mistral, qwen2, qwen3), not model_type 'gpt2'"
    )
    assert not (tmp_path / "run" / "sqltune_run.json").exists()


@pytest.mark.parametrize(
    "options, message",
    [
        (["group_size_ratio=0"], "group_size_ratio: must be in (0, 1]"),
        (
            ["attn_implementation=flash_attention_2"],
            "shift_attn=true brings its own attention: leave out attn_implementation=flash_attention_2",
        ),
    ],
)
def test_shift_attn_option_errors(tiny_model_dir, tiny_data_dir, tmp_path, capsys, options, message):
    assert train(tiny_model_dir, tiny_data_dir, tmp_path / "run", "shift_attn=true", *options) == 2
    assert message in one_line_error(capsys)


# ---- Mixture-of-Depths -------------------------------------------------------------------------------


@pytest.mark.skipif(
    importlib.util.find_spec("MoD") is None, reason="the mixture-of-depth package is not installed"
)
@pytest.mark.parametrize("mode", ["convert", "load"])
def test_mixture_of_depths_fails_with_the_packages_own_reason(
    tiny_model_dir, tiny_data_dir, tmp_path, capsys, mode
):
    """mixture-of-depth 1.2.0 imports `TRANSFORMERS_CACHE`, which transformers 5 removed."""
    assert train(tiny_model_dir, tiny_data_dir, tmp_path / "run", f"mixture_of_depths={mode}") == 2
    line = one_line_error(capsys)
    assert line.startswith(f"sqltune train: error: mixture_of_depths={mode}: mixture-of-depth ")
    assert "does not work: import MoD fails (ImportError: cannot import name 'TRANSFORMERS_CACHE'" in line
    assert not (tmp_path / "run").exists()


def test_mixture_of_depths_without_the_package(tiny_model_dir, tiny_data_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "MoD", None)  # what an environment without the package sees
    assert train(tiny_model_dir, tiny_data_dir, tmp_path / "run", "mixture_of_depths=convert") == 2
    assert one_line_error(capsys) == (
        "sqltune train: error: mixture_of_depths=convert needs the package mixture-of-depth "
        "(pip install 'sqltune[methods]')"
    )


def test_mixture_of_depths_choices(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    assert train(tiny_model_dir, tiny_data_dir, tmp_path / "run", "mixture_of_depths=yes") == 2
    assert "mixture_of_depths: unknown 'yes', choose one of convert, load" in one_line_error(capsys)
