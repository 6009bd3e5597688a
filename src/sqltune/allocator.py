"""The memory allocator a training process runs on: tcmalloc in place of glibc's malloc when installed.

A training step frees and allocates activations of many sizes. glibc's malloc serves large blocks
from a heap that then fragments, so the resident memory grows far past what is alive; tcmalloc
keeps it close while staying as fast (docs/benchmarks.md: LoRA on SmolLM2-135M at batch 8 x 512,
bf16, peak 3.8 GB on glibc and 2.9 GB on tcmalloc at the same speed; in float32 8.3 against 4.3 GB;
jemalloc saved as much as tcmalloc but ran a third slower).

An allocator must be loaded before the process starts, so `sqltune train` and `sqltune run`, when
started as programs, start themselves again with the library in `LD_PRELOAD`, the way PyTorch's
own CPU launcher (`torch.backends.xeon.run_cpu`) does. `SQLTUNE_ALLOCATOR` chooses:

* `auto` (default): tcmalloc if the system has it (Debian/Ubuntu: `libtcmalloc-minimal4`), else
  the system's malloc;
* `tcmalloc` or `jemalloc` (`libjemalloc2`): that one, or an error naming the package;
* `system`: glibc's malloc, as started.

Linux only; a process that already preloads an allocator is left alone. The run card's metrics say
which allocator the training ran on (`memory_allocator`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sqltune.errors import ConfigError

ENV = "SQLTUNE_ALLOCATOR"
CHOICES = ("auto", "tcmalloc", "jemalloc", "system")
# allocator -> (names for ctypes.util.find_library, the Debian package)
LIBRARIES = {
    "tcmalloc": (("tcmalloc_minimal", "tcmalloc"), "libtcmalloc-minimal4"),
    "jemalloc": (("jemalloc",), "libjemalloc2"),
}
_STARTED_AGAIN = "SQLTUNE_ALLOCATOR_STARTED"  # set in the new process: never start a third one


def loaded() -> str:
    """The allocator this process runs on: "tcmalloc", "jemalloc" or "system"."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    for name in LIBRARIES:
        if f"lib{name}" in maps:
            return name
    return "system"


def find(name: str) -> str | None:
    """The shared library of allocator `name` as the dynamic loader names it, or None."""
    import ctypes.util

    names, _ = LIBRARIES[name]
    return next((found for found in map(ctypes.util.find_library, names) if found), None)


def choice() -> str:
    """SQLTUNE_ALLOCATOR, "auto" when unset."""
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise ConfigError(f"{ENV}={value!r}: choose one of {', '.join(CHOICES)}")
    return value


def preload(wanted: str) -> dict[str, str]:
    """The environment variables that start a process on allocator `wanted` (one of CHOICES):
    none for "system", off Linux, or, for "auto", when tcmalloc is not installed."""
    if wanted == "system" or not sys.platform.startswith("linux"):
        return {}
    name = "tcmalloc" if wanted == "auto" else wanted
    library = find(name)
    if library is None:
        if wanted == "auto":
            return {}
        raise ConfigError(
            f"{ENV}={wanted}: the {name} library is not installed (Debian/Ubuntu: apt-get install "
            f"{LIBRARIES[name][1]}); {ENV}=system uses the system's malloc"
        )
    return {
        "LD_PRELOAD": ":".join(filter(None, [library, os.environ.get("LD_PRELOAD")])),
        "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": os.environ.get(
            "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", str(1 << 40)
        ),  # no notice for every large tensor
    }


def restart_with_allocator() -> None:
    """Start this program again with the chosen allocator preloaded (module docstring); returns
    when there is nothing to change."""
    wanted = choice()
    if os.environ.get(_STARTED_AGAIN) or loaded() != "system":
        return
    env = preload(wanted)
    if not env:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, {**os.environ, **env, _STARTED_AGAIN: "1"})
