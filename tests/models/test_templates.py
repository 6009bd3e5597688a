"""Templates and prompt encoding: what training and prediction feed the model."""

import pytest

from sqltune.args import PromptArguments
from sqltune.data.prompts import build_prompt, tables_in_sql
from sqltune.errors import ConfigError
from sqltune.models.encoding import IGNORE_INDEX, encode_example, encode_prompt, fit_to_budget
from sqltune.models.templates import TEMPLATES, get_template
from tests.tiny import concert_schema, examples

DDL = PromptArguments(prompt_format="ddl")


def multi_turn():
    example = examples(4)[3]
    assert example.history, "example 3 of the tiny set is multi-turn"
    return example, build_prompt(example, concert_schema(), DDL)


def test_auto_uses_the_tokenizers_chat_template(tiny_tokenizer):
    template = get_template("auto", tiny_tokenizer)
    assert template.name == "hf"
    example, prompt = multi_turn()
    ids = encode_prompt(prompt, template, tiny_tokenizer)
    messages = [
        {"role": "user", "content": prompt.instruction + prompt.history[0][0]},
        {"role": "assistant", "content": prompt.history[0][1]},
        {"role": "user", "content": prompt.input},
    ]
    expected = tiny_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert tiny_tokenizer.decode(ids) == expected


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_loss_only_on_the_last_response(tiny_tokenizer, name):
    example, prompt = multi_turn()
    template = get_template(name, tiny_tokenizer)
    input_ids, labels = encode_example(prompt, example.sql, template, tiny_tokenizer)
    prompt_ids = encode_prompt(prompt, template, tiny_tokenizer)
    assert input_ids[: len(prompt_ids)] == prompt_ids  # prediction sees exactly the training prefix
    assert all(label == IGNORE_INDEX for label in labels[: len(prompt_ids)])
    response = [t for t in labels if t != IGNORE_INDEX]
    assert response == input_ids[len(prompt_ids) :]
    text = tiny_tokenizer.decode(response)
    assert example.sql in text
    assert example.history[0][1] not in text  # the earlier turn's SQL is context, not a target
    assert set(template.stop_token_ids(tiny_tokenizer)) & set(response)  # the answer ends with a stop token


def test_registry_formats():
    assert TEMPLATES["llama3"].user.startswith("<|start_header_id|>user")
    assert get_template("qwen").name == "chatml" and get_template("plain").name == "default"


def test_unknown_template_and_missing_chat_template(tiny_tokenizer):
    with pytest.raises(ConfigError, match="template: unknown 'vicuna9'"):
        get_template("vicuna9")
    chat_template, tiny_tokenizer.chat_template = tiny_tokenizer.chat_template, None
    try:
        assert get_template("auto", tiny_tokenizer).name == "default"
        with pytest.raises(ConfigError, match="no chat template"):
            get_template("hf", tiny_tokenizer)
    finally:
        tiny_tokenizer.chat_template = chat_template


def test_fit_to_budget_shortens_schema_keeps_question_and_gold_tables(tiny_tokenizer):
    template = get_template("auto", tiny_tokenizer)
    schema = concert_schema()
    example = examples(7)[6]  # joins concert and stadium
    full = encode_prompt(build_prompt(example, schema, DDL), template, tiny_tokenizer)
    response = len(
        encode_example(build_prompt(example, schema, DDL), example.sql, template, tiny_tokenizer)[0]
    ) - len(full)
    budget = len(full) - 150
    fitted = fit_to_budget(
        example, schema, DDL, template, tiny_tokenizer, budget, response, protect_gold_tables=True
    )
    assert fitted.fits and fitted.shortening.tables_dropped >= 1
    assert len(fitted.prompt_ids) + response <= budget
    assert fitted.prompt_ids == encode_prompt(fitted.prompt, template, tiny_tokenizer)
    assert example.question in fitted.prompt.input
    kept = tables_in_sql(fitted.prompt.instruction, schema)
    assert {"concert", "stadium"} <= kept
    # Prediction: same rule, nothing protected, the response budget given as max_new_tokens.
    tight = fit_to_budget(example, schema, DDL, template, tiny_tokenizer, 120)
    assert not tight.fits and tight.shortening.tables_dropped == len(schema.tables)
