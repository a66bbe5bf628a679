"""A Hugging Face commit body read as it arrives, never whole.

huggingface_hub sends a commit as NDJSON: a header line, then one line per operation, a
file's content inline as base64 (`{"key": "file", "value": {"content": "...", "path":
..., "encoding": "base64"}}`). A line can be as long as the model, so the body is parsed
incrementally: every JSON value is built as usual except a file's `content` string,
which, once longer than INLINE, is base64-decoded chunk by chunk into a temp file. The
server then holds a few buffers per commit, whatever its size (the body's total is still
capped by `max_hf_commit_mb`), and the commit stores the files from disk.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from .hf_paths import check_path, check_tree
from .hf_repo import HfError

INLINE = 64 << 10  # a content string longer than this goes to a temp file
MAX_STRING = 1 << 20  # any other string (paths, summary, description)
MAX_DEPTH = 32  # nesting of one line's JSON (HF's is 2)
_SPECIAL = re.compile(rb'["\\]')  # what ends the fast run inside a string
_SPACE = b" \t\r\n"


def _bad(message: str) -> HfError:
    return HfError(400, "BadRequest", message)


class Malformed(ValueError):
    """A line that is not the JSON it should be (the caller names the line)."""


@dataclass
class CommitOps:
    summary: str = ""
    description: str = ""
    parent: str | None = None
    add: dict[str, bytes | Path] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    delete_dirs: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        return f"{self.summary}\n\n{self.description}".strip()


@dataclass(frozen=True)
class Spooled:
    """A content string decoded into a file (its bytes, not its base64)."""

    path: Path
    size: int


class _Base64File:
    """Base64 text in, decoded bytes out to a file: whole quads are decoded as they
    come, the remainder waits for the next piece; padding may only end the text."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: BinaryIO = path.open("xb")
        self._rest = b""
        self._ended = False  # a quad with '=' was decoded: nothing may follow
        self.size = 0

    def write(self, text: bytes) -> None:
        data = self._rest + text
        cut = len(data) - len(data) % 4
        self._rest = data[cut:]
        if not cut:
            return
        if self._ended:
            raise Malformed("base64 content continues after its padding")
        try:
            out = base64.b64decode(data[:cut], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Malformed(f"the content is not base64: {exc}") from exc
        self._ended = data[cut - 1:cut] == b"="
        self._f.write(out)
        self.size += len(out)

    def close(self) -> Spooled:
        self._f.close()
        if self._rest:
            raise Malformed("the base64 content is incomplete (its length is not a "
                            "multiple of 4)")
        return Spooled(self.path, self.size)

    def discard(self) -> None:
        self._f.close()


class _Value:
    """One JSON value parsed from pieces of bytes (an NDJSON line). Containers and
    short strings are built as json.loads would; the string at key path
    ("value", "content") of the top object streams into a _Base64File once long."""

    def __init__(self, spool: Path) -> None:
        self._spool = spool
        self._stack: list[list[Any]] = []  # [container, pending key or None]
        self._state = "value"
        self._str = bytearray()
        self._sink: _Base64File | None = None
        self._is_key = False
        self._esc = b""  # an escape sequence split across pieces
        self._lit = bytearray()  # a number, true, false or null
        self.result: Any = None
        self.done = False

    def feed(self, data: bytes, pos: int) -> int:
        """Consume data[pos:] up to the end of the value; where it stopped."""
        n = len(data)
        while pos < n and not self.done:
            st = self._state
            if st == "string":
                pos = self._string(data, pos)
                continue
            c = data[pos:pos + 1]
            if st == "literal":
                if c in b"]}," or c in _SPACE:
                    self._literal_end()
                    continue
                self._lit += c
                if len(self._lit) > 64:
                    raise Malformed("a number or literal is too long")
                pos += 1
                continue
            if c in _SPACE:
                pos += 1
                continue
            pos += 1
            if st == "value":
                self._begin(c)
            elif st == "key":
                if c == b"}" and self._stack and not self._stack[-1][0]:
                    self._close(b"}")
                elif c == b'"':
                    self._state, self._is_key = "string", True
                else:
                    raise Malformed(f"expected a key, found {c!r}")
            elif st == "colon":
                if c != b":":
                    raise Malformed(f"expected ':', found {c!r}")
                self._state = "value"
            elif st == "after":
                top = self._stack[-1][0]
                if c == b",":
                    self._state = "key" if isinstance(top, dict) else "value"
                elif c in b"]}":
                    self._close(c)
                else:
                    raise Malformed(f"expected ',' or a closing bracket, found {c!r}")
        return pos

    def finish(self) -> None:
        """The input ended: a bare number at the top level ends here."""
        if self._state == "literal" and not self._stack:
            self._literal_end()
        if not self.done:
            raise Malformed("the line ends inside a JSON value")

    def discard(self) -> None:
        if self._sink is not None:
            self._sink.discard()

    def _begin(self, c: bytes) -> None:
        if c in b"{[":
            if len(self._stack) >= MAX_DEPTH:
                raise Malformed(f"JSON nested deeper than {MAX_DEPTH}")
            self._stack.append([{} if c == b"{" else [], None])
            self._state = "key" if c == b"{" else "value"
        elif c == b'"':
            self._state, self._is_key = "string", False
        elif c == b"]" and self._stack and self._stack[-1][0] == []:
            self._close(c)
        elif c in b"-0123456789tfn":
            self._state, self._lit = "literal", bytearray(c)
        else:
            raise Malformed(f"unexpected {c!r}")

    def _close(self, c: bytes) -> None:
        top, _ = self._stack[-1]
        if (c == b"}") != isinstance(top, dict):
            raise Malformed(f"mismatched {c.decode()!r}")
        self._stack.pop()
        self._put(top)

    def _put(self, value: Any) -> None:
        if not self._stack:
            self.result, self.done = value, True
            return
        frame = self._stack[-1]
        if isinstance(frame[0], dict):
            frame[0][frame[1]] = value
            frame[1] = None
        else:
            frame[0].append(value)
        self._state = "after"

    def _literal_end(self) -> None:
        try:
            value = json.loads(bytes(self._lit))
        except ValueError as exc:
            raise Malformed(f"bad literal {bytes(self._lit)[:20]!r}") from exc
        self._lit = bytearray()
        self._put(value)

    def _streams(self) -> bool:
        """Is the string being read the file content (the top object's value.content)?"""
        return (not self._is_key and len(self._stack) == 2
                and self._stack[0][1] == "value" and self._stack[1][1] == "content"
                and isinstance(self._stack[1][0], dict))

    def _string(self, data: bytes, pos: int) -> int:
        if self._esc:  # inside an escape (a backslash and a char, or \\uXXXX) split by pieces
            if len(self._esc) == 1:
                self._esc += data[pos:pos + 1]
                pos += 1
            want = 6 if self._esc[1:2] == b"u" else 2
            take = data[pos:pos + want - len(self._esc)]
            self._esc += take
            if len(self._esc) == want:
                self._text(self._esc)
                self._esc = b""
            return pos + len(take)
        m = _SPECIAL.search(data, pos)
        end = m.start() if m else len(data)
        if end > pos:
            self._text(data[pos:end])
        if m is None:
            return end
        if data[end:end + 1] == b"\\":
            self._esc = b"\\"
            return end + 1
        self._string_end()
        return end + 1

    def _text(self, raw: bytes) -> None:
        if self._sink is not None:
            if raw[:1] == b"\\":  # only '\/' can occur in base64
                raw = _unescape(raw).encode("ascii", "replace")
            self._sink.write(raw)
            return
        self._str += raw
        if len(self._str) > INLINE and self._streams():
            self._sink = _Base64File(self._spool)
            text, self._str = bytes(self._str), bytearray()
            self._sink.write(_unescape(text).encode("ascii", "replace")
                             if b"\\" in text else text)
        elif len(self._str) > MAX_STRING:
            raise Malformed(f"a string longer than {MAX_STRING} bytes")

    def _string_end(self) -> None:
        if self._sink is not None:
            value: Any = self._sink.close()
            self._sink = None
        else:
            value = _unescape(bytes(self._str))
            self._str = bytearray()
        if self._is_key:
            self._stack[-1][1] = value
            self._state = "colon"
        else:
            self._put(value)


def _unescape(raw: bytes) -> str:
    try:
        out = json.loads(b'"' + raw + b'"')
    except ValueError as exc:
        raise Malformed(f"bad string: {exc}") from exc
    assert isinstance(out, str)
    return out


class CommitReader:
    """feed() the body's pieces as they arrive, then close() for the operations. Files
    over INLINE are left in FOLDER (the caller removes it), each as FOLDER/N/NAME so
    the commit sees the file's own name (formats are told by it)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ops = CommitOps()
        self._line = 1  # where the current value started
        self._newlines = 0
        self._value: _Value | None = None
        self._spools = 0

    def feed(self, data: bytes) -> None:
        pos = 0
        try:
            while pos < len(data):
                if self._value is None:
                    while pos < len(data) and data[pos:pos + 1] in _SPACE:
                        self._newlines += data[pos:pos + 1] == b"\n"
                        pos += 1
                    if pos == len(data):
                        return
                    self._line = self._newlines + 1
                    self._spools += 1
                    self._value = _Value(self.folder / f"spool-{self._spools}")
                start = pos
                pos = self._value.feed(data, pos)
                self._newlines += data.count(b"\n", start, pos)
                if self._value.done:
                    self._apply(self._value.result)
                    self._value = None
        except (Malformed, RecursionError) as exc:
            self._abandon()
            raise _bad(f"line {self._line} of the commit is malformed: {exc}") from exc

    def close(self) -> CommitOps:
        if self._value is not None:
            try:
                self._value.finish()
            except Malformed as exc:
                self._abandon()
                raise _bad(f"line {self._line} of the commit is malformed: {exc}") from exc
            self._apply(self._value.result)
            self._value = None
        check_tree(self.ops.add)
        return self.ops

    def _abandon(self) -> None:
        if self._value is not None:
            self._value.discard()
            self._value = None

    def _apply(self, item: Any) -> None:
        n, ops = self._line, self.ops
        try:
            key, value = item["key"], item["value"]
            if key == "header":
                ops.summary = str(value.get("summary") or "")
                ops.description = str(value.get("description") or "")
                ops.parent = value.get("parentCommit")
            elif key == "file":
                path = check_path(value["path"])
                if value.get("encoding", "base64") != "base64":
                    raise _bad(f"line {n}: only base64 file content is accepted")
                ops.add[path] = self._content(value["content"], path)
            elif key == "deletedFile":
                ops.delete.append(check_path(value["path"], "deleted file"))
            elif key == "deletedFolder":
                ops.delete_dirs.append(check_path(value["path"].rstrip("/"), "deleted folder"))
            elif key in ("lfsFile", "copyFile"):
                raise _bad(f"line {n}: {key} is not supported: upload regular files "
                           "(set HF_HUB_DISABLE_XET=1 with huggingface_hub 2.x)")
            else:
                raise _bad(f"line {n}: unknown operation {key!r}")
        except HfError as exc:  # a refused path: say which line
            if exc.message.startswith("line "):
                raise
            raise _bad(f"line {n}: {exc.message}") from exc
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise _bad(f"line {n} of the commit is malformed: {exc}") from exc

    def _content(self, content: object, path: str) -> bytes | Path:
        if isinstance(content, Spooled):
            home = self.folder / str(self._spools)
            home.mkdir()
            target = home / PurePosixPath(path).name
            os.replace(content.path, target)
            return target
        if not isinstance(content, str):
            raise TypeError(f"the content is a {type(content).__name__}, not a string")
        return base64.b64decode(content, validate=True)
