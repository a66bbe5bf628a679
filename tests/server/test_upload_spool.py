"""Commit uploads above upload_spool_mb stream to a temp file (bounded memory) and are
stored from it, deltas included. A real `modelvc server` with the threshold lowered
through its environment (MODELVC_SERVER_UPLOAD_SPOOL_MB)."""

from __future__ import annotations

from pathlib import Path

import blake3
import httpx
import numpy as np
from safetensors.numpy import save_file

from modelvc.registry import Registry
from tests.services.server import ServerProcess, grant_token

BIG = (4352, 4096)  # float32: 68 MiB, over the default 64 MiB threshold too


def _save(path: Path, big: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"big.weight": big, "bias": np.arange(16, dtype=np.float32)}, str(path))


def test_large_uploads_stream_to_disk_and_round_trip(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    Registry.init(repo).close()
    token = grant_token(repo, "wes", "writer", "big")
    server = ServerProcess(repo, tmp_path / "log",
                           env={"MODELVC_SERVER_UPLOAD_SPOOL_MB": "4"}).start()
    try:
        with httpx.Client(base_url=f"{server.url}/api/v1/models/big", timeout=120,
                          headers={"Authorization": f"Bearer {token}"}) as c:
            # A 5 MiB tensor goes through the temp file; a small blob stays in memory.
            raw = np.linspace(0, 1, 5 << 18, dtype=np.float32).tobytes()
            oid = blake3.blake3(raw).hexdigest()
            r = c.put(f"/uploads/{oid}", content=raw,
                      params={"kind": "tensor", "dtype": "F32", "shape": str(5 << 18)})
            assert r.status_code == 200, r.text
            assert r.json()["spooled"] is True and r.json()["new"] is True
            small = b"small"
            r = c.put(f"/uploads/{blake3.blake3(small).hexdigest()}", content=small)
            assert r.json()["spooled"] is False
            # Spooled bytes that do not hash to the id are refused and not stored.
            wrong = blake3.blake3(b"other").hexdigest()
            r = c.put(f"/uploads/{wrong}", content=raw,
                      params={"kind": "tensor", "dtype": "F32", "shape": str(5 << 18)})
            assert (r.status_code, r.json()["error"]) == (400, "DamagedUpload")
            assert c.post("/uploads/missing", json={"ids": [wrong, oid]}).json() == {
                "missing": [wrong]}

        rng = np.random.default_rng(0)
        base = rng.standard_normal(BIG, dtype=np.float32)
        tuned = base + np.float32(1e-3) * rng.standard_normal(BIG, dtype=np.float32)
        _save(tmp_path / "v1" / "model.safetensors", base)
        _save(tmp_path / "v2" / "model.safetensors", tuned)
        with Registry.open(server.url, token=token) as reg:
            v1 = reg.commit(tmp_path / "v1", model="big", message="base")
            v2 = reg.commit(tmp_path / "v2", model="big", message="fine-tune")
            # The fine-tune was stored as a delta against v1's tensor, from the temp file.
            assert v2.stored_size < 0.8 * v2.raw_size
            for v, src in ((v1, "v1"), (v2, "v2")):
                out = tmp_path / f"out-{src}"
                reg.checkout(f"big@{v.id}", out)  # verifies each file's sha256
                assert (out / "model.safetensors").read_bytes() == (
                    tmp_path / src / "model.safetensors").read_bytes()
    finally:
        server.stop()
    with Registry.open(repo) as local:
        assert not local.verify().corrupt
