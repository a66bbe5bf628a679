"""The combined pack index: the members of many packs in one file, so a process that
opens a store with many packs reads one file, not every pack's own index.

    packs/index.<blake3 of the body>   {"packs": {"<pack name>": [size, {key: [off, len]}
                                                    (, [packs it replaces])]}}

It caches facts that never change: a pack's name is never written twice and its
members are fixed, so an entry is right for as long as its pack is listed (entries of
packs no longer listed are ignored). The body's hash is its name, checked on read; an
unreadable or mismatched file is ignored and the packs' own indexes are read instead.
Code that predates it skips the name (it is not a pack name), so stores written
before it, and older modelvc versions reading newer stores, keep working.

It is built lazily: by the first process whose refresh reads COMBINE_AFTER or more
pack indexes one by one, and by gc after a repack. The writer then deletes the
combined indexes it listed (its own lists every pack of theirs that is still
listed); a reader that loses one of them meanwhile reads those packs' indexes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

import blake3

from .packs import TRAILER, Pack

COMBINE_AFTER = 8  # pack indexes read one by one in a refresh before one is written
_NAME = re.compile(r"^index\.([0-9a-f]{64})$")

Members = dict[str, tuple[int, int]]


def is_index_name(rest: str) -> bool:
    """True for a name under packs/ that is a combined index."""
    return _NAME.match(rest) is not None


def combined_body(packs: Iterable[Pack]) -> tuple[str, bytes]:
    """(name under packs/, body) of a combined index of `packs`."""
    doc = {"packs": {p.name: [p.size, p.members, *([sorted(p.replaces)] if p.replaces else [])]
                     for p in sorted(packs, key=lambda p: p.name)}}
    body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return f"index.{blake3.blake3(body).hexdigest()}", body


def parse_combined(rest: str, body: bytes
                   ) -> dict[str, tuple[int, Members, frozenset[str]]] | None:
    """pack name -> (size, members, packs it replaces) from a combined index; None when
    the body does not match its name or cannot be read. Entries with a member outside
    the pack's payload are left out (that pack's own index is read instead)."""
    m = _NAME.match(rest)
    if m is None or blake3.blake3(body).hexdigest() != m.group(1):
        return None
    try:
        doc = json.loads(body)
        out: dict[str, tuple[int, Members, frozenset[str]]] = {}
        for name, (size, members, *rest_) in doc["packs"].items():
            replaces = frozenset(str(r) for r in rest_[0]) if rest_ else frozenset()
            parsed = {str(k): (int(v[0]), int(v[1])) for k, v in members.items()}
            end = int(size) - TRAILER
            if all(o >= 0 and n >= 0 and o + n <= end for o, n in parsed.values()):
                out[str(name)] = (int(size), parsed, replaces)
        return out
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None
