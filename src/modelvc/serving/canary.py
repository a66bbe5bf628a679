"""Canary routing (sticky per caller), rolling per-version statistics, and the policy
that promotes a canary that holds and rolls back one that regresses."""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Policy:
    """Each check needs `min_samples` (requests) or `min_feedback` (labels) in `window`
    seconds before it counts; the canary is promoted once every enabled check has its
    samples and passes, and rolled back as soon as one fails."""

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


def sticky_bucket(key: str) -> float:
    """A caller's fixed place in [0, 100): the same key always lands on the same side."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 / 100


def route_to_canary(percent: float, key: str | None) -> bool:
    if percent <= 0:
        return False
    bucket = sticky_bucket(key) if key else random.uniform(0, 100)
    return bucket < percent


MAX_SAMPLES = 10_000  # per window: plenty for a decision, bounded memory at any rate


def _bounded() -> deque[Any]:
    return deque(maxlen=MAX_SAMPLES)


@dataclass
class Window:
    """Requests, errors, latencies, labels and feedback of one version, last `span` s."""

    span: float
    calls: deque[tuple[float, bool, float]] = field(default_factory=lambda: _bounded())
    labels: deque[tuple[float, np.ndarray]] = field(default_factory=lambda: _bounded())
    feedback: deque[tuple[float, int, int]] = field(default_factory=lambda: _bounded())

    def _trim(self, now: float) -> None:
        cut = now - self.span
        for q in (self.calls, self.labels, self.feedback):
            while q and q[0][0] < cut:
                q.popleft()

    def record(self, ok: bool, seconds: float, labels: np.ndarray | None) -> None:
        now = time.monotonic()
        self.calls.append((now, ok, seconds))
        if labels is not None:
            self.labels.append((now, labels))
        self._trim(now)

    def add_feedback(self, right: int, total: int) -> None:
        now = time.monotonic()
        self.feedback.append((now, right, total))
        self._trim(now)

    def stats(self) -> dict[str, float | int | None]:
        self._trim(time.monotonic())
        n = len(self.calls)
        errors = sum(1 for _, ok, _ in self.calls if not ok)
        lat = [s for _, ok, s in self.calls if ok]
        fb_n = sum(t for _, _, t in self.feedback)
        fb_right = sum(r for _, r, _ in self.feedback)
        return {"requests": n, "errors": errors, "error_rate": errors / n if n else None,
                "p95": float(np.percentile(lat, 95)) if lat else None,
                "feedback": fb_n, "accuracy": fb_right / fb_n if fb_n else None}

    def label_histogram(self) -> tuple[dict[int, float], int]:
        """Share of each predicted label, and how many labels that is."""
        self._trim(time.monotonic())
        if not self.labels:
            return {}, 0
        vals, counts = np.unique(np.concatenate([lab for _, lab in self.labels]),
                                 return_counts=True)
        total = int(counts.sum())
        return {int(v): float(c / total) for v, c in zip(vals, counts, strict=True)}, total


def drift(a: dict[int, float], b: dict[int, float]) -> float:
    """Total variation distance between two label distributions (0 same, 1 disjoint)."""
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


@dataclass(frozen=True)
class Decision:
    action: str  # "wait" | "promote" | "rollback"
    reason: str


def decide(policy: Policy, canary: Window, stable: Window) -> Decision:
    c, s = canary.stats(), stable.stats()
    n = int(c["requests"] or 0)
    if n < policy.min_samples:
        return Decision("wait", f"{n}/{policy.min_samples} canary requests")
    rate = float(c["error_rate"] or 0.0)
    if rate > policy.max_error_rate:
        return Decision("rollback", f"error rate {rate:.1%} > {policy.max_error_rate:.1%} "
                                    f"over {n} requests")
    cp, sp = c["p95"], s["p95"]
    if cp is not None and sp is not None and int(s["requests"] or 0) >= policy.min_samples:
        limit = float(sp) * policy.max_p95_ratio + policy.p95_slack
        if float(cp) > limit:
            return Decision("rollback", f"latency p95 {float(cp) * 1e3:.1f} ms > "
                                        f"{limit * 1e3:.1f} ms (stable {float(sp) * 1e3:.1f} ms)")
    passed = [f"errors {rate:.1%}"]
    if policy.check_drift:
        (ch, cn), (sh, sn) = canary.label_histogram(), stable.label_histogram()
        if ch and sh and int(s["requests"] or 0) >= policy.min_samples:
            d = drift(ch, sh)
            # Two samples of one distribution differ by about this much by chance alone.
            limit = policy.max_drift + 0.5 * math.sqrt(len(set(ch) | set(sh)) / min(cn, sn))
            if d > limit:
                return Decision("rollback", f"output drift {d:.2f} > {limit:.2f} "
                                            "against stable")
            passed.append(f"drift {d:.2f}")
    if policy.check_accuracy:
        fb = int(c["feedback"] or 0)
        if fb < policy.min_feedback:
            return Decision("wait", f"{fb}/{policy.min_feedback} canary feedback labels")
        acc = float(c["accuracy"] or 0.0)
        base = s["accuracy"] if int(s["feedback"] or 0) >= policy.min_feedback else None
        if base is not None and acc < float(base) - policy.max_accuracy_drop:
            return Decision("rollback", f"live accuracy {acc:.3f} < stable {float(base):.3f} "
                                        f"- {policy.max_accuracy_drop:.2f} ({fb} labels)")
        passed.append(f"accuracy {acc:.3f}" + (f" vs {float(base):.3f}" if base else ""))
    return Decision("promote", f"canary held over {n} requests: " + ", ".join(passed))
