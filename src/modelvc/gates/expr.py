"""Threshold expressions: `accuracy >= 0.9`, `latency_p95_ms <= production * 1.1`.

A tiny grammar, parsed once when the policy is read (so a typo fails `policy apply`
with its line, not a gate run hours later) and never handed to eval():

    expr := METRIC OP arith          OP: >= <= > < == !=
    arith := term (('+'|'-') term)*;  term := atom (('*'|'/') atom)*
    atom := NUMBER | BASELINE | '(' arith ')' | '-' atom

BASELINE (`production`, `current`, or the channel's own name) stands for the same
metric's value on the version the target channel holds now.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
    "==": operator.eq, "!=": operator.ne,
}
_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
                    r"|([A-Za-z_][A-Za-z0-9_./:]*)|(>=|<=|==|!=|[-+*/()<>]))")
BASELINE_WORDS = ("production", "current")


class ExprError(ValueError):
    """The expression does not parse (the message says where)."""


# An arithmetic tree: a number, the baseline marker, or (op, left, right).
Arith = float | str | tuple[str, "Arith", "Arith"]
BASE = "$baseline"


@dataclass(frozen=True)
class Expr:
    text: str
    metric: str
    op: str
    rhs: Arith

    @property
    def uses_baseline(self) -> bool:
        return _uses(self.rhs)

    def threshold(self, baseline: float | None = None) -> float:
        """The right-hand side's value (baseline: the channel version's metric)."""
        return _eval(self.rhs, baseline)

    def check(self, value: float, baseline: float | None = None) -> bool:
        return OPS[self.op](value, self.threshold(baseline))


def parse(text: str, *, baseline_names: tuple[str, ...] = BASELINE_WORDS) -> Expr:
    tokens = _tokenize(text)
    if len(tokens) < 3 or tokens[0][0] != "name":
        raise ExprError(f"{text!r}: write METRIC OP VALUE, e.g. 'accuracy >= 0.9'")
    if tokens[1] not in (("op", o) for o in OPS):
        raise ExprError(f"{text!r}: expected one of {' '.join(OPS)} after {tokens[0][1]!r}")
    p = _Parser(text, tokens, 2, set(baseline_names))
    rhs = p.arith()
    if p.pos != len(tokens):
        raise ExprError(f"{text!r}: unexpected {tokens[p.pos][1]!r}")
    return Expr(text, tokens[0][1], tokens[1][1], rhs)


def _tokenize(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ExprError(f"{text!r}: cannot read {text[pos:].strip()!r}")
        num, name, op = m.groups()
        out.append(("num", num) if num else ("name", name) if name else ("op", op))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str, tokens: list[tuple[str, str]], pos: int,
                 names: set[str]) -> None:
        self.text, self.tokens, self.pos, self.names = text, tokens, pos, names

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def arith(self) -> Arith:
        left = self.term()
        while (t := self._peek()) in (("op", "+"), ("op", "-")):
            self.pos += 1
            left = (t[1], left, self.term())  # type: ignore[index]
        return left

    def term(self) -> Arith:
        left = self.atom()
        while (t := self._peek()) in (("op", "*"), ("op", "/")):
            self.pos += 1
            left = (t[1], left, self.atom())  # type: ignore[index]
        return left

    def atom(self) -> Arith:
        t = self._peek()
        if t is None:
            raise ExprError(f"{self.text!r}: the expression ends too early")
        self.pos += 1
        kind, val = t
        if kind == "num":
            return float(val)
        if kind == "name":
            if val not in self.names:
                raise ExprError(f"{self.text!r}: unknown name {val!r} on the right-hand side "
                                f"(use a number or one of {', '.join(sorted(self.names))})")
            return BASE
        if val == "(":
            inner = self.arith()
            if self._peek() != ("op", ")"):
                raise ExprError(f"{self.text!r}: missing ')'")
            self.pos += 1
            return inner
        if val == "-":
            return ("*", -1.0, self.atom())
        raise ExprError(f"{self.text!r}: unexpected {val!r}")


def _uses(a: Arith) -> bool:
    if isinstance(a, tuple):
        return _uses(a[1]) or _uses(a[2])
    return a == BASE


def _eval(a: Arith, baseline: float | None) -> float:
    if isinstance(a, tuple):
        x, y = _eval(a[1], baseline), _eval(a[2], baseline)
        return {"+": x + y, "-": x - y, "*": x * y}.get(a[0], x / y if y else float("inf"))
    if isinstance(a, str):
        if baseline is None:
            raise ExprError("the expression needs the channel's current value")
        return baseline
    return a
