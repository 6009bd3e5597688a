"""Choosing the number format to compute in: bfloat16 only where the hardware makes it fast.

On a GPU with bf16 support, and on a CPU with native bf16 instructions (AVX512-BF16 or AMX on x86,
the BF16 extension on Arm), bf16 halves memory traffic and runs matrix multiplies faster than
float32. On every other CPU (AVX2-only x86, AVX-512 without BF16) torch has no fast bf16 matrix
multiply and falls back to a scalar loop: measured 35-70x slower than float32. So `bf16=auto`
(the recipes' setting) asks the hardware, and an explicit `bf16=true` on such a CPU is honoured
with a loud warning.

`SQLTUNE_CPU_BF16=1|0` overrides the CPU answer (e.g. to reproduce the other machine's choice).
The CPU is judged by torch's own dispatch level (`torch.backends.cpu.get_cpu_capability()`), so
`ATEN_CPU_CAPABILITY=avx2` makes an AVX-512 machine answer as an AVX2-only one does.
"""

from __future__ import annotations

import functools
import os
import platform
import warnings
from pathlib import Path

from sqltune.errors import ConfigError, SqltuneWarning

X86 = {"x86_64", "amd64", "i386", "i686"}
ARM = {"aarch64", "arm64"}
NATIVE_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 (cpuinfo "flags"), Arm ("Features")


def cpu_flags() -> set[str] | None:
    """The CPU feature flags the Linux kernel reports, or None where there is no /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return set(value.split())
    return None


def cpu_capability() -> str:
    """torch's CPU dispatch level: DEFAULT, AVX2, AVX512 on x86 (others elsewhere)."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


@functools.cache
def cpu_bf16_is_fast() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (much faster than emulating them)."""
    override = os.environ.get("SQLTUNE_CPU_BF16", "").strip().lower()
    if override in ("1", "true", "yes"):
        return True
    if override in ("0", "false", "no"):
        return False
    machine = platform.machine().lower()
    flags = cpu_flags()
    if machine in X86:
        if not cpu_capability().upper().startswith("AVX512"):
            return False  # AVX2 or older: no bf16 instructions at all
        if flags is not None:
            return bool(flags & NATIVE_BF16_FLAGS)
    elif machine in ARM and flags is not None:
        return "bf16" in flags
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_description() -> str:
    """One phrase for messages and run cards, e.g. 'AVX2, no native bf16'."""
    native = "native bf16" if cpu_bf16_is_fast() else "no native bf16"
    return f"{cpu_capability()}, {native}"


def gpu_bf16() -> bool | None:
    """None without a GPU; else whether it supports bf16."""
    import torch

    if not torch.cuda.is_available():
        return None
    return bool(torch.cuda.is_bf16_supported())


def parse_bf16(value: object) -> bool | str:
    """`bf16` as given: True, False or 'auto' (a clear error for anything else)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ConfigError(f"bf16: expected true, false or auto, got {value!r}")


def resolve_training_bf16(requested: object, fp16: bool = False) -> bool:
    """The bf16 setting training really uses for `requested` (True/False/'auto').

    'auto': bf16 on a GPU that has it and on a CPU with native bf16, else float32 with a one-line
    warning that says why. True on a CPU without native bf16 is honoured with a loud warning.
    """
    requested = parse_bf16(requested)
    gpu = gpu_bf16()
    if requested == "auto":
        if fp16:
            return False
        if gpu is not None:
            return gpu
        if cpu_bf16_is_fast():
            return True
        warnings.warn(
            f"bf16=auto: this CPU ({cpu_description()}) multiplies bf16 matrices far slower than "
            "float32, so training runs in float32",
            SqltuneWarning,
            stacklevel=2,
        )
        return False
    if requested and gpu is None and not cpu_bf16_is_fast():
        warnings.warn(
            f"bf16=true on a CPU without native bf16 ({cpu_description()}): bf16 matrix multiplies "
            "fall back to a scalar loop, typically 35-70x slower than float32; use bf16=auto or "
            "bf16=false unless you mean it",
            SqltuneWarning,
            stacklevel=2,
        )
    return bool(requested)


def inference_dtype(requested: str = "auto") -> str:
    """The dtype to run inference in. `auto`: bfloat16 on a GPU that supports it (else float16),
    and on a CPU with native bf16; float32 on other CPUs."""
    if requested != "auto":
        return requested
    gpu = gpu_bf16()
    if gpu is not None:
        return "bfloat16" if gpu else "float16"
    return "bfloat16" if cpu_bf16_is_fast() else "float32"


def precision_name(bf16: bool, fp16: bool = False) -> str:
    return "bf16" if bf16 else "fp16" if fp16 else "fp32"
