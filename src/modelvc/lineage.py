"""Lineage captured automatically at commit: code (git), data fingerprints, environment."""

from __future__ import annotations

import functools
import getpass
import os
import sys
from pathlib import Path
from typing import Any

import blake3

from .errors import PathNotFound, UsageError

# Packages whose versions are worth recording when installed (read from metadata,
# never imported: importing torch costs seconds).
PACKAGES = (
    "modelvc", "numpy", "torch", "transformers", "safetensors", "onnx", "onnxruntime",
    "scikit-learn", "skl2onnx", "tensorflow", "jax", "accelerate", "peft",
)


def author() -> str:
    for var in ("MODELVC_AUTHOR", "GIT_AUTHOR_NAME", "USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _git(args: list[str], cwd: Path) -> str | None:
    # Imported here: a commit captures lineage on a job thread while it encodes, so
    # subprocess stays off the single-threaded start-up.
    import subprocess

    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(cwd: Path) -> dict[str, Any] | None:
    """Commit, branch and dirty state of the git working tree at cwd (None outside git)."""
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return None
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return {
        "commit": commit,
        "branch": _git(["rev-parse", "--abbrev-ref", "HEAD"], cwd),
        "dirty": bool(status),
        "remote": _git(["config", "--get", "remote.origin.url"], cwd),
    }


def fingerprint(path: Path) -> dict[str, Any]:
    """BLAKE3 over a file, or over a folder's sorted (path, size, digest) entries."""
    if not path.exists():
        raise PathNotFound(f"data path {str(path)!r} does not exist")
    if path.is_file():
        return {"path": str(path), "kind": "file", "size": path.stat().st_size,
                "blake3": _hash_file(path)}
    tree = blake3.blake3()
    count = size = 0
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        digest = _hash_file(p)
        rel = p.relative_to(path).as_posix()
        st = p.stat().st_size
        tree.update(f"{rel}\0{st}\0{digest}\n".encode())
        count += 1
        size += st
    return {"path": str(path), "kind": "folder", "files": count, "size": size,
            "blake3": tree.hexdigest()}


def _hash_file(path: Path) -> str:
    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return str(h.hexdigest())


@functools.cache
def _package_versions() -> tuple[tuple[str, str], ...]:
    """Installed versions of PACKAGES; read once per process. From the names of the
    `NAME-VERSION.dist-info` folders on sys.path, first match wins as for
    importlib.metadata (which parses every candidate's metadata and searches the whole
    path once per package: ~85 ms of CPU per CLI commit). Only a package installed
    without such a folder (an .egg-info) is asked of importlib.metadata."""
    installed, eggs = _dist_infos()
    found = []
    for name in PACKAGES:
        key = _norm(name)
        if key in installed:
            found.append((name, installed[key]))
        elif key in eggs:
            from importlib import metadata  # ~40 ms: only for an .egg-info

            try:
                found.append((name, metadata.version(name)))
            except metadata.PackageNotFoundError:
                continue
    return tuple(found)


def _norm(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def _dist_infos() -> tuple[dict[str, str], set[str]]:
    """(normalized name -> version of the first NAME-VERSION.dist-info on sys.path,
    normalized names that have an .egg-info somewhere)."""
    installed: dict[str, str] = {}
    eggs: set[str] = set()
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for n in names:
            if n.endswith(".dist-info"):
                name, sep, version = n[: -len(".dist-info")].partition("-")
                if sep:
                    installed.setdefault(_norm(name), version)
            elif n.endswith(".egg-info"):
                eggs.add(_norm(n[: -len(".egg-info")].partition("-")[0]))
    return installed, eggs


def platform_tag() -> str:
    """`platform.platform(terse=True)` as it reads on Linux (Linux-6.1.0-x86_64-with-
    glibc2.36), without what it costs there: `uname -p` in a subprocess and a scan of
    the interpreter's binary, 15-35 ms of a commit's job thread."""
    if not sys.platform.startswith("linux"):
        import platform

        return platform.platform(terse=True)
    u = os.uname()
    try:
        libc = (os.confstr("CS_GNU_LIBC_VERSION") or "").replace(" ", "")
    except (ValueError, OSError):  # not glibc (musl): no such name
        libc = ""
    parts = [u.sysname, u.release, u.machine, *(["with", libc] if libc else [])]
    return "-".join(p.replace(" ", "_") for p in parts if p)


def environment() -> dict[str, Any]:
    import platform

    pkgs = dict(_package_versions())
    return {
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform_tag(),
        "host": platform.node(),
        "packages": pkgs,
    }


# The keys capture() records (a caller's lineage may not name them).
CAPTURED = frozenset({"env", "data", "git"})


def capture(cwd: Path, data: list[Path]) -> dict[str, Any]:
    out: dict[str, Any] = {"env": environment(), "data": [fingerprint(p) for p in data]}
    git = git_state(cwd)
    if git is not None:
        out["git"] = git
    return out


def with_extra(captured: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Any]:
    """The captured lineage plus a caller's entries (`derived_from`, ...); the captured
    keys are what modelvc observed, so a caller may not replace them."""
    if not extra:
        return captured
    clash = sorted(set(extra) & set(captured))
    if clash:
        raise UsageError(f"lineage key(s) {', '.join(clash)} are recorded by modelvc itself",
                         hint="pass other keys in lineage=; git, data and env are captured")
    return {**captured, **extra}
