"""The `modelvc` group registers a command's module when the command is asked for
(cli/main.py's MODULES): the map must name exactly what each module registers."""

from __future__ import annotations

import importlib

import click
from click.testing import CliRunner

from modelvc.cli.main import MODULES, build, cli


def test_modules_register_what_the_map_names() -> None:
    for mod, names in MODULES.items():
        g = click.Group()
        importlib.import_module(f"modelvc.cli.{mod}").register(g)
        assert tuple(sorted(g.commands)) == tuple(sorted(names)), mod
    assert sorted(build().commands) == sorted(n for ns in MODULES.values() for n in ns)


def test_help_lists_every_command_and_unknown_ones_fail() -> None:
    out = CliRunner().invoke(cli, ["--help"]).output
    for names in MODULES.values():
        for n in names:
            assert f"  {n} " in out or f"  {n}\n" in out, n
    r = CliRunner().invoke(cli, ["no-such-command"])
    assert r.exit_code == 2 and "No such command" in r.output
