"""Prefill by runs of shared prefixes, the growing KV cache and the decoding-step attention."""

import functools

import pytest
import torch

from sqltune.args import GeneratingArguments
from sqltune.infer import prefill as prefill_module
from sqltune.infer.decode_attention import decode_attention
from sqltune.infer.prefill import Run, prefix_runs
from tests.infer.test_hf_engine import (
    QUESTIONS,
    answers_by_index,
    counting_forward,
    engine_and_prompts,
    one_at_a_time,
)


def test_runs_follow_the_databases_of_a_sorted_batch():
    schema_a, schema_b = list(range(100, 500)), list(range(600, 1000))
    rows = sorted([schema_a + [1, 2, 3], schema_a + [4, 5], schema_b + [6, 7, 8, 9], schema_b + [1]])
    assert prefix_runs(rows) == [Run(0, 2, 400), Run(2, 4, 400)]
    same = sorted([schema_a + [i, i + 1] for i in range(5)])
    assert prefix_runs(same) == [Run(0, 5, 400)]
    short = [[1, 2, 3], [1, 2, 4], [7, 8]]  # nothing worth a forward call of its own is shared
    assert all(run.shared == 0 for run in prefix_runs(short))
    assert prefix_runs([[5]]) == [Run(0, 1, 0)]


def test_a_batch_over_two_databases_computes_each_schema_once(diverse_model_dir, monkeypatch):
    engine, prompts = engine_and_prompts(diverse_model_dir, batch_size=8)
    encode = functools.partial(engine.tokenizer, add_special_tokens=False)
    schema_a = encode(" ".join(QUESTIONS[:4] * 3))["input_ids"]
    schema_b = encode(" ".join(QUESTIONS[3:] * 4))["input_ids"]
    batch = [schema_a + p for p in prompts[:4]] + [schema_b + p for p in prompts[2:6]]
    computed = counting_forward(engine.model, monkeypatch)
    answers = answers_by_index(engine.generate(batch, GeneratingArguments(max_new_tokens=8)))
    schema_passes = [
        shape for shape in computed if shape[0] == 1 and shape[1] >= min(len(schema_a), len(schema_b))
    ]
    assert len(schema_passes) == 2  # one per database, not one per row
    work = sum(rows * tokens for rows, tokens in computed)  # token positions computed, decoding included
    assert work < sum(len(p) for p in batch) / 2
    for index, prompt in enumerate(batch):
        (tokens,) = one_at_a_time(engine, prompt, 8, do_sample=False)
        length = engine.answer_length(tokens)
        assert answers[index].text == engine.tokenizer.decode(tokens[:length], skip_special_tokens=True)


def test_the_cache_grows_in_place_past_its_room(diverse_model_dir, monkeypatch):
    monkeypatch.setattr(prefill_module, "GROWTH", 3)  # a new buffer every three decoding steps
    engine, prompts = engine_and_prompts(diverse_model_dir, batch_size=4)
    settings = GeneratingArguments(max_new_tokens=20, repetition_penalty=1.3)  # long answers
    answers = answers_by_index(engine.generate(prompts, settings))
    assert max(a.new_tokens for a in answers.values()) > 10
    for index, prompt in enumerate(prompts):
        (tokens,) = one_at_a_time(engine, prompt, 20, do_sample=False, repetition_penalty=1.3)
        length = engine.answer_length(tokens)
        assert answers[index].text == engine.tokenizer.decode(tokens[:length], skip_special_tokens=True)
    beams = answers_by_index(
        engine.generate(prompts[:2], GeneratingArguments(max_new_tokens=9), candidates=3)
    )
    for index in range(2):  # beam search reorders the cache's rows at every step
        (tokens, *_) = one_at_a_time(
            engine, prompts[index], 9, num_beams=3, num_return_sequences=3, do_sample=False
        )
        assert beams[index].text == engine.tokenizer.decode(
            tokens[: engine.answer_length(tokens)], skip_special_tokens=True
        )


class Attention(torch.nn.Module):
    num_key_value_groups = 3
    training = False


@pytest.mark.parametrize("mask_kind", ["none", "bool", "additive"])
def test_decode_attention_equals_sdpa(mask_kind):
    torch.manual_seed(0)
    batch, heads, kv_heads, length, dim = 4, 6, 2, 37, 16
    query = torch.randn(batch, heads, 1, dim)
    key = torch.randn(batch, kv_heads, length, dim)
    value = torch.randn(batch, kv_heads, length, dim)
    allowed = torch.ones(batch, 1, 1, length, dtype=torch.bool)
    allowed[1, ..., :9] = False  # left padding
    allowed[2, ..., 20:25] = False  # padding between a prefix and a question
    mask = {"none": None, "bool": allowed, "additive": torch.zeros(allowed.shape).masked_fill(~allowed, -1e9)}
    module = Attention()
    module.num_key_value_groups = heads // kv_heads
    output, _ = decode_attention(module, query, key, value, mask[mask_kind], scaling=0.3)
    expected = torch.nn.functional.scaled_dot_product_attention(
        query,
        key.repeat_interleave(heads // kv_heads, dim=1),
        value.repeat_interleave(heads // kv_heads, dim=1),
        attn_mask=None if mask_kind == "none" else allowed,
        scale=0.3,
    ).transpose(1, 2)
    assert output.shape == (batch, 1, heads, dim)
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)


def test_a_model_on_decode_attention_answers_as_with_sdpa(diverse_model_dir):
    engine, prompts = engine_and_prompts(diverse_model_dir, batch_size=4)
    assert engine.model.config._attn_implementation == "sqltune_decode"
    switched = [one_at_a_time(engine, p, 12, do_sample=False)[0] for p in prompts]
    engine.model.set_attn_implementation("sdpa")
    assert switched == [one_at_a_time(engine, p, 12, do_sample=False)[0] for p in prompts]
