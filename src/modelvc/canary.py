"""Canary routing (sticky per caller), rolling per-version statistics, and the policy
that promotes a canary that holds and rolls back one that regresses.

Statistics are kept as counts in time slots (requests, errors, a latency histogram,
predicted labels, feedback), with running totals: recording is O(1) per request and a
summary costs O(distinct labels + latency buckets), whatever the request rate, so a
status poll never stalls the event loop. `since` (a gateway clock reading) selects the
slots that began at or after it: a trial is judged only on its own requests.

Windows read an injectable `clock` (time.monotonic by default) so tests step time instead
of sleeping; latency is one check of the policy (`check_latency`), off where the machine
is not the thing judged (tests on a shared machine; speed is measured in bench/).
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import takewhile
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Policy:
    """Each check needs `min_samples` (requests) or `min_feedback` (labels) in `window`
    seconds before it counts; the canary is promoted once every enabled check has its
    samples and passes, and rolled back as soon as one fails. Latency and output drift
    compare with the stable version, so they also wait for `min_samples` stable
    requests, and live accuracy for `min_feedback` stable labels (a canary taking all
    traffic never earns a verdict: nothing to compare)."""

    window: float = 60.0
    min_samples: int = 50
    max_error_rate: float = 0.02
    max_p95_ratio: float = 2.0  # canary p95 over stable p95 ...
    p95_slack: float = 0.005  # ... plus this many seconds, so sub-ms jitter is no regression
    min_feedback: int = 30
    max_accuracy_drop: float = 0.05  # canary accuracy may trail stable by this much
    max_drift: float = 0.25  # total variation distance of predicted labels vs stable
    check_accuracy: bool = True
    check_drift: bool = True
    check_latency: bool = True


def sticky_bucket(key: str) -> float:
    """A caller's fixed place in [0, 100): the same key always lands on the same side."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 / 100


def route_to_canary(percent: float, key: str | None) -> bool:
    if percent <= 0:
        return False
    bucket = sticky_bucket(key) if key else random.uniform(0, 100)
    return bucket < percent


TOP_LABELS = 20  # labels itemized in a status summary; the rest are counted as "other"
MAX_LABELS = 1024  # distinct labels counted per slot (bounded memory); beyond: "other"
OTHER = "other"
# Latency histogram: bucket i holds [LAT_MIN * LAT_STEP**i, LAT_MIN * LAT_STEP**(i+1)),
# so a p95 read from it is within 2.5% of the exact one (10 us .. 1000 s).
LAT_MIN, LAT_STEP, LAT_BUCKETS = 1e-5, 1.05, 378
_LOG_STEP = math.log(LAT_STEP)


def latency_bucket(seconds: float) -> int:
    if seconds <= LAT_MIN:
        return 0
    return min(LAT_BUCKETS - 1, int(math.log(seconds / LAT_MIN) / _LOG_STEP))


def bucket_seconds(i: int) -> float:
    """The geometric middle of latency bucket i."""
    return float(LAT_MIN * LAT_STEP ** (i + 0.5))


@dataclass
class Counts:
    """What one version did in some span: additive, so slots sum and subtract."""

    requests: int = 0
    errors: int = 0
    latency: Counter[int] = field(default_factory=Counter)  # answered: bucket -> count
    labels: Counter[int] = field(default_factory=Counter)  # predicted label -> count
    other: int = 0  # predicted labels not itemized (past MAX_LABELS in a slot)
    feedback: int = 0  # labels received as feedback
    correct: int = 0  # ... that the version predicted right

    def add(self, o: Counts, sign: int = 1) -> None:
        self.requests += sign * o.requests
        self.errors += sign * o.errors
        self.other += sign * o.other
        self.feedback += sign * o.feedback
        self.correct += sign * o.correct
        for mine, theirs in ((self.latency, o.latency), (self.labels, o.labels)):
            for k, n in theirs.items():
                left = mine[k] + sign * n
                if left:
                    mine[k] = left
                else:
                    del mine[k]

    def copy(self) -> Counts:
        return Counts(self.requests, self.errors, Counter(self.latency), Counter(self.labels),
                      self.other, self.feedback, self.correct)


@dataclass(frozen=True)
class Evidence:
    """What `decide` judges: one side's requests, errors, p95, feedback and labels."""

    requests: int = 0
    errors: int = 0
    p95: float | None = None
    feedback: int = 0
    correct: int = 0
    labels: dict[int, int] = field(default_factory=dict)
    other: int = 0  # predicted labels counted without their value

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.feedback if self.feedback else None

    @classmethod
    def of(cls, c: Counts) -> Evidence:
        return cls(c.requests, c.errors, _p95(c.latency), c.feedback, c.correct,
                   dict(c.labels), c.other)

    def summary(self, top: int = TOP_LABELS) -> dict[str, Any]:
        """JSON for /modelvc/status: the `top` most predicted labels and "other"."""
        kept = heapq.nlargest(top, self.labels.items(), key=lambda kv: (kv[1], -kv[0]))
        rest = sum(self.labels.values()) - sum(n for _, n in kept) + self.other
        labels = {str(k): n for k, n in sorted(kept)} | {OTHER: rest}
        return {"requests": self.requests, "errors": self.errors,
                "error_rate": self.error_rate, "p95": self.p95, "feedback": self.feedback,
                "correct": self.correct, "accuracy": self.accuracy, "labels": labels}

    @classmethod
    def from_summary(cls, s: dict[str, Any]) -> Evidence:
        """The inverse of `summary` (what a fleet controller reads from a gateway)."""
        raw = dict(s.get("labels") or {})
        other = int(raw.pop(OTHER, 0) or 0)
        fb = int(s.get("feedback") or 0)
        correct = s.get("correct")
        if correct is None:  # a gateway from before "correct" was reported
            correct = round(float(s.get("accuracy") or 0.0) * fb)
        return cls(int(s.get("requests") or 0), int(s.get("errors") or 0),
                   float(s["p95"]) if s.get("p95") is not None else None, fb, int(correct),
                   {int(k): int(n) for k, n in raw.items()}, other)


def _p95(latency: Counter[int]) -> float | None:
    n = sum(latency.values())
    if not n:
        return None
    rank, seen = 0.95 * n, 0
    for i in sorted(latency):
        seen += latency[i]
        if seen >= rank:
            return bucket_seconds(i)
    return bucket_seconds(max(latency))  # not reached


def comparable(sides: list[list[Evidence]]) -> list[tuple[dict[int | str, int], int]]:
    """Per side, its summed label counts over labels that every source itemizes (a
    source with "other" > 0 hides the labels it does not list), the rest as OTHER; and
    its number of labels. So no count is ever attributed to a label it may not be."""
    sources = [e for side in sides for e in side]
    hiding = [set(e.labels) for e in sources if e.other > 0]
    out = []
    for side in sides:
        counts: dict[int | str, int] = {}
        other = 0
        for e in side:
            other += e.other
            for k, n in e.labels.items():
                if all(k in h for h in hiding):
                    counts[k] = counts.get(k, 0) + n
                else:
                    other += n
        if other:
            counts[OTHER] = other
        out.append((counts, sum(counts.values())))
    return out


def drift(a: dict[Any, float], b: dict[Any, float]) -> float:
    """Total variation distance between two label distributions (0 same, 1 disjoint)."""
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


def slot_seconds(span: float) -> float:
    return max(0.05, min(0.5, span / 100))


Clock = Callable[[], float]


class Window:
    """The counts of one version over the last `span` seconds, in slots of `slot` s, by
    `clock` (seconds, monotonic)."""

    def __init__(self, span: float, slot: float | None = None,
                 clock: Clock = time.monotonic) -> None:
        self.span, self.clock = span, clock
        self.slot = slot or slot_seconds(span)
        self.slots: deque[tuple[float, Counts]] = deque()
        self.total = Counts()

    def _trim(self, now: float) -> None:
        cut = now - self.span
        while self.slots and self.slots[0][0] < cut:
            self.total.add(self.slots.popleft()[1], -1)

    def _current(self) -> Counts:
        now = self.clock()
        self._trim(now)
        if not self.slots or now - self.slots[-1][0] >= self.slot:
            self.slots.append((now, Counts()))
        return self.slots[-1][1]

    def record(self, ok: bool, seconds: float, labels: np.ndarray | None) -> None:
        c, t = self._current(), self.total
        c.requests += 1
        t.requests += 1
        if not ok:
            c.errors += 1
            t.errors += 1
        else:
            b = latency_bucket(seconds)
            c.latency[b] += 1
            t.latency[b] += 1
        if labels is None or not labels.size or labels.dtype.kind not in "iubf":
            return
        if labels.dtype.kind == "f":  # a float output named as the label output
            labels = labels[np.isfinite(labels)]
            if not labels.size:
                return
        if labels.size == 1:
            pairs: Any = ((int(labels.reshape(-1)[0]), 1),)
        else:
            vals, counts = np.unique(labels.astype(np.int64, copy=False), return_counts=True)
            pairs = zip(vals.tolist(), counts.tolist(), strict=True)
        for v, n in pairs:
            if v in c.labels or len(c.labels) < MAX_LABELS:
                c.labels[v] += n
                t.labels[v] += n
            else:
                c.other += n
                t.other += n

    def forgive_error(self) -> None:
        """Take back a failed request `record` counted: the same request failed on the
        stable version too, so the input was at fault, not this version (an empty
        batch must not roll a healthy canary back)."""
        t = self.total
        slot = next((c for _, c in reversed(self.slots) if c.errors > 0), None)
        if slot is None or t.errors <= 0:
            return  # trimmed out of the window meanwhile: nothing left to take back
        slot.requests -= 1
        slot.errors -= 1
        t.requests -= 1
        t.errors -= 1

    def add_feedback(self, right: int, total: int) -> None:
        c = self._current()
        c.feedback += total
        c.correct += right
        self.total.feedback += total
        self.total.correct += right

    def counts(self, since: float | None = None) -> Counts:
        """Counts of the window, or of its slots that began at or after `since` (a
        `clock` reading): summing the smaller side, at most half the slots."""
        self._trim(self.clock())
        if since is None or not self.slots or self.slots[0][0] >= since:
            return self.total.copy()
        newer = sum(1 for _ in takewhile(lambda s: s[0] >= since, reversed(self.slots)))
        out = Counts()
        if newer <= len(self.slots) - newer:
            for i in range(len(self.slots) - newer, len(self.slots)):
                out.add(self.slots[i][1])
            return out
        out = self.total.copy()
        for i in range(len(self.slots) - newer):
            out.add(self.slots[i][1], -1)
        return out

    def evidence(self, since: float | None = None) -> Evidence:
        return Evidence.of(self.counts(since))

    def accuracy(self) -> float | None:
        self._trim(self.clock())
        t = self.total
        return t.correct / t.feedback if t.feedback else None

    def empty(self) -> bool:
        self._trim(self.clock())
        return not self.slots


@dataclass(frozen=True)
class Decision:
    action: str  # "wait" | "promote" | "rollback"
    reason: str


def decide(policy: Policy, c: Evidence, s: Evidence) -> Decision:
    """The canary's verdict from its evidence `c` against the stable version's `s`."""
    n = c.requests
    if n < policy.min_samples:
        return Decision("wait", f"{n}/{policy.min_samples} canary requests")
    rate = c.error_rate or 0.0
    if rate > policy.max_error_rate:
        return Decision("rollback", f"error rate {rate:.1%} > {policy.max_error_rate:.1%} "
                                    f"over {n} requests")
    if s.requests < policy.min_samples:  # latency and drift compare with the stable side
        return Decision("wait", f"{s.requests}/{policy.min_samples} stable requests to "
                                "compare with")
    cp, sp = c.p95, s.p95
    if policy.check_latency and cp is not None and sp is not None:
        limit = sp * policy.max_p95_ratio + policy.p95_slack
        if cp > limit:
            return Decision("rollback", f"latency p95 {cp * 1e3:.1f} ms > "
                                        f"{limit * 1e3:.1f} ms (stable {sp * 1e3:.1f} ms)")
    passed = [f"errors {rate:.1%}"]
    if policy.check_drift:
        (ch, cn), (sh, sn) = comparable([[c], [s]])
        if cn and sn:
            d = drift({k: v / cn for k, v in ch.items()}, {k: v / sn for k, v in sh.items()})
            # Two samples of one distribution differ by about this much by chance alone.
            limit = policy.max_drift + 0.5 * math.sqrt(len(set(ch) | set(sh)) / min(cn, sn))
            if d > limit:
                return Decision("rollback", f"output drift {d:.2f} > {limit:.2f} "
                                            f"against stable ({_top(ch, cn)} vs "
                                            f"{_top(sh, sn)})")
            passed.append(f"drift {d:.2f}")
    if policy.check_accuracy:
        fb = c.feedback
        if fb < policy.min_feedback:
            return Decision("wait", f"{fb}/{policy.min_feedback} canary feedback labels")
        if s.feedback < policy.min_feedback:  # no baseline yet: never promote on none
            return Decision("wait", f"{s.feedback}/{policy.min_feedback} stable feedback "
                                    "labels to compare with")
        acc, base = c.accuracy or 0.0, s.accuracy or 0.0
        if acc < base - policy.max_accuracy_drop:
            return Decision("rollback", f"live accuracy {acc:.3f} < stable {base:.3f} "
                                        f"- {policy.max_accuracy_drop:.2f} ({fb} labels)")
        passed.append(f"accuracy {acc:.3f} vs {base:.3f}")
    return Decision("promote", f"canary held over {n} requests: " + ", ".join(passed))


def _top(counts: dict[Any, int], total: int, k: int = 3) -> str:
    """The k most predicted labels and their shares: "7 62%, 1 9%, 3 8%"."""
    best = sorted(counts.items(), key=lambda kv: -kv[1])[:k]
    return ", ".join(f"{label} {n / total:.0%}" for label, n in best)
