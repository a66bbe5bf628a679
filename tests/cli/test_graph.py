"""`modelvc log --graph` draws branches as `git log --graph` does."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from modelvc.cli.graph import graph
from tests.cli.test_cli import run
from tests.conftest import write_model


def _shape(stdout: str) -> list[str]:
    """Each line's graph part, the version number standing in for the rest."""
    out = []
    for line in stdout.splitlines():
        m = re.match(r"^([|*M/\\_ ]*?)\s*(v\d+)\s", line)
        out.append(f"{m.group(1).rstrip()} {m.group(2)}" if m else line.rstrip())
    return out


def test_log_graph_draws_branches(tmp_path: Path) -> None:
    run(["init"], tmp_path)
    base = write_model(tmp_path / "0.safetensors", 0)
    for i in range(1, 6):
        write_model(tmp_path / f"{i}.safetensors", i, base=base)

    def commit(i: int, *args: str) -> None:
        run(["commit", f"{i}.safetensors", "--model", "g", "-m", f"c{i}", *args], tmp_path)

    commit(0)                                   # v1 main
    commit(1)                                   # v2 main
    commit(2, "-b", "dev", "--parent", "g@v1")  # v3 dev, off v1
    commit(3)                                   # v4 main
    commit(4, "-b", "dev")                      # v5 dev
    commit(5, "-b", "exp", "--parent", "g@v2")  # v6 exp, off v2
    drawn = run(["log", "g", "--all", "--graph"], tmp_path).stdout
    assert _shape(drawn) == [
        "* v6",
        "| * v5",
        "| | * v4",
        "|_|/",
        "| * v3",
        "* | v2",
        "|/",
        "* v1",
    ], drawn
    assert "(dev)" in drawn.splitlines()[1] and "(main)" in drawn.splitlines()[2]
    # One line of work: a straight line, no "v1 <- v1" links.
    assert _shape(run(["log", "g@dev", "--graph"], tmp_path).stdout) == ["* v5", "* v3", "* v1"]


@dataclass
class N:
    id: str
    parents: tuple[str, ...] = ()


def test_merge_opens_and_closes_a_lane() -> None:
    # m merges a (first parent) and b; both come from r.
    nodes = [N("m", ("a", "b")), N("b", ("r",)), N("a", ("r",)), N("r")]
    assert [p for p, _ in graph(nodes)] == ["M ", "|\\", "| * ", "* | ", "|/", "* "]


def test_a_forks_origin_comes_below_the_fork_on_its_lane(tmp_path: Path) -> None:
    run(["init"], tmp_path)
    base = write_model(tmp_path / "0.safetensors", 0)
    for i in (1, 2, 3):
        write_model(tmp_path / f"{i}.safetensors", i, base=base)
    run(["commit", "0.safetensors", "--model", "bert"], tmp_path)
    run(["commit", "1.safetensors", "--model", "bert"], tmp_path)
    run(["commit", "2.safetensors", "--model", "bert2", "--parent", "bert@v2", "--fork"],
        tmp_path)
    run(["commit", "3.safetensors", "--model", "bert2"], tmp_path)
    lines = run(["log", "bert2"], tmp_path).stdout.splitlines()
    assert [x.split()[0] for x in lines] == ["v2", "v1", "bert@v2", "bert@v1"]
    drawn = run(["log", "bert2", "--graph"], tmp_path).stdout.splitlines()
    assert [x.split()[:2] for x in drawn] == [
        ["*", "v2"], ["*", "v1"], ["*", "bert@v2"], ["*", "bert@v1"]]
