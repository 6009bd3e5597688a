"""A dataset that a command names but nobody registered: a demo one is built, any other is explained
with the command that builds it."""

import pytest

from sqltune.data.records import REGISTRY, dataset_entry, load_registry
from sqltune.errors import DataError


def test_a_demo_dataset_is_built_on_first_lookup_and_said_in_one_line(tmp_path, capsys):
    entry = dataset_entry(tmp_path, "demo_dev")
    assert entry["sqltune"]["source"] == "demo" and entry["sqltune"]["count"] == 100
    said = capsys.readouterr().err
    assert said.count("\n") == 1 and f"sqltune data source=demo split=dev output_dir={tmp_path}" in said
    assert dataset_entry(tmp_path, "demo_dev") == entry and capsys.readouterr().err == ""  # built once


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("spider_train", "sqltune data source=spider data_dir=<spider folder> split=train output_dir={dir}"),
        ("bird_dev", "sqltune data source=bird data_dir=<bird folder> split=dev output_dir={dir}"),
        (
            "sqlite_train",
            "sqltune data source=sqlite db=<database> questions=<pairs file> split=train output_dir={dir}",
        ),
        (
            "shop_pairs",
            "sqltune data source=<source> ... dataset_name=shop_pairs output_dir={dir} (docs/data.md)",
        ),
    ],
)
def test_any_other_dataset_names_the_command_that_builds_it(tmp_path, name, command):
    with pytest.raises(DataError) as caught:
        dataset_entry(tmp_path, name)
    message = str(caught.value)
    assert f"dataset '{name}' is not registered" in message and "(registered: none)" in message
    assert message.endswith(f"build it first: {command.format(dir=tmp_path)}")
    assert not (tmp_path / REGISTRY).exists()


def test_the_error_lists_what_is_registered(tmp_path, capsys):
    dataset_entry(tmp_path, "demo_dev")
    with pytest.raises(DataError, match=r"\(registered: demo_dev\)"):
        dataset_entry(tmp_path, "spider_dev")
    assert list(load_registry(tmp_path)) == ["demo_dev"]
