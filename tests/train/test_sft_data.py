"""The SFT data pipeline: reading records, masking, schema shortening, packing, the chunked loss."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from sqltune.args import DataArguments
from sqltune.data.records import register
from sqltune.errors import ConfigError, DataError
from sqltune.models.encoding import IGNORE_INDEX
from sqltune.models.templates import get_template
from sqltune.train.data import (
    build_features,
    collator,
    encode_samples,
    prompt_settings,
    read_samples,
    split_validation,
)
from sqltune.train.trainer import final_hidden_states, response_loss_sum
from tests.tiny import make_dataset


def test_alpaca_records_with_sidecars(tiny_data_dir):
    samples = read_samples(tiny_data_dir, "tiny_train")
    assert len(samples) == 24
    assert samples[0].example.question in samples[0].prompt.input
    assert samples[3].prompt.history  # multi-turn records keep their history
    assert samples[0].schema.db_id == "concert_singer" and samples[0].prompt_args.prompt_format == "ddl"
    assert len(read_samples(tiny_data_dir, "tiny_train", max_samples=5)) == 5


def test_shortening_instead_of_truncation(tiny_data_dir, tiny_tokenizer):
    template = get_template("auto", tiny_tokenizer)
    samples = read_samples(tiny_data_dir, "tiny_train")
    full, stats = encode_samples(samples, template, tiny_tokenizer, cutoff_len=4096)
    assert stats.kept == 24 and stats.shortened == 0
    longest = max(len(f["input_ids"]) for f in full)
    cutoff = longest - 200
    short, stats = encode_samples(samples, template, tiny_tokenizer, cutoff_len=cutoff)
    assert stats.shortened > 0 and stats.tables_dropped >= stats.shortened
    assert stats.kept + stats.dropped_too_long == 24
    assert all(len(f["input_ids"]) <= cutoff for f in short)
    for feature, sample in zip(short, samples):  # the question and the whole SQL always survive
        text = tiny_tokenizer.decode(feature["input_ids"])
        assert sample.example.question in text
        response = tiny_tokenizer.decode([t for t in feature["labels"] if t != IGNORE_INDEX])
        assert sample.response in response
    tiny, stats = encode_samples(samples, template, tiny_tokenizer, cutoff_len=100)
    assert stats.dropped_too_long == 24 and not tiny


def test_sharegpt_and_plain_alpaca_without_sidecars(tmp_path, tiny_tokenizer):
    rows = [
        {"conversations": [{"from": "human", "value": "q1"}, {"from": "gpt", "value": "SELECT 1"}]},
        {
            "system": "be brief",
            "conversations": [
                {"from": "human", "value": "q1"},
                {"from": "gpt", "value": "SELECT 1"},
                {"from": "human", "value": "q2"},
                {"from": "gpt", "value": "SELECT 2"},
            ],
        },
    ]
    (tmp_path / "chat.json").write_text(json.dumps(rows))
    register(tmp_path, "chat", {"file_name": "chat.json", "formatting": "sharegpt"})
    (tmp_path / "plain.jsonl").write_text(
        json.dumps({"instruction": "x " * 400, "input": "q", "output": "SELECT 3"}) + "\n"
    )
    register(tmp_path, "plain", {"file_name": "plain.jsonl"})
    samples = read_samples(tmp_path, "chat")
    assert samples[1].system == "be brief" and samples[1].prompt.history == [("q1", "SELECT 1")]
    features, stats = build_features(
        DataArguments(dataset_dir=str(tmp_path), cutoff_len=256),
        ["chat", "plain"],
        get_template("hf", tiny_tokenizer),
        tiny_tokenizer,
    )
    assert stats["chat"]["kept"] == 2
    assert stats["plain"]["dropped_too_long"] == 1  # too long and nothing to shorten: dropped, never cut
    assert "be brief" in tiny_tokenizer.decode(features[1]["input_ids"])
    assert prompt_settings(tmp_path, ["chat"]) is None
    (tmp_path / "bad.json").write_text(json.dumps([{"conversations": [{"from": "gpt", "value": "x"}]}]))
    register(tmp_path, "bad", {"file_name": "bad.json", "formatting": "sharegpt"})
    with pytest.raises(DataError, match="record 1: messages must alternate"):
        read_samples(tmp_path, "bad")


def test_mixed_prompt_formats_are_refused(tmp_path):
    make_dataset(tmp_path, "a", 4, "ddl")
    make_dataset(tmp_path, "b", 4, "dbgpt")
    with pytest.raises(ConfigError, match="different prompt formats"):
        prompt_settings(tmp_path, ["a", "b"])


def test_validation_split_is_seeded():
    features = [{"input_ids": [i]} for i in range(10)]
    train, held = split_validation(features, 0.2, seed=1)
    assert len(held) == 2 and len(train) == 8
    assert split_validation(features, 0.2, seed=1)[1] == held
    assert len(split_validation(features, 3, seed=1)[1]) == 3
    with pytest.raises(ConfigError):
        split_validation(features, 10, seed=1)


def _features(tiny_data_dir, tiny_tokenizer, count=3):
    samples = read_samples(tiny_data_dir, "tiny_train", max_samples=count)
    return encode_samples(samples, get_template("auto", tiny_tokenizer), tiny_tokenizer, 4096)[0]


def test_chunked_response_loss_matches_the_models_own_loss(tiny_model_dir, tiny_data_dir, tiny_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    batch = collator(tiny_tokenizer, packing=False)(_features(tiny_data_dir, tiny_tokenizer))
    reference = model(**batch).loss
    out = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True
    )
    total, count = response_loss_sum(out.hidden_states[-1], batch["labels"], model.get_output_embeddings(), 7)
    assert count == int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    assert torch.allclose(total / count, reference, atol=1e-5)
    total.backward()  # chunks are recomputed in backward (checkpointing)
    assert model.model.embed_tokens.weight.grad is not None


def test_packing_keeps_examples_apart(tiny_model_dir, tiny_data_dir, tiny_tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    features = _features(tiny_data_dir, tiny_tokenizer)
    packed = collator(tiny_tokenizer, packing=True)(features)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    assert packed["input_ids"].shape[1] == sum(len(f["input_ids"]) for f in features)  # no padding

    def states(**inputs):
        with torch.no_grad():
            return model(**inputs, output_hidden_states=True, use_cache=False).hidden_states[-1][0]

    alone = torch.cat([states(input_ids=torch.tensor([f["input_ids"]])) for f in features])
    assert torch.allclose(states(**packed), alone, atol=1e-5)  # no attention across examples
    # the control: the same row without restarting positions attends across examples
    assert not torch.allclose(states(input_ids=packed["input_ids"]), alone, atol=1e-3)


def test_the_loss_reads_the_decoders_output_without_keeping_every_layers(
    tiny_model_dir, tiny_data_dir, tiny_tokenizer
):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    batch = collator(tiny_tokenizer, packing=False)(_features(tiny_data_dir, tiny_tokenizer))
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    expected = model(**inputs, output_hidden_states=True).hidden_states[-1]
    outputs, hidden = final_hidden_states(model, model, inputs)
    assert torch.equal(hidden, expected)
    assert outputs.hidden_states is None  # no layer's output is held by the outputs
    assert outputs.logits.shape[1] == 1  # the head ran on the last position only
    total, count = response_loss_sum(hidden, batch["labels"], model.get_output_embeddings(), 7)
    assert torch.allclose(total / count, model(**batch).loss, atol=1e-5)

    class NoDecoder(torch.nn.Module):  # a model without get_decoder: every layer's states, the last one
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, **kwargs):
            return self.inner(**kwargs)

    wrapped = NoDecoder()
    outputs, hidden = final_hidden_states(wrapped, wrapped, inputs)
    assert torch.equal(hidden, expected) and len(outputs.hidden_states) == model.config.num_hidden_layers + 1
