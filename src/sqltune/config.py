"""Command configuration: a YAML file plus `key=value` overrides, parsed into dataclass argument groups.

    sqltune train configs/x.yaml learning_rate=1e-4 lora_rank=16 --num_train_epochs 2

Later sources win: the YAML file, then the command-line items in order. Values are converted to the
type of the field they set (so `1e-4` becomes a float even though YAML reads it as a string), unknown
keys fail with the closest valid name, and DB-GPT-Hub's older names are accepted with a warning.
The groups are then built with the semantics of `transformers.HfArgumentParser.parse_dict` (each
group receives the keys it declares), the convention LLaMA-Factory users know, without importing
transformers. The argument groups of every command live in `sqltune.args`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from sqltune.errors import ConfigError, DataError
from sqltune.files import read_text

CONFIG_SUFFIXES = (".yaml", ".yml")

# Older DB-GPT-Hub names -> current names (LLaMA-Factory's).
RENAMED_KEYS = {"checkpoint_dir": "adapter_name_or_path"}
# DB-GPT-Hub split the length budget in two; sqltune has one budget for prompt + response.
SPLIT_LENGTH_KEYS = ("max_source_length", "max_target_length")

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"none", "null", "~", ""}


def field_map(groups: Sequence[type]) -> dict[str, tuple[type, dataclasses.Field]]:
    """Map every init field name of the groups to (group, field); the first group owning a name wins
    for typing, but `parse_dict` hands the value to every group that has the field."""
    fields: dict[str, tuple[type, dataclasses.Field]] = {}
    for group in groups:
        for f in dataclasses.fields(group):
            if f.init and f.name not in fields:
                fields[f.name] = (group, f)
    return fields


def field_type(group: type, f: dataclasses.Field) -> Any:
    try:
        return typing.get_type_hints(group)[f.name]
    except Exception:  # forward references a library cannot resolve: fall back to the raw annotation
        return f.type


def _type_options(tp: Any) -> tuple[list[Any], bool]:
    """Split a type hint into its non-None members and whether None is allowed."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or isinstance(tp, types.UnionType):
        args = list(typing.get_args(tp))
        return [a for a in args if a is not type(None)], type(None) in args
    return [tp], False


def _is_bool_field(group: type, f: dataclasses.Field) -> bool:
    return bool in _type_options(field_type(group, f))[0]


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a value read from the command line or YAML to the field's declared type. No option
    takes nan or infinity: `timeout=nan` would pass a `> 0` check and turn the time limit off."""
    converted = _convert(value, tp, key)
    if isinstance(converted, float) and not math.isfinite(converted):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    return converted


def _convert(value: Any, tp: Any, key: str) -> Any:
    options, nullable = _type_options(tp)
    if isinstance(value, str) and nullable and value.strip().lower() in _NONE:
        return None
    if not isinstance(value, str):
        if isinstance(value, int) and not isinstance(value, bool) and float in options and int not in options:
            return float(value)
        return value
    text = value.strip()
    for option in options:
        origin = typing.get_origin(option)
        if option is bool:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
        elif option is int:
            try:
                return int(text)
            except ValueError:
                pass
        elif option is float:
            try:
                return float(text)
            except ValueError:
                pass
        elif origin in (list, tuple) or option in (list, tuple):
            return [item.strip() for item in text.split(",") if item.strip()]
        elif option is str or option is Any:
            return value
    if any(o in (bool, int, float) for o in options) and not any(o is str for o in options):
        names = "/".join(getattr(o, "__name__", str(o)) for o in options)
        raise ConfigError(f"{key}: expected {names}, got {value!r}")
    return value


def _suggest(key: str, valid: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def load_yaml(path: str | Path) -> dict[str, Any]:
    try:
        text = read_text(path, "config file")
    except DataError as err:  # a config file is configuration, whatever is wrong with it
        raise ConfigError(str(err)) from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{where}: {getattr(err, 'problem', err)}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of key: value")
    return {str(k): v for k, v in loaded.items()}


def collect(argv: Sequence[str], groups: Sequence[type], positional: str | None = None) -> tuple[dict, dict]:
    """Gather `{key: value}` from argv (YAML file, `key=value`, `--key value`, `--flag`) and where each
    key came from. A bare positional argument that is not a YAML file sets the field `positional`."""
    fields = field_map(groups)
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        i += 1
        if item.startswith("--"):
            body = item[2:]
            if "=" in body:
                key, raw = body.split("=", 1)
            else:
                key = body
                entry = fields.get(key.replace("-", "_"))
                next_is_value = i < len(items) and not items[i].startswith("--")
                if entry and _is_bool_field(*entry):
                    raw = "true"
                    if next_is_value and items[i].lower() in _TRUE | _FALSE:
                        raw = items[i]
                        i += 1
                elif next_is_value:
                    raw = items[i]
                    i += 1
                else:
                    raw = "true"
            key = key.replace("-", "_")
            values[key], origin[key] = raw, "command line"
        elif "=" in item and not item.startswith("="):
            key, raw = item.split("=", 1)
            key = key.strip().replace("-", "_")
            values[key], origin[key] = raw, "command line"
        elif item.endswith(CONFIG_SUFFIXES):
            for key, value in load_yaml(item).items():
                values[key], origin[key] = value, item
        elif positional is not None and positional not in values:
            values[positional], origin[positional] = item, "command line"
        else:
            raise ConfigError(f"unexpected argument {item!r}: give a YAML file, key=value or --key value")
    return values, origin


def apply_aliases(values: dict[str, Any], origin: dict[str, str], valid: Sequence[str]) -> None:
    """Rewrite DB-GPT-Hub's older keys to current ones, with a deprecation warning."""
    for old, new in RENAMED_KEYS.items():
        if old in values and new in valid:
            warnings.warn(f"'{old}' is deprecated, use '{new}'", DeprecationWarning, stacklevel=3)
            values.setdefault(new, values.pop(old))
            origin[new] = origin.pop(old)
    split = [k for k in SPLIT_LENGTH_KEYS if k in values]
    if split and "cutoff_len" in valid:
        warnings.warn(
            "'max_source_length'/'max_target_length' are deprecated: sqltune has one budget, "
            "'cutoff_len' = prompt + response tokens",
            DeprecationWarning,
            stacklevel=3,
        )
        total = 0
        for key in split:
            try:
                total += int(values.pop(key))
            except (TypeError, ValueError):
                raise ConfigError(f"{key}: expected int") from None
            origin["cutoff_len"] = origin.pop(key)
        values.setdefault("cutoff_len", total)


def parse_args(groups: Sequence[type], argv: Sequence[str], positional: str | None = None) -> tuple[Any, ...]:
    """Parse argv into one instance per argument group (see the module docstring)."""
    fields = field_map(groups)
    values, origin = collect(argv, groups, positional)
    apply_aliases(values, origin, list(fields))
    for key in values:
        if key not in fields:
            where = origin.get(key, "command line")
            raise ConfigError(f"unknown key '{key}' ({where}){_suggest(key, list(fields))}")
    typed = {key: coerce(value, field_type(*fields[key]), key) for key, value in values.items()}
    return build_groups(groups, typed)


def build_groups(groups: Sequence[type], values: dict[str, Any]) -> tuple[Any, ...]:
    """One instance per group, each given the values of its own fields: the semantics of
    `transformers.HfArgumentParser.parse_dict`, without importing transformers (about a second of
    start-up that `sqltune data` and `sqltune eval` do not need)."""
    instances = []
    for group in groups:
        names = {f.name for f in dataclasses.fields(group) if f.init}
        try:
            instances.append(group(**{k: v for k, v in values.items() if k in names}))
        except ConfigError:
            raise
        except (TypeError, ValueError) as err:
            raise ConfigError(f"invalid configuration: {err}") from None
    return tuple(instances)


def format_help(groups: Sequence[type], command: str) -> str:
    """One line per option: name, type, default and help text."""
    lines = [f"usage: sqltune {command} [CONFIG.yaml] [key=value ...] [--key value ...]", ""]
    for group in groups:
        lines.append(f"{group.__name__}:")
        for f in dataclasses.fields(group):
            if not f.init:
                continue
            default = f.default if f.default is not dataclasses.MISSING else "(required)"
            if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                default = f.default_factory()  # type: ignore[misc]
            text = f.metadata.get("help", "")
            lines.append(f"  {f.name} = {default!r}  {text}".rstrip())
        lines.append("")
    return "\n".join(lines)


def as_dict(*instances: Any) -> dict[str, Any]:
    """Flatten argument groups into one JSON-friendly dict (for run cards)."""
    out: dict[str, Any] = {}
    for obj in instances:
        data = obj.to_dict() if hasattr(obj, "to_dict") else dataclasses.asdict(obj)
        for key, value in data.items():
            out.setdefault(
                key,
                value if isinstance(value, (str, int, float, bool, list, dict, type(None))) else str(value),
            )
    return out
