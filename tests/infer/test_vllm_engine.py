"""The vLLM engine agrees with the transformers engine (GPU with vLLM only; skipped elsewhere)."""

import importlib.util

import pytest
import torch

from sqltune.args import GeneratingArguments, ModelArguments
from sqltune.infer.engine import model_source, open_engine

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible)"),
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None, reason="needs vllm (pip install 'sqltune[vllm]')"
    ),
]


def answers(engine, prompts, **settings):
    batches = list(engine.generate(prompts, GeneratingArguments(max_new_tokens=16, **settings)))
    return {i: group[0].text for b in batches for i, group in zip(b.indices, b.candidates)}


def test_vllm_serves_a_lora_run_like_the_hf_engine(tiny_run):
    source = model_source(str(tiny_run), ModelArguments())
    hf = open_engine(source, backend="hf", dtype="float32")
    prompts = [
        hf.tokenizer(q, add_special_tokens=False)["input_ids"] for q in ("How many singers?", "List songs")
    ]
    vllm = open_engine(source, backend="vllm", dtype="float32", gpu_memory_utilization=0.3)
    assert vllm.adapter == str(tiny_run)  # served through a LoRARequest, not merged
    assert answers(vllm, prompts) == answers(hf, prompts)
    (batch,) = vllm.generate(prompts, GeneratingArguments(max_new_tokens=8, do_sample=True), candidates=3)
    assert all(len(group) == 3 for group in batch.candidates)
