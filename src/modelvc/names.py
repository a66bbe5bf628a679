"""Names and ref syntax.

A ref is `MODEL` (the default branch head) or `MODEL@SELECTOR` where SELECTOR is
`vN` (version number), a branch, channel or tag name, or a hex id prefix (>= 4 chars).
Names never contain `/` (HTTP frameworks decode %2F), `@`, whitespace or control
characters, so a ref can always be split unambiguously and used as a path segment.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import InvalidName, InvalidRef, RefNotFound

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_NUMBER = re.compile(r"^v([0-9]+)$")
REF_HINT = "write NAME, NAME@vN, NAME@branch, NAME@channel, NAME@tag or NAME@<id>"
NAME_HINT = "use 1-128 letters, digits, '.', '_' or '-'; start with a letter or digit"
_HEX = re.compile(r"^[0-9a-f]{4,64}$")
RESERVED = frozenset({"HEAD", "latest"})
DEFAULT_BRANCH = "main"  # what a bare MODEL names, and where a new branch starts


def check_name(name: str, what: str = "name") -> str:
    """Validate a model, branch, channel or tag name; return it unchanged."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        shown = name.encode("unicode_escape").decode() if isinstance(name, str) else repr(name)
        shown = shown if len(shown) <= 40 else shown[:40] + "..."
        raise InvalidName(f"invalid {what} '{shown}'", hint=NAME_HINT)
    return name


def check_ref_name(name: str, what: str = "ref name") -> str:
    """A branch/channel/tag name must not look like a version number."""
    check_name(name, what)
    if _NUMBER.match(name) or name in RESERVED:
        raise InvalidName(f"invalid {what} {name!r}: it would shadow a version number or {name}")
    if _HEX.match(name) and len(name) >= 7:
        raise InvalidName(f"invalid {what} {name!r}: it would look like a version id prefix")
    return name


@dataclass(frozen=True)
class RefSpec:
    """A parsed ref: the model and what to select in it."""

    model: str
    selector: str | None  # None: the default branch head
    number: int | None = None  # set when selector is vN

    def __str__(self) -> str:
        return self.model if self.selector is None else f"{self.model}@{self.selector}"


def parse_ref(text: str) -> RefSpec:
    """Split `MODEL[@SELECTOR]`; validation of the selector's target happens in resolve."""
    if not isinstance(text, str) or not text:
        raise InvalidRef("empty ref: write NAME or NAME@vN, NAME@branch, NAME@channel, NAME@tag")
    model, sep, selector = text.partition("@")
    if not model:
        raise InvalidRef(f"invalid ref {text!r}: the model name is missing before '@'",
                         hint=REF_HINT)
    check_name(model, "model name")
    if not sep:
        return RefSpec(model, None)
    if not selector:
        raise InvalidRef(f"invalid ref {text!r}: nothing after '@'", hint=REF_HINT)
    if "@" in selector:
        raise InvalidRef(f"invalid ref {text!r}: more than one '@'", hint=REF_HINT)
    m = _NUMBER.match(selector)
    if m:
        return RefSpec(model, selector, int(m.group(1)))
    try:
        check_name(selector, "ref")
    except InvalidName as exc:  # name the whole ref, as the other ref errors do
        def shown(x: str, n: int) -> str:  # control characters escaped, long ones cut
            x = x.encode("unicode_escape").decode()
            return x if len(x) <= n else x[:n] + "..."

        raise InvalidRef(f"invalid ref '{shown(text, 60)}': '{shown(selector, 40)}' is "
                         "not a version (vN), id or name", hint=exc.hint) from None
    return RefSpec(model, selector)


def is_hex_prefix(text: str) -> bool:
    return bool(_HEX.match(text))


def close_names(name: str, candidates: Iterable[str]) -> list[str]:
    """The CANDIDATES NAME is most likely a misspelling of (best first, at most 3)."""
    return difflib.get_close_matches(name, list(dict.fromkeys(candidates)), n=3, cutoff=0.6)


def did_you_mean(name: str, candidates: Iterable[str], shown: str = "{}") -> str | None:
    """`did you mean production?` for a misspelled NAME (SHOWN formats each match, e.g.
    "bert@{}"), None when no candidate is close."""
    close = [shown.format(c) for c in close_names(name, candidates)]
    return f"did you mean {' or '.join(close)}?" if close else None


def ref_missing(model: str, name: str, refs: Iterable[str]) -> RefNotFound:
    """No branch, channel or tag NAME among MODEL's REFS (the close ones suggested)."""
    return RefNotFound(f"{model}@{name}: no branch, channel or tag of that name",
                       hint=did_you_mean(name, refs, f"{model}@{{}}")
                       or f"see `modelvc refs {model}`")
