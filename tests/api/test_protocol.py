"""The RegistryAPI Protocol: its verbs are documented, keyword-only beyond their
operands, and both implementations have each of them."""

from __future__ import annotations

import inspect
from pathlib import Path

from modelvc.api import AREAS, RegistryAPI, verbs
from modelvc.registry import Registry
from modelvc.remote import RemoteRegistry

DOC = Path(__file__).parents[2] / "docs" / "api.md"
OPERANDS = 2  # at most this many positional parameters (a ref, a model, a channel...)


def _method(cls: type, verb: str) -> object:
    area, _, name = verb.rpartition(".")
    owner = AREAS[area] if area else cls
    return getattr(owner, name)


def test_every_verb_is_in_docs_api_md() -> None:
    text = DOC.read_text()
    missing = []
    for verb in verbs():
        area, _, name = verb.rpartition(".")
        if (f"reg.{verb}(" not in text and f"`{name}(" not in text.split(
                f"`reg.{area}`")[-1].split("\n")[0]):
            missing.append(verb)
    assert not missing, f"docs/api.md does not list {missing}"


def test_options_are_keyword_only() -> None:
    loose = []
    for verb in verbs():
        sig = inspect.signature(_method(RegistryAPI, verb))  # type: ignore[arg-type]
        positional = [p for p in sig.parameters.values() if p.name != "self"
                      and p.kind is p.POSITIONAL_OR_KEYWORD]
        if len(positional) > OPERANDS or any(p.default is not p.empty for p in positional):
            loose.append(verb)
    assert not loose, f"options that may be passed by position: {loose}"


def test_both_implementations_have_every_verb() -> None:
    # mypy checks the signatures (Registry.open returns either as RegistryAPI); this
    # checks at run time that nothing is only declared.
    for impl in (Registry, RemoteRegistry):
        for area in AREAS:
            assert hasattr(impl, area), (impl, area)
        for verb in verbs():
            if "." not in verb:
                assert callable(getattr(impl, verb, None)), (impl, verb)
