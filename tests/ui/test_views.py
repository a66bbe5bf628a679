"""The UI's caches over a real registry: fresh after a change, bounded work when stale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelvc.registry import Registry
from modelvc.ui.views import SummaryCache, VersionsCache, model_list


class Counting:
    """The real registry, counting the calls the UI makes (a spy, not a stand-in)."""

    def __init__(self, reg: Registry) -> None:
        self._reg = reg
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._reg, name)
        if not callable(attr):
            return attr

        def call(*a: Any, **kw: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return attr(*a, **kw)

        return call


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _commit(reg: Registry, tmp: Path, model: str, body: bytes) -> None:
    f = tmp / "w.bin"
    f.write_bytes(body)
    reg.commit(f, model=model)


def test_versions_cache_sees_a_commit_at_once(reg: Registry, tmp_path: Path) -> None:
    _commit(reg, tmp_path, "m", b"one")
    spy = Counting(reg)
    cache = VersionsCache(clock=Clock())
    assert [v.number for v in cache.get(spy, "m")[0].versions] == [1]  # type: ignore[arg-type]
    assert [v.number for v in cache.get(spy, "m")[0].versions] == [1]  # type: ignore[arg-type]
    assert spy.calls == {"refs": 2, "versions": 1}
    _commit(reg, tmp_path, "m", b"two")  # moves the branch: the refs differ
    assert [v.number for v in cache.get(spy, "m")[0].versions] == [2, 1]  # type: ignore[arg-type]
    assert spy.calls == {"refs": 3, "versions": 2}


def test_sorting_all_models_refreshes_a_bounded_number(reg: Registry, tmp_path: Path) -> None:
    for i in range(12):
        _commit(reg, tmp_path, f"m{i:02d}", b"x" * (i + 1))
    spy = Counting(reg)
    clock = Clock()
    cache = SummaryCache(ttl=10, clock=clock)
    first = model_list(spy, cache, sort="raw", desc=True, per_page=5, refresh=3)  # type: ignore[arg-type]
    assert [s.name for s in first.rows] == ["m11", "m10", "m09", "m08", "m07"]
    assert spy.calls["refs"] == 12  # never seen: each summarized once
    spy.calls.clear()
    clock.t = 11  # all stale: 3 refreshed for the order, and the 5 rows shown
    again = model_list(spy, cache, sort="raw", desc=True, per_page=5, refresh=3)  # type: ignore[arg-type]
    assert [s.name for s in again.rows] == [s.name for s in first.rows]
    assert spy.calls["refs"] <= 3 + 5
    spy.calls.clear()
    by_name = model_list(spy, cache, sort="name", page=3, per_page=5)  # type: ignore[arg-type]
    assert [s.name for s in by_name.rows] == ["m10", "m11"] and by_name.pages == 3
    assert spy.calls.get("refs", 0) <= 2  # only the page's rows


def test_an_old_entry_is_reread_in_the_background(reg: Registry, tmp_path: Path) -> None:
    _commit(reg, tmp_path, "m", b"one")
    _commit(reg, tmp_path, "m", b"two")
    spy = Counting(reg)
    clock = Clock()
    cache = VersionsCache(ttl=30, clock=clock)
    cache.get(spy, "m")  # type: ignore[arg-type]
    reg.delete("m@v1", reason="test")  # moves no ref
    clock.t = 31
    stale, _ = cache.get(spy, "m")  # type: ignore[arg-type]
    assert [v.deleted_at is None for v in stale.versions] == [True, True]  # served at once
    cache.settle()
    fresh, _ = cache.get(spy, "m")  # type: ignore[arg-type]
    assert [v.number for v in fresh.live] == [2]
    assert spy.calls["versions"] == 2


def test_audit_pages_walk_the_trail_through_the_registry(tmp_path: Path,
                                                         monkeypatch: Any) -> None:
    from modelvc.ui import pages

    monkeypatch.setattr(pages, "AUDIT_PAGE", 3)
    with Registry.init(tmp_path / "repo") as reg:
        for i in range(8):
            _commit(reg, tmp_path, "a" if i % 2 else "b", b"w%d" % i)
        trail = [e.id for e in reversed(reg.audit(model="a"))]  # newest first
        assert len(trail) == 4
        spy = Counting(reg)
        cache = VersionsCache()
        first = pages.audit_page(spy, cache, model="a",  # type: ignore[arg-type]
                                 verify=False)
        # The registry pages: the first page is one call (LIMIT+1 newest), never the trail.
        assert [r.r.id for r in first["rows"]] == trail[:3]
        assert first["older"] and not first["newer"]
        # each commit's entry names its version by number (a link on the page)
        assert [r.after.number for r in first["rows"]] == [4, 3, 2]
        assert [r.before.number for r in first["rows"]] == [3, 2, 1]  # the branch before
        last = pages.audit_page(reg, cache, model="a", before=first["rows"][-1].r.id,
                                verify=False)
        assert [r.r.id for r in last["rows"]] == trail[3:]
        assert last["newer"] and not last["older"]
        back = pages.audit_page(reg, cache, model="a", after=last["rows"][0].r.id,
                                verify=False)
        assert [r.r.id for r in back["rows"]] == trail[:3]
        assert back["older"] and not back["newer"]
    # one audit call, and the versions read once to name them (cached for the pages)
    assert spy.calls == {"audit": 1, "refs": 1, "versions": 1}


def test_versions_cache_evicts_least_recently_used_by_versions_held(
        reg: Registry, tmp_path: Path) -> None:
    for m, n in (("big", 3), ("a", 1), ("b", 1)):
        for i in range(n):
            _commit(reg, tmp_path, m, b"%s %d" % (m.encode(), i))
    spy = Counting(reg)
    cache = VersionsCache(clock=Clock(), budget=4)
    cache.get(spy, "big")  # type: ignore[arg-type]
    cache.get(spy, "a")  # type: ignore[arg-type]  # 4 versions held
    cache.get(spy, "big")  # type: ignore[arg-type]  # used again: "a" is the oldest now
    cache.get(spy, "b")  # type: ignore[arg-type]  # 5 > 4: "a" goes, "big" stays
    assert spy.calls["versions"] == 3
    cache.get(spy, "big")  # type: ignore[arg-type]
    assert spy.calls["versions"] == 3
    cache.get(spy, "a")  # type: ignore[arg-type]
    assert spy.calls["versions"] == 4


def test_audit_cells_name_versions_and_gate_verdicts() -> None:
    from modelvc.ui.views import audit_cell

    vid = "c" * 64
    gate = audit_cell({"failed": ["metric: acc >= 0.9"], "passed": False, "policy": "a" * 64,
                       "version": vid}, {vid: 3})
    assert gate is not None and (gate.number, gate.text) == (3, "failed: metric: acc >= 0.9")
    assert '"policy": "' + "a" * 64 in gate.full  # the whole entry stays one click away
    moved = audit_cell({"kind": "channel", "version": vid}, {vid: 3})
    assert moved is not None and (moved.number, moved.text) == (3, "")
    gone = audit_cell({"version": vid, "role": None}, {})  # a version deleted since
    assert gone is not None and (gone.number, gone.text) == (None, "role -, version cccccccccccc")
    assert audit_cell(None, {}) is None
