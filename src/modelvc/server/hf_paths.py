"""Which paths a Hugging Face commit may write: what a version will store, nothing else.

A commit's file is refused, naming it, rather than accepted and silently dropped (the
commit skips `.git`, `.modelvc`, ... folders: commit.SKIP_NAMES) or failing deep in
the file system (a NUL, a name longer than a file system takes, a file under a file).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import PurePosixPath

from ..commit import SKIP_NAMES
from .hf_repo import HfError

MAX_PART = 255  # bytes of one path component (ext4, xfs, APFS, S3 keys are longer)
MAX_PATH = 1024  # bytes of the whole path


def _bad(message: str) -> HfError:
    return HfError(400, "BadRequest", message)


def check_path(rel: object, what: str = "file") -> str:
    """REL as a normalised relative posix path, or a 400 naming it."""
    if not isinstance(rel, str):
        raise _bad(f"a {what} path must be a string, not {type(rel).__name__}")
    shown = repr(rel[:80]) + ("..." if len(rel) > 80 else "")
    if not rel or any(ord(c) < 32 or ord(c) == 127 for c in rel):
        raise _bad(f"{what} path {shown} is empty or holds control characters")
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts or p.parts == (".",):
        raise _bad(f"{what} path {shown} leaves the repository")
    if len(rel.encode()) > MAX_PATH or any(len(x.encode()) > MAX_PART for x in p.parts):
        raise _bad(f"{what} path {shown} is too long (at most {MAX_PART} bytes a name, "
                   f"{MAX_PATH} in all)")
    skipped = [x for x in p.parts if x in SKIP_NAMES]
    if skipped:
        raise _bad(f"{what} path {shown} would not be stored: a version never holds "
                   f"{skipped[0]!r} files or folders")
    return p.as_posix()


def check_tree(files: Iterable[str]) -> None:
    """A 400 naming the first path that is both a file and a folder of another."""
    paths = set(files)
    for f in sorted(paths):
        parts = PurePosixPath(f).parts
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in paths:
                raise _bad(f"{f} would be inside {parent}, which is a file")
