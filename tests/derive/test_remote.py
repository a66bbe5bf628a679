"""derive and --check over a real `modelvc server`: the same code on RemoteRegistry,
with a writer's token (the record travels in the commit; the check's tag is the
writer's)."""

from __future__ import annotations

from pathlib import Path

from modelvc.derive import check, derive
from modelvc.registry import Registry
from modelvc.remote import RemoteRegistry
from tests.conftest import write_model
from tests.services.server import ServerProcess, grant_token
from tests.transfer.conftest import server  # noqa: F401  (the fixture)


def test_derive_and_check_over_a_server(server: ServerProcess, tmp_path: Path  # noqa: F811
                                        ) -> None:
    token = grant_token(server.registry, "wes", "writer", "m")
    d = tmp_path / "m"
    write_model(d / "model.safetensors", 1)
    with Registry.open(server.url, token=token) as reg:
        assert isinstance(reg, RemoteRegistry)
        src = reg.commit(d, model="m")
        out = derive(reg, "m@v1", "cast", to="bf16")
        v = reg.resolve("m@bf16")
        assert v.id == out.version.id and v.parents == [src.id]
        assert v.lineage["derived_from"]["version"] == src.id
        assert v.stored_size < v.raw_size / 4  # a cast delta, also through the server
        r = check(reg, "m@bf16")
        assert r.ok and r.tag == "derive-ok-v2"
        assert reg.resolve("m@derive-ok-v2").id == v.id
        assert [a.actor for a in reg.audit(model="m") if "derive-ok" in str(a.target)] == [
            "wes"]
