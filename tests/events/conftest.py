from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelvc.registry import Registry
from tests.conftest import write_model
from tests.events.receiver import Receiver

SECRET = "s3cret-for-tests"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET).start()
    yield r
    r.stop()


def two_versions(reg: Registry, tmp_path: Path) -> tuple[str, str]:
    base = write_model(tmp_path / "a.safetensors", 1)
    write_model(tmp_path / "b.safetensors", 2, base=base)
    v1 = reg.commit(tmp_path / "a.safetensors", model="toy", message="base")
    v2 = reg.commit(tmp_path / "b.safetensors", model="toy", message="tuned")
    return v1.id, v2.id
