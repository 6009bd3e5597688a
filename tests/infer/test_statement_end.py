"""Generation ends once an answer holds one complete SQL statement, and that never changes the SQL
that extraction keeps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sqltune.args import GeneratingArguments, ModelArguments
from sqltune.infer.engine import model_source, open_engine
from sqltune.infer.hf import StatementEnd, statement_end_tokens
from sqltune.sql_extract import extract_sql, statement_complete
from tests.tiny import build_model_dir

RAMBLING = {  # prompt -> what the model learns to write after it: a statement, then more
    "How many singers are there?": " SELECT count(*) FROM singer; SELECT name FROM singer",
    "List song titles": " ```sql\nSELECT title FROM song\n``` and then more text",
    "Show concert names": " SELECT name FROM concert WHERE theme = 'a;b' ; SELECT 1",
}


@pytest.fixture(scope="module")
def rambler(tmp_path_factory) -> Path:
    """A tiny model taught (a few hundred full-batch steps) to write each RAMBLING continuation."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = build_model_dir(tmp_path_factory.mktemp("rambler"), hidden=64)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    rows = [
        tokenizer(q + a, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        for q, a in RAMBLING.items()
    ]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
    labels = torch.where(ids == tokenizer.pad_token_id, -100, ids)
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        loss = model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    model.save_pretrained(folder)
    return folder


def answers(model_dir: Path, stop: bool) -> dict[str, tuple[str, int]]:
    engine = open_engine(
        model_source(None, ModelArguments(model_name_or_path=str(model_dir))), "hf", "float32"
    )
    prompts = [engine.tokenizer(q, add_special_tokens=False)["input_ids"] for q in RAMBLING]
    settings = GeneratingArguments(max_new_tokens=40, stop_after_statement=stop)
    found = {}
    for batch in engine.generate(prompts, settings):
        for index, group in zip(batch.indices, batch.candidates):
            found[list(RAMBLING)[index]] = (group[0].text, group[0].new_tokens)
    return found


def test_answers_stop_after_the_statement_with_the_same_extracted_sql(rambler):
    full, stopped = answers(rambler, stop=False), answers(rambler, stop=True)
    for question in RAMBLING:
        text, new_tokens = stopped[question]
        assert full[question][0].startswith(text) and new_tokens < full[question][1], question
        assert statement_complete(text) and not statement_complete(text[:-1])
        assert extract_sql(text) == extract_sql(full[question][0])
    assert stopped["How many singers are there?"][0] == " SELECT count(*) FROM singer;"
    assert stopped["List song titles"][0] == " ```sql\nSELECT title FROM song\n```"
    assert stopped["Show concert names"][0] == " SELECT name FROM concert WHERE theme = 'a;b' ;"


def test_criterion_checks_only_rows_whose_new_token_can_end_a_statement(tiny_tokenizer):  # noqa: F811
    triggers = statement_end_tokens(tiny_tokenizer)
    assert triggers and all(
        ";" in p or "`" in p for p in tiny_tokenizer.convert_ids_to_tokens(list(triggers))
    )
    rows = ["SELECT a FROM t;", "SELECT a FROM t WHERE b = 'x;", "-- note; SELECT a"]
    encoded = [tiny_tokenizer(r, add_special_tokens=False)["input_ids"] for r in rows]
    width = max(map(len, encoded))
    ids = torch.tensor([[tiny_tokenizer.pad_token_id] * (width - len(r)) + r for r in encoded])
    criterion = StatementEnd(tiny_tokenizer, triggers, prompt_length=0)  # all answer, left-padded
    assert criterion(ids, None).tolist() == [True, False, False]
    assert criterion.stopped_at == {0: width}


from tests.tiny import tiny_model_dir, tiny_tokenizer  # noqa: E402, F401
