"""bf16 is chosen only where the hardware computes it fast, both ways, whatever CPU runs the test."""

from __future__ import annotations

import warnings

import pytest

from sqltune import precision
from sqltune.errors import ConfigError, SqltuneWarning

AVX2_FLAGS = {"fpu", "sse2", "avx", "avx2", "fma"}
AVX512_BF16_FLAGS = AVX2_FLAGS | {"avx512f", "avx512bw", "avx512_bf16"}


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to be a given x86 CPU without a GPU: `cpu(capability, flags)`."""

    def use(capability: str, flags: set[str] | None) -> None:
        monkeypatch.delenv("SQLTUNE_CPU_BF16", raising=False)
        monkeypatch.setattr(precision.platform, "machine", lambda: "x86_64")
        monkeypatch.setattr(precision, "cpu_capability", lambda: capability)
        monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
        monkeypatch.setattr(precision, "gpu_bf16", lambda: None)
        precision.cpu_bf16_is_fast.cache_clear()

    yield use
    precision.cpu_bf16_is_fast.cache_clear()


def test_avx2_cpu_trains_auto_in_float32_with_one_warning(cpu):
    cpu("AVX2", AVX2_FLAGS)
    assert not precision.cpu_bf16_is_fast()
    with pytest.warns(SqltuneWarning, match=r"bf16=auto: this CPU \(AVX2, no native bf16\).*float32"):
        assert precision.resolve_training_bf16("auto") is False
    assert precision.inference_dtype("auto") == "float32"


def test_native_bf16_cpu_trains_auto_in_bf16_silently(cpu):
    cpu("AVX512", AVX512_BF16_FLAGS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert precision.resolve_training_bf16("auto") is True
    assert precision.inference_dtype("auto") == "bfloat16"


def test_avx512_without_bf16_instructions_is_not_fast(cpu):
    cpu("AVX512", AVX2_FLAGS | {"avx512f", "avx512bw"})
    assert not precision.cpu_bf16_is_fast()


def test_explicit_bf16_on_a_slow_cpu_is_honoured_loudly(cpu):
    cpu("AVX2", AVX2_FLAGS)
    with pytest.warns(SqltuneWarning, match="35-70x slower"):
        assert precision.resolve_training_bf16(True) is True
    assert precision.resolve_training_bf16(False) is False


def test_environment_override(cpu, monkeypatch):
    cpu("AVX2", AVX2_FLAGS)
    monkeypatch.setenv("SQLTUNE_CPU_BF16", "1")
    precision.cpu_bf16_is_fast.cache_clear()
    assert precision.cpu_bf16_is_fast()


def test_gpu_decides_when_present(cpu, monkeypatch):
    cpu("AVX2", AVX2_FLAGS)
    monkeypatch.setattr(precision, "gpu_bf16", lambda: False)
    assert precision.resolve_training_bf16("auto") is False
    assert precision.inference_dtype("auto") == "float16"


def test_bad_value_names_the_key():
    with pytest.raises(ConfigError, match="bf16: expected true, false or auto"):
        precision.parse_bf16("sometimes")


def test_training_arguments_resolve_auto_and_keep_the_request(cpu, tmp_path):
    from sqltune.config import parse_args
    from sqltune.train.arguments import TrainingArguments

    cpu("AVX2", AVX2_FLAGS)
    with pytest.warns(SqltuneWarning):
        (args,) = parse_args((TrainingArguments,), [f"output_dir={tmp_path}", "bf16=auto"])
    assert args.bf16 is False and args.bf16_requested == "auto"
    cpu("AVX512", AVX512_BF16_FLAGS)
    (args,) = parse_args((TrainingArguments,), [f"output_dir={tmp_path}", "bf16=auto"])
    assert args.bf16 is True and args.use_cpu


def test_cli_formats_sqltune_warnings_on_one_line(monkeypatch):
    from sqltune.cli import one_line_warnings

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored afterwards
    one_line_warnings("train")
    text = warnings.formatwarning("bf16=auto: slow", SqltuneWarning, "x.py", 3)
    assert text == "sqltune train: warning: bf16=auto: slow\n"
    assert "x.py:3" in warnings.formatwarning("other", UserWarning, "x.py", 3)
