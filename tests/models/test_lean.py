"""`lean_activations`: RMSNorm, SwiGLU and grouped-query attention that keep less for the backward
pass, with the stock modules' results and gradients."""

import copy
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sqltune.cli import main as cli
from sqltune.models.lean import grouped_attention, rms_norm, swiglu, use_lean_activations
from sqltune.runcard import RunCard
from tests.tiny import build_tokenizer, llama_config, train_options

SRC = Path(__file__).resolve().parents[2] / "src"
# torch.compile on the CPU builds C++: without a compiler the fused kernels warn and stay plain
HAS_COMPILER = bool(os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++"))
needs_compiler = pytest.mark.skipif(not HAS_COMPILER, reason="torch.compile on the CPU needs a C++ compiler")


def gradients(function, *inputs):
    inputs = [x.detach().clone().requires_grad_(True) for x in inputs]
    output = function(*inputs)
    output.backward(torch.linspace(-1, 1, output.numel()).reshape(output.shape).to(output.dtype))
    return output.detach(), [x.grad for x in inputs]


@pytest.mark.parametrize("keep_output", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_and_swiglu_match_the_stock_code(dtype, keep_output):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    torch.manual_seed(0)
    tolerance = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
    hidden = torch.randn(3, 7, 16, dtype=dtype) * 3
    weight = (torch.rand(16) + 0.5).to(dtype)
    stock = LlamaRMSNorm(16, eps=1e-5).to(dtype)

    def stock_norm(x, w):
        stock.weight = torch.nn.Parameter(w)
        output = stock(x)
        stock.weight.retain_grad()
        return output

    expected, (grad_x, _) = gradients(stock_norm, hidden, weight)
    got, (lean_grad_x, lean_grad_w) = gradients(
        lambda x, w: rms_norm(x, w, 1e-5, keep_output=keep_output), hidden, weight
    )
    torch.testing.assert_close(got, expected, **tolerance)
    torch.testing.assert_close(lean_grad_x, grad_x, **tolerance)
    torch.testing.assert_close(lean_grad_w, stock.weight.grad, **tolerance)

    gate, up = torch.randn(2, 5, 12, dtype=dtype) * 2, torch.randn(2, 5, 12, dtype=dtype)
    expected, expected_grads = gradients(lambda g, u: torch.nn.functional.silu(g) * u, gate, up)
    got, got_grads = gradients(swiglu, gate, up)
    torch.testing.assert_close(got, expected, **tolerance)
    for lean_grad, stock_grad in zip(got_grads, expected_grads):
        torch.testing.assert_close(lean_grad, stock_grad, **tolerance)


class Attention(torch.nn.Module):
    num_key_value_groups = 3
    is_causal = True


@pytest.mark.parametrize("masked", [False, True])
def test_grouped_attention_matches_repeated_heads(masked):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(0)
    query, key, value = torch.randn(2, 6, 9, 8), torch.randn(2, 2, 9, 8), torch.randn(2, 2, 9, 8)
    mask = None
    if masked:  # causal, with the second row left-padded by three tokens
        mask = torch.ones(9, 9, dtype=torch.bool).tril().expand(2, 1, 9, 9).clone()
        mask[1, :, :, :3] = False
        mask[1, :, :3, :3] = torch.eye(3, dtype=torch.bool)  # padding queries see themselves only
    module = Attention()
    expected, expected_grads = gradients(
        lambda q, k, v: sdpa_attention_forward(module, q, k, v, mask, scaling=0.4)[0], query, key, value
    )
    got, got_grads = gradients(
        lambda q, k, v: grouped_attention(module, q, k, v, mask, scaling=0.4)[0], query, key, value
    )
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    for lean_grad, stock_grad in zip(got_grads, expected_grads):
        torch.testing.assert_close(lean_grad, stock_grad, atol=1e-5, rtol=1e-5)


def saved_bytes_loss_and_gradients(model, batch):
    model.zero_grad()
    saved = {}

    def pack(tensor):
        saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return sum(saved.values()), loss.item(), grads


def test_a_lean_model_trains_like_the_stock_model_and_keeps_less():
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    stock = LlamaForCausalLM(
        llama_config(tokenizer, hidden=48, num_hidden_layers=3, attn_implementation="sdpa")
    )
    lean = copy.deepcopy(stock)
    assert use_lean_activations(lean) == {"rms_norm": 7, "swiglu": 3, "grouped_attention": 1}
    mask = torch.ones(4, 40, dtype=torch.long)
    mask[1, :11] = 0  # padding, so that attention runs with a mask
    batch = {"input_ids": torch.randint(3, len(tokenizer), (4, 40)), "attention_mask": mask}
    stock_bytes, stock_loss, stock_grads = saved_bytes_loss_and_gradients(stock, batch)
    lean_bytes, lean_loss, lean_grads = saved_bytes_loss_and_gradients(lean, batch)
    assert lean_loss == pytest.approx(stock_loss, rel=1e-5)
    assert lean_grads.keys() == stock_grads.keys()
    for name, grad in stock_grads.items():
        torch.testing.assert_close(lean_grads[name], grad, atol=1e-5, rtol=1e-4)
    assert lean_bytes < 0.9 * stock_bytes


def test_lean_activations_train_through_the_cli(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "run"
    argv = train_options(
        tiny_model_dir,
        tiny_data_dir,
        out,
        max_steps=3,
        lean_activations="true",
        bf16="true",
        lean_fused_kernels="true",
    )
    assert cli(["train", *argv]) == 0
    card = RunCard.load(out)
    assert card.arguments["lean_activations"] is True
    assert card.stage_settings["lean_activations"] == {
        "rms_norm": 5,
        "swiglu": 2,
        "grouped_attention": 1,
        "fused_kernels": HAS_COMPILER,
    }
    plain = tmp_path / "plain"  # the default, auto: plain operations for a run this short
    argv = train_options(tiny_model_dir, tiny_data_dir, plain, max_steps=2)
    assert cli(["train", *argv]) == 0
    card = RunCard.load(plain)
    assert card.arguments["lean_fused_kernels"] == "auto"
    assert card.stage_settings["lean_activations"]["fused_kernels"] is False
    bad = train_options(tiny_model_dir, tiny_data_dir, tmp_path / "bad", lean_fused_kernels="sometimes")
    assert cli(["train", *bad]) == 2
    stock = tmp_path / "stock"
    argv = train_options(
        tiny_model_dir, tiny_data_dir, stock, max_steps=3, bf16="true", lean_activations="false"
    )
    assert cli(["train", *argv]) == 0
    assert "lean_activations" not in RunCard.load(stock).stage_settings


def tiny_lora_llama(layers=2):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    config = llama_config(build_tokenizer(), hidden=48, num_hidden_layers=layers, attn_implementation="sdpa")
    model = LlamaForCausalLM(config)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets, init_lora_weights=False)
    return get_peft_model(model, lora)


def lora_batch(model):
    torch.manual_seed(1)
    return {"input_ids": torch.randint(3, model.config.vocab_size, (3, 20))}


def test_the_down_projection_input_is_recomputed_not_kept():
    stock = tiny_lora_llama()
    kept, recomputed = copy.deepcopy(stock), copy.deepcopy(stock)
    use_lean_activations(kept, recompute=False)
    use_lean_activations(recomputed)
    batch = lora_batch(stock)
    kept_bytes, kept_loss, kept_grads = saved_bytes_loss_and_gradients(kept, batch)
    bytes_, loss, grads = saved_bytes_loss_and_gradients(recomputed, batch)
    _, stock_loss, stock_grads = saved_bytes_loss_and_gradients(stock, batch)
    config = stock.config
    down_inputs = config.num_hidden_layers * 3 * 20 * config.intermediate_size * 4  # float32
    assert kept_bytes - bytes_ == down_inputs
    assert loss == kept_loss == pytest.approx(stock_loss, rel=1e-5)
    assert grads.keys() == kept_grads.keys() == stock_grads.keys()
    assert any("down_proj.lora_A" in name for name in grads)
    for name, grad in grads.items():
        assert torch.equal(grad, kept_grads[name]), name  # recomputed bit for bit
        torch.testing.assert_close(grad, stock_grads[name], atol=1e-5, rtol=1e-4)


def test_a_norm_weight_with_a_zero_keeps_its_input():
    stock = tiny_lora_llama(layers=1)
    lean = copy.deepcopy(stock)
    use_lean_activations(lean)
    batch = lora_batch(stock)
    saved_bytes_loss_and_gradients(lean, batch)  # checks the weights before the change below
    for model in (stock, lean):
        with torch.no_grad():
            model.base_model.model.model.layers[0].post_attention_layernorm.weight[5] = 0.0
    _, stock_loss, stock_grads = saved_bytes_loss_and_gradients(stock, batch)
    _, loss, grads = saved_bytes_loss_and_gradients(lean, batch)
    assert loss == pytest.approx(stock_loss, rel=1e-5)
    for name, grad in grads.items():
        assert torch.isfinite(grad).all(), name
        torch.testing.assert_close(grad, stock_grads[name], atol=1e-5, rtol=1e-4)


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_kernels_match_the_plain_operations(dtype):
    from sqltune.models import lean

    fused, plain = lean._Kernels(), lean._Kernels()
    fused.fused = True
    torch.manual_seed(0)
    # fused kernels round to bfloat16 less often: the weight gradient's sums of 21 products differ most
    tolerance = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-1, "rtol": 2e-2}
    hidden, grad = torch.randn(3, 7, 16, dtype=dtype) * 3, torch.randn(3, 7, 16, dtype=dtype)
    weight = (torch.rand(16) + 0.5).to(dtype)
    gate, up, grad_mlp = (torch.randn(2, 5, 12, dtype=dtype) for _ in range(3))
    calls = [
        (lean._norm_math, (hidden, weight, 1e-5)),
        (lean._norm_grad_math, (hidden, torch.rand(3, 7, 1) + 0.5, weight, grad, dtype, False, True)),
        (lean._swiglu_math, (gate, up)),
        (lean._swiglu_grad_math, (gate, up, grad_mlp)),
    ]
    for function, args in calls:
        for got, expected in zip(fused(function, *args), plain(function, *args)):
            torch.testing.assert_close(got, expected, **tolerance)
    assert fused.failed is None and len(fused._compiled) == len(calls)


def test_without_a_compiler_the_kernels_warn_and_stay_plain(monkeypatch):
    import torch._inductor.config as inductor_config

    from sqltune.errors import SqltuneWarning
    from sqltune.models import lean

    monkeypatch.setattr(inductor_config.cpp, "cxx", ("sqltune-no-such-compiler",))
    monkeypatch.setattr(inductor_config, "fx_graph_cache", False)
    kernels = lean._Kernels()
    kernels.fused = True
    gate, up = torch.randn(4, 9) * 2, torch.randn(4, 9)

    def math(a, b):  # a graph of its own, so that no compiled copy is found in a cache
        return torch.nn.functional.silu(a) * b + 0.125

    with pytest.warns(SqltuneWarning, match="lean_fused_kernels: torch.compile failed"):
        out = kernels(math, gate, up)
    assert kernels.failed
    torch.testing.assert_close(out, math(gate, up))
    assert torch.equal(kernels(math, gate, up), math(gate, up))  # plain from then on, silently


FUSED_AGAINST_PLAIN = """
import torch
from sqltune.models import lean
kernels = lean._Kernels()
kernels.fused = True
torch.manual_seed(0)
hidden, weight = torch.randn(2, 30, 48), torch.rand(48) + 0.5
gate, up, grad = torch.randn(2, 30, 96), torch.randn(2, 30, 96), torch.randn(2, 30, 96)
worst = 0.0
for function, args in ((lean._norm_math, (hidden, weight, 1e-6)), (lean._swiglu_grad_math, (gate, up, grad))):
    for got, expected in zip(kernels(function, *args), function(*args)):
        worst = max(worst, (got - expected).abs().max().item())
assert kernels.used and kernels.failed is None
print(worst)
"""


@needs_compiler
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 vector levels")
def test_fused_kernels_stay_right_when_processes_of_another_vector_level_ran_before(tmp_path):
    # torch 2.13's compiled-graph cache on disk does not tell kernels built for AVX-512 from those
    # for AVX2 (ATEN_CPU_CAPABILITY): a process loading the other level's got NaN or crashed
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    env["TORCHINDUCTOR_CACHE_DIR"] = str(tmp_path / "inductor")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    for capability in (None, "avx2", None):
        run_env = {**env, "ATEN_CPU_CAPABILITY": capability} if capability else env
        run = subprocess.run(
            [sys.executable, "-c", FUSED_AGAINST_PLAIN],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, f"{capability}: {run.stderr[-2000:]}"
        assert float(run.stdout.split()[-1]) < 1e-4, capability


def test_auto_fuses_kernels_for_runs_of_fifty_steps_or_more():
    from transformers import TrainerState

    from sqltune.models import lean

    callback = lean.fused_for_long_runs()
    for steps, fused in (
        (14, False),
        (lean.FUSED_MIN_STEPS - 1, False),
        (lean.FUSED_MIN_STEPS, True),
        (540, True),
    ):
        lean.kernels.reset(False)
        callback.on_train_begin(None, TrainerState(max_steps=steps), None)
        assert lean.kernels.fused is fused, steps
    lean.kernels.reset(False)
