from dataclasses import dataclass, field

import pytest

from sqltune.config import parse_args
from sqltune.errors import ConfigError


@dataclass
class Model:
    model_name_or_path: str = "m"
    adapter_name_or_path: str | None = None
    quantization_bit: int | None = None


@dataclass
class Train:
    learning_rate: float = 1e-3
    lora_rank: int = 8
    lora_target: list[str] = field(default_factory=lambda: ["all"])
    cutoff_len: int = 1024
    packing: bool = False
    output_dir: str = "out"


GROUPS = (Model, Train)


def test_yaml_then_overrides_in_order(tmp_path):
    cfg = tmp_path / "x.yaml"
    cfg.write_text("learning_rate: 1e-4\nlora_rank: 4\nmodel_name_or_path: base\n")
    model, train = parse_args(GROUPS, [str(cfg), "lora_rank=16", "--packing", "--output_dir", "o2"])
    assert model.model_name_or_path == "base"
    assert train.learning_rate == pytest.approx(1e-4)  # YAML reads 1e-4 as a string; coerced
    assert train.lora_rank == 16
    assert train.packing is True
    assert train.output_dir == "o2"


def test_types_lists_none_and_flags():
    model, train = parse_args(
        GROUPS,
        ["lora_target=q_proj,v_proj", "quantization_bit=none", "--packing", "false", "--cutoff-len=256"],
    )
    assert train.lora_target == ["q_proj", "v_proj"]
    assert model.quantization_bit is None
    assert train.packing is False
    assert train.cutoff_len == 256


def test_unknown_key_names_it_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown key 'lora_rnak'.*did you mean 'lora_rank'"):
        parse_args(GROUPS, ["lora_rnak=8"])


def test_unknown_key_in_yaml_names_the_file(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("learning_rat: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*learning_rate"):
        parse_args(GROUPS, [str(cfg)])


def test_bad_value_names_the_key():
    with pytest.raises(ConfigError, match="lora_rank"):
        parse_args(GROUPS, ["lora_rank=many"])


def test_dbgpt_hub_aliases_warn(recwarn):
    model, train = parse_args(
        GROUPS, ["checkpoint_dir=ckpt", "max_source_length=900", "max_target_length=124"]
    )
    assert model.adapter_name_or_path == "ckpt"
    assert train.cutoff_len == 1024
    messages = " ".join(str(w.message) for w in recwarn.list)
    assert "checkpoint_dir" in messages and "max_source_length" in messages


def test_malformed_yaml_names_file_and_line(tmp_path):
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("lora_rank: 8\nlearning_rate: [1e-4\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: malformed YAML at line"):
        parse_args(GROUPS, [str(cfg)])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        parse_args(GROUPS, [str(tmp_path / "nope.yaml")])
