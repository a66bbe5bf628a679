"""The lineage graph's lanes: no edge runs over another version, lanes are reused."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from modelvc.api import Version
from modelvc.ui.graph import layout, svg


def _v(n: int, parents: list[int]) -> Version:
    return Version(id=f"id{n}", model="m", number=n, created_at=datetime.now(UTC),
                      author="a", message=f"m{n}", parents=[f"id{p}" for p in parents],
                      params={}, metrics={}, lineage={}, raw_size=1, stored_size=1)


def _check(vs: list[Version]) -> int:
    lay = layout(vs)
    assert [nd.v.number for nd in lay.nodes] == sorted((v.number for v in vs), reverse=True)
    at = {(nd.lane, nd.row) for nd in lay.nodes}
    for child, parent, merge in lay.edges:
        if parent is None or merge:
            continue
        # the first-parent edge runs down the child's lane to just above the parent
        for row in range(child.row + 1, parent.row):
            assert (child.lane, row) not in at, (child.v.number, parent.v.number, row)
    return lay.lanes


def test_linear_history_is_one_lane() -> None:
    assert _check([_v(1, []), _v(2, [1]), _v(3, [2])]) == 1


def test_branches_and_exports_take_lanes_and_free_them() -> None:
    # main: 1-2-4-6; dev from 1: 3-5; export leaf from 2: 7 (reuses no busy lane)
    vs = [_v(1, []), _v(2, [1]), _v(3, [1]), _v(4, [2]), _v(5, [3]), _v(6, [4]),
          _v(7, [2]), _v(8, [6, 5])]
    lanes = _check(vs)
    lay = layout(vs)
    lane = {nd.v.number: nd.lane for nd in lay.nodes}
    assert lane[1] == lane[2] == lane[4] == lane[6] == lane[8] == 0
    assert lane[3] == lane[5] != 0
    assert lanes == 3
    assert len([e for e in lay.edges if e[2]]) == 1  # the merge into v8


def test_parents_outside_the_window_are_stubs() -> None:
    lay = layout([_v(5, [4]), _v(6, [5])])
    assert [(c.v.number, p) for c, p, _ in lay.edges if p is None] == [(5, None)]


def test_svg_escapes_and_labels_every_version() -> None:
    v = _v(1, [])
    v = Version(**{**v.__dict__, "message": "<script>x</script> & more"})
    out = svg(layout([v]), lambda _id: [], lambda v: f"/v/{v.number}", title="t <&>")
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert 'aria-label="t &lt;&amp;&gt;"' in out and 'aria-label="v1 by a: ' in out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 10**6), max_size=2), min_size=1, max_size=60))
def test_random_histories_never_draw_over_a_version(picks: list[list[int]]) -> None:
    vs = []
    for n, ps in enumerate(picks, start=1):
        parents = sorted({p % (n - 1) + 1 for p in ps}) if n > 1 else []
        vs.append(_v(n, parents))
    _check(vs)


def _derived(n: int, parents: list[int], source: int, recipe: str = "cast") -> Version:
    v = _v(n, parents)
    rec = {"version": f"id{source}", "recipe": recipe, "params": {"dtype": "bf16"}}
    return Version(**{**v.__dict__, "lineage": {"derived_from": rec}})


def test_a_derived_version_hangs_off_its_source_dashed_and_labelled() -> None:
    # 1-2-3 on main; 4 = cast of 2 (its parent, as `modelvc derive` commits it)
    vs = [_v(1, []), _v(2, [1]), _v(3, [2]), _derived(4, [2], 2)]
    lay = layout(vs)
    assert [(c.v.number, s.v.number if s else None, t) for c, s, t in lay.derived] == [
        (4, 2, "cast (dtype=bf16)")]
    lane = {nd.v.number: nd.lane for nd in lay.nodes}
    assert lane[4] != lane[2]  # off the main line
    out = svg(lay, lambda _id: [], lambda v: f"/v/{v.number}", title="t")
    assert out.count('class="derived"') == 2  # one dashed edge, one text label
    assert "[cast of v2]" in out
    assert 'aria-label="v4 by a: m4, derived from v2 by cast (dtype=bf16)"' in out
    assert "derived from" not in out.split('aria-label="v3')[1].split(">")[0]


def test_a_source_that_is_no_parent_gets_its_own_dashed_edge() -> None:
    # a team's tool records v1 as the source of v3 whose parent is v2
    lay = layout([_v(1, []), _v(2, [1]), _derived(3, [2], 1, "distill")])
    out = svg(lay, lambda _id: [], lambda v: f"/v/{v.number}", title="t")
    assert out.count("<path") == 3 and out.count('class="derived"') == 2
    assert "[distill of v1]" in out


def test_a_source_outside_the_window_is_named_by_its_number_or_id() -> None:
    lay = layout([_v(5, [4]), _derived(6, [5], 1)])
    assert [(c.v.number, s) for c, s, _ in lay.derived] == [(6, None)]
    out = svg(lay, lambda _id: [], lambda v: f"/v/{v.number}", title="t")
    assert "[cast of id1]" in out
