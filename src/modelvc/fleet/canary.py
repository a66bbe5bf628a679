"""Judging a fleet canary with the gateway's own policy (modelvc.serving.canary).

Gateways keep a sliding window of statistics per version and expose its summary in
/modelvc/status (requests, errors, p95, feedback, accuracy). The controller sums those
summaries over replicas and rebuilds one Window per side, so `decide` and its thresholds
are reused as they are, not restated here. Output drift needs predicted-label histograms,
which the status does not carry yet: with no labels in either Window, `decide` skips it.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Iterable
from typing import Any

from ..serving.canary import MAX_SAMPLES, Decision, Policy, Window, decide

log = logging.getLogger("modelvc.fleet")


def version_stats(address: str, timeout: float = 5.0) -> dict[str, dict[str, Any]]:
    """Window summaries per version id served by the gateway at `address` ({} if it
    does not answer: its replica simply contributes no evidence)."""
    try:
        with urllib.request.urlopen(f"{address}/modelvc/status", timeout=timeout) as resp:
            doc = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        log.warning("fleet: canary stats from %s: %s", address, exc)
        return {}
    out: dict[str, dict[str, Any]] = {}
    for served in doc.values():
        for vid, v in (served.get("versions") or {}).items():
            if v.get("window"):
                out[vid] = v["window"]
    return out


def window_from(stats: Iterable[dict[str, Any]], span: float) -> Window:
    """One Window equivalent to the summed summaries: as many calls and errors, p95 the
    request-weighted mean of the replicas' p95, the same feedback and accuracy."""
    w, t = Window(span), time.monotonic()
    n = errors = 0
    p95_sum = p95_n = 0.0
    for s in stats:
        req = int(s.get("requests") or 0)
        n, errors = n + req, errors + int(s.get("errors") or 0)
        if s.get("p95") is not None and req:
            p95_sum, p95_n = p95_sum + float(s["p95"]) * req, p95_n + req
        fb = int(s.get("feedback") or 0)
        if fb and s.get("accuracy") is not None:
            w.feedback.append((t, round(float(s["accuracy"]) * fb), fb))
    if n:
        k = min(n, MAX_SAMPLES)  # the Window is bounded: keep the error share, not the count
        bad = round(errors * k / n)
        p95 = p95_sum / p95_n if p95_n else 0.0
        w.calls.extend([(t, False, 0.0)] * bad + [(t, True, p95)] * (k - bad))
    return w


def judge(policy: Policy, by_version: dict[str, list[dict[str, Any]]], vid: str,
          stable_id: str) -> Decision:
    """`by_version`: version id -> one window summary per replica that served it."""
    return decide(policy, window_from(by_version.get(vid, []), policy.window),
                  window_from(by_version.get(stable_id, []), policy.window))
