"""The prompt budget at prediction keeps room for a typical answer, as training did, not for
all of `max_new_tokens`."""

from __future__ import annotations

import pytest

from sqltune.errors import DataError
from sqltune.infer.questions import DEFAULT_ANSWER_TOKENS, token_budget
from sqltune.runcard import RunCard
from tests.tiny import tiny_model_dir, tiny_tokenizer  # noqa: F401


def card(cutoff_len: int, **stats: dict) -> RunCard:
    return RunCard("base", "base", "chatml", "lora", cutoff_len=cutoff_len, data_stats=stats)


def test_budget_reserves_the_training_answers_p95():
    run = card(512, spider_train={"response_tokens_p95": 61}, extra={"response_tokens_p95": 40})
    assert token_budget(None, run, max_new_tokens=128) == 512 - 61


def test_budget_never_reserves_more_than_max_new_tokens():
    assert token_budget(None, card(512, d={"response_tokens_p95": 61}), max_new_tokens=32) == 480


def test_without_answer_lengths_a_default_room_is_kept():
    assert token_budget(None, card(512, d={"kept": 3}), 128) == 512 - DEFAULT_ANSWER_TOKENS
    assert token_budget(300, None, 128) == 300 - DEFAULT_ANSWER_TOKENS


def test_a_cutoff_without_room_for_a_prompt_is_an_error():
    with pytest.raises(DataError, match="leaves no room"):
        token_budget(20, None, 128)


def test_training_records_the_answer_p95(tiny_tokenizer):  # noqa: F811
    from sqltune.data.prompts import Prompt
    from sqltune.models.templates import get_template
    from sqltune.train.data import Sample, encode_samples

    template = get_template("chatml", tiny_tokenizer)
    answers = [" ".join(["x"] * n) for n in range(1, 21)]
    samples = [Sample(Prompt("schema ", "question?"), answer) for answer in answers]
    _, stats = encode_samples(samples, template, tiny_tokenizer, cutoff_len=512)
    lengths = sorted(len(template.encode(tiny_tokenizer, [("schema question?", a)])[-1][1]) for a in answers)
    assert stats.response_tokens_p95 == lengths[19] and stats.response_tokens == sum(lengths)
