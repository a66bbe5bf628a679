"""The server's Possession over a real registry database: a proof lasts the TTL, and
the first upload a process records also deletes expired rows (then at most every
PRUNE_EVERY seconds)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from modelvc.registry import Registry
from modelvc.server.state import Possession, ServerConfig, ServerState


def test_proofs_expire_and_are_pruned(tmp_path: Path) -> None:
    with Registry.init(tmp_path / "repo") as reg:
        a, b, c = ("a" * 64, "b" * 64, "c" * 64)
        reg._meta.record_uploads("ann", [a], at=datetime.now(UTC) - timedelta(days=2))
        reg._meta.record_uploads("ann", [b], at=datetime.now(UTC) - timedelta(hours=1))
        p = Possession(lambda: reg, timedelta(days=1))
        assert p.unproven("ann", [a, b, c]) == [a, c]
        assert p.unproven("ann", []) == []
        p.add("bob", [c])
        assert p.unproven("bob", [a, c]) == [a]
        long_ago = datetime.now(UTC) - timedelta(days=30)
        assert reg._meta.uploaded("ann", [a, b], since=long_ago) == {b}  # a was deleted
        reg._meta.record_uploads("ann", [a], at=datetime.now(UTC) - timedelta(days=2))
        p.add("bob", [c])  # within PRUNE_EVERY of the last pass: no second delete
        assert reg._meta.uploaded("ann", [a], since=long_ago) == {a}


def test_ttl_comes_from_the_server_config(tmp_path: Path) -> None:
    Registry.init(tmp_path / "repo").close()
    st = ServerState(ServerConfig(registry=str(tmp_path / "repo"), upload_ttl_hours=0.5))
    try:
        assert st.possession.ttl == timedelta(minutes=30)
        st.possession.add("ann", ["d" * 64])
        assert st.possession.unproven("ann", ["d" * 64, "e" * 64]) == ["e" * 64]
    finally:
        st.close()
