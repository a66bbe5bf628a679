"""A real modelvc server on loopback holding a tiny BERT in three versions, and the
environment Hub clients read (HF_ENDPOINT, HF_HOME, HF_TOKEN) pointed at it."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from modelvc.registry import Registry
from tests.services.ports import free_port
from tests.services.server import grant_token

ROOT = Path(__file__).resolve().parents[2]
REPO = "acme/tiny-bert"  # served as the modelvc model acme--tiny-bert
MODEL = "acme--tiny-bert"
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "model", "version"]



@dataclass
class Hub:
    url: str
    token: str  # alice: writer on every model, admin scope
    registry: Path
    folders: dict[int, Path]  # version number -> the folder committed as it
    ids: dict[int, str] = field(default_factory=dict)  # version number -> version id
    pid: int = 0  # the server process
    reader_token: str = ""  # carol: reader on every model

    def open(self) -> Registry:
        return Registry.open(self.registry)

    def sha(self, number: int) -> str:
        return self.ids[number][:40]


def tiny_bert(folder: Path, seed: int, *, extra: bool = False) -> None:
    """save_pretrained of a tiny random BERT plus a tokenizer built offline."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    torch.manual_seed(seed)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, vocab_size=99)
    BertModel(config).save_pretrained(folder)
    BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)}).save_pretrained(folder)
    if extra:
        (folder / "extra").mkdir()
        (folder / "extra" / "notes.txt").write_text("trained on the exp branch\n")


def _wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60  # guards against hanging only
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=5):
                return
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """v1, v2 on main; v3 (with a subfolder) on branch exp. production -> v1,
    staging -> v2, tag gold -> v3. A writer token for alice."""
    root = tmp_path_factory.mktemp("hfhub")
    folders = {n: root / f"v{n}" for n in (1, 2, 3)}
    for n, folder in folders.items():
        tiny_bert(folder, seed=n, extra=n == 3)
    hub = Hub("", "", root / "registry", folders)
    with Registry.init(hub.registry) as reg:
        for n, branch in ((1, "main"), (2, "main"), (3, "exp")):
            v = reg.commit(folders[n], model=MODEL, branch=branch, message=f"v{n}",
                           author="tester", cwd=root)
            hub.ids[v.number] = v.id
        reg.promote(f"{MODEL}@v1", "production", actor="tester", create=True)
        reg.promote(f"{MODEL}@v2", "staging", actor="tester", create=True)
        reg.tag(f"{MODEL}@v3", "gold", actor="tester")
    hub.token = grant_token(hub.registry, "alice", "writer", scopes=["admin:*"])
    hub.reader_token = grant_token(hub.registry, "carol", "reader", scopes=["admin:*"])
    port = free_port()
    hub.url = f"http://127.0.0.1:{port}"
    log = (root / "server.log").open("wb")
    modelvc = Path(sys.executable).with_name("modelvc")
    proc = subprocess.Popen([str(modelvc), "server", "--registry", str(hub.registry),
                             "--port", str(port), "--log-level", "warning"],
                            stdout=log, stderr=subprocess.STDOUT)
    hub.pid = proc.pid
    try:
        _wait_up(hub.url, proc)
        yield hub
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture
def hf_env(hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """HF_ENDPOINT and friends for this test, with a fresh HF_HOME; huggingface_hub reads
    them into module constants at import, so they are reloaded (and again afterwards)."""
    import huggingface_hub.constants as constants

    home = tmp_path / "hf-home"
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_TOKEN", hub.token)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    importlib.reload(constants)
    try:
        yield home / "hub"
    finally:
        monkeypatch.undo()
        importlib.reload(constants)


def os_env_for(hub: Hub, home: Path) -> dict[str, str]:
    """The environment of a client subprocess (a second huggingface_hub version)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(home), HF_TOKEN=hub.token,
               HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1")
    return env


def supported_hub_range() -> tuple[str, int, int]:
    """The huggingface_hub range declared in pyproject.toml, its oldest and newest major."""
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text())
    spec = doc["tool"]["modelvc"]["supported-clients"]["huggingface_hub"]
    low = re.search(r">=\s*(\d+)\.", spec)
    high = re.search(r"<\s*(\d+)", spec)
    assert low and high, spec
    return spec, int(low.group(1)), int(high.group(1)) - 1


def _usable(python: Path, major: int) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", "import huggingface_hub as h; "
                            "print(h.__version__)"], capture_output=True, text=True)
    return probe.returncode == 0 and probe.stdout.startswith(f"{major}.")


def hub0_venv() -> Path:
    """A venv with the oldest supported major of huggingface_hub (0.x), built once per
    machine in the test cache (tests/services/sidevenv.py; scripts/test builds it
    beside ruff and mypy)."""
    from tests.services.sidevenv import side_venv

    spec, oldest, _ = supported_hub_range()
    low = spec.split(",")[0].strip()
    return side_venv("hf0", [f"huggingface_hub{low},<{oldest + 1}"],
                     lambda python: _usable(python, oldest))


@pytest.fixture(scope="session")
def hub0_python() -> Path:
    return hub0_venv()
