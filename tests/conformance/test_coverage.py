"""Every verb of the RegistryAPI Protocol (introspected) is covered by a conformance
test: a verb added to the Protocol without one fails here."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from modelvc.api import verbs


def declared() -> set[str]:
    out: set[str] = set()
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not info.name.startswith("test_"):
            continue
        mod = importlib.import_module(f"{__package__}.{info.name}")
        for name, fn in vars(mod).items():
            if name.startswith("test_"):
                for mark in getattr(fn, "pytestmark", []):
                    if mark.name == "verbs":
                        out.update(mark.args)
    return out


def test_every_verb_has_a_conformance_test() -> None:
    missing = set(verbs()) - declared()
    assert not missing, f"RegistryAPI verbs no conformance test covers: {sorted(missing)}"


def test_declared_verbs_exist() -> None:
    unknown = declared() - set(verbs())
    assert not unknown, f"conformance tests declare verbs the Protocol lacks: {sorted(unknown)}"
