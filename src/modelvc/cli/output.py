"""Terminal output: human text or --json, errors with exit codes, progress bars.

Kept free of heavy imports so `modelvc --help` starts fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, is_dataclass
from datetime import datetime
from typing import Any

import click


def to_jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_json"):
        return to_jsonable(obj.to_json())
    if is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, datetime):
        return obj.isoformat()
    return obj


def emit(as_json: bool, data: Any, human: Callable[[], None] | str | None = None) -> None:
    """Print `data` as JSON, or the human form."""
    if as_json:
        click.echo(json.dumps(to_jsonable(data), indent=2, sort_keys=True))
    elif callable(human):
        human()
    elif human is not None:
        click.echo(human)


def emit_line(data: Any) -> None:
    """One JSON object on one line (a long-running command's start-up record)."""
    click.echo(json.dumps(to_jsonable(data), sort_keys=True), nl=True)
    sys.stdout.flush()


def show_value(value: Any, *, absent: bool = False) -> str:
    """A param, metric or config value as JSON writes it (not as Python's repr);
    '(absent)' where the key is missing."""
    if absent:
        return "(absent)"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(to_jsonable(value), ensure_ascii=False, separators=(", ", ": "))


def columns(rows: Sequence[tuple[str, ...]], *, right: tuple[int, ...] = ()) -> str:
    """Rows as aligned columns: each as wide as its longest cell (long names do not
    shift the rest); empty trailing cells add no spaces."""
    if not rows:
        return ""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def width() -> int:
    """The terminal's width for stdout (COLUMNS if set); 80 when it is not a terminal.
    As shutil.get_terminal_size, without importing shutil (and with it bz2, lzma and
    zlib: ~5 ms of a one-shot command's start-up)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns \
                if sys.__stdout__ is not None else 0
        except (AttributeError, ValueError, OSError):
            columns = 0
    return max(columns or 80, 40)


def fit(line: str, limit: int | None = None) -> str:
    """LINE cut to LIMIT (default: the terminal's width) characters, ending in '...'
    when cut (the whole of it stays in --json)."""
    limit = width() if limit is None else limit
    return line if len(line) <= limit else line[: max(limit - 3, 0)].rstrip() + "..."


def wrap(text: str, indent: str = "", first: str = "", limit: int | None = None) -> str:
    """TEXT wrapped to the terminal's width: FIRST before its first line, INDENT before
    the others (a word longer than a line is cut, not lost: it continues below)."""
    import textwrap

    limit = width() if limit is None else limit
    return "\n".join(textwrap.wrap(text, limit, initial_indent=first,
                                   subsequent_indent=indent, break_on_hyphens=False)
                     or [first.rstrip()])


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 file', '2 files' (MANY: an irregular plural)."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def ratio(stored: int, raw: int) -> str:
    """Stored over raw bytes as '0.077x'; '<0.001x' rather than '0.000x'."""
    return times(stored / raw if raw else 0.0)


def times(r: float) -> str:
    """A ratio as '0.077x'; '<0.001x' rather than '0.000x' for a small one."""
    return "<0.001x" if 0 < r < 0.0005 else f"{r:.3f}x"


def empty(what: str) -> None:
    """The one line an empty listing prints, WHAT in parentheses: '(no channels)' (its
    --json stays [] or {})."""
    click.echo(f"({what})")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def when(dt: datetime) -> str:
    return dt.astimezone().strftime("%Y-%m-%d %H:%M:%S")


class Progress:
    """A one-line progress bar on stderr, shown only on a terminal (or MODELVC_PROGRESS=1).

    Each redraw returns to the line's start and erases what a longer earlier line left
    (ESC [K); close() erases the bar, so the command's own summary line follows.
    `unit`: "bytes" (sizes and a rate) or a noun counted as is ("objects")."""

    def __init__(self, label: str, total: int, *, enabled: bool = True,
                 unit: str = "bytes") -> None:
        forced = os.environ.get("MODELVC_PROGRESS") == "1"
        self.enabled = enabled and (forced or sys.stderr.isatty())
        self.label, self.total, self.unit = label, max(total, 1), unit
        self.start = self.last = time.monotonic()
        self.done = 0
        self.drawn = False

    def __call__(self, done: int, total: int | None = None) -> None:
        self.done = done
        if total:
            self.total = max(total, 1)
        now = time.monotonic()
        if self.enabled and (now - self.last > 0.1 or done >= self.total):
            self.last = now
            self._draw(now)

    def add(self, n: int) -> None:
        self(self.done + n)

    def _draw(self, now: float) -> None:
        frac = min(self.done / self.total, 1.0)
        width = 24
        bar = "#" * int(frac * width) + "-" * (width - int(frac * width))
        if self.unit == "bytes":
            rate = self.done / max(now - self.start, 1e-6)
            amount = (f"{human_bytes(self.done)}/{human_bytes(self.total)} "
                      f"{human_bytes(rate)}/s")
        else:
            amount = f"{self.done}/{self.total} {self.unit}"
        line = f"{self.label} [{bar}] {frac:4.0%} {amount}"
        sys.stderr.write("\r" + line[: max(20, _columns() - 1)] + ERASE_LINE)
        sys.stderr.flush()
        self.drawn = True

    def close(self) -> None:
        if self.enabled and self.drawn:
            sys.stderr.write("\r" + ERASE_LINE)
            sys.stderr.flush()


ERASE_LINE = "\x1b[K"


def _columns() -> int:
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns
    except OSError:
        return 100
