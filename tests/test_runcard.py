import json

import pytest

from sqltune.errors import DataError
from sqltune.runcard import RUN_CARD, RunCard, git_revision, library_versions


def test_round_trip(tmp_path):
    card = RunCard(
        base_model="/m",
        model_name_or_path="smollm2-135m",
        template="hf",
        finetuning_type="lora",
        prompt_format="ddl",
        datasets=["a", "b"],
        metrics={"train_loss": 1.5},
        versions=library_versions(),
        git_revision=git_revision(),
    )
    card.save(tmp_path)
    assert RunCard.load(tmp_path) == card
    assert json.loads((tmp_path / RUN_CARD).read_text())["versions"]["torch"]


def test_missing_and_malformed(tmp_path):
    with pytest.raises(DataError, match="not a sqltune run directory"):
        RunCard.load(tmp_path)
    (tmp_path / RUN_CARD).write_text('{"template": "hf"}')
    with pytest.raises(DataError, match="missing base_model"):
        RunCard.load(tmp_path)


def test_a_card_written_before_later_fields_existed_still_loads(tmp_path):
    """Run dirs outlive versions: fields added later (stage, stage_settings, precision...) default."""
    old = {"base_model": "/m", "model_name_or_path": "m", "template": "hf", "finetuning_type": "full"}
    (tmp_path / RUN_CARD).write_text(json.dumps(dict(old, prompt_format="dbgpt", cutoff_len=512)))
    card = RunCard.load(tmp_path)
    assert card.stage == "sft" and card.stage_settings == {} and card.precision == {}
    assert card.cutoff_len == 512 and card.prompt_format == "dbgpt"
