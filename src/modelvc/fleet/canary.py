"""Judging a fleet canary with the gateway's own policy (modelvc.canary).

Gateways keep per-version counts in time slots and expose their summary in
/modelvc/status (requests, errors, p95, feedback and correct answers, the most
predicted labels and "other"). The controller sums those summaries over replicas into
one `Evidence` per side (the canary version on the canary replicas, the stable one on
every member), so `decide` and its thresholds (errors, latency, output drift, live
accuracy) are reused as they are, not restated here.

Each gateway's summaries are read with `?since=` its own clock as read at the start of
the trial, so a version tried again within a gateway's window is judged only on the
requests of this trial.

A canary by share of traffic is the deployment row's `share` (migration 0007), which
reaches every gateway in the NOTIFY payload and on every poll; `share_of` reads it. It is
staged everywhere before it goes live (`share_live`), so no gateway serves the trial's
epoch while another cannot.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..canary import Decision, Evidence, Policy, comparable, decide
from ..records import Deployment

log = logging.getLogger("modelvc.fleet")


def share_of(d: Deployment) -> float | None:
    """The traffic share of the canary trial deployment `d` is running, if any (only
    while the pending version is pending: staged by every member, then live)."""
    if d.state not in ("rolling", "staging") or d.pending_id is None or d.share is None:
        return None
    return d.share if 0 < d.share < 1 else None


def share_live(d: Deployment) -> float | None:
    """The share, once every member staged the pending version and the controller made
    it live (state "rolling"; while "staging" nobody serves it yet)."""
    return share_of(d) if d.state == "rolling" else None


@dataclass(frozen=True)
class GatewayStats:
    clock: float | None  # the gateway's clock when it answered (a later `since`)
    versions: dict[str, dict[str, Any]]  # version id -> window summary


def read_stats(address: str, since: float | None = None, timeout: float = 2.0
               ) -> GatewayStats | str:
    """Window summaries per version id served by the gateway at `address`, counted from
    `since` (its own clock); or why it did not answer."""
    query = f"?{urllib.parse.urlencode({'since': repr(since)})}" if since is not None else ""
    try:
        with urllib.request.urlopen(f"{address}/modelvc/status{query}",
                                    timeout=timeout) as resp:
            doc = json.loads(resp.read())
    except (OSError, ValueError) as exc:
        log.debug("fleet: canary stats from %s: %s", address, exc)
        return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
    out: dict[str, dict[str, Any]] = {}
    clock = None
    for served in doc.values():
        if clock is None and served.get("clock") is not None:
            clock = float(served["clock"])
        for vid, v in (served.get("versions") or {}).items():
            if v.get("window"):
                out[vid] = v["window"]
    return GatewayStats(clock, out)


def version_stats(address: str, timeout: float = 2.0) -> dict[str, dict[str, Any]]:
    """Window summaries per version id ({} if the gateway does not answer)."""
    got = read_stats(address, timeout=timeout)
    return got.versions if isinstance(got, GatewayStats) else {}


def merged(summaries: Iterable[dict[str, Any]], labels: dict[int | str, int]) -> Evidence:
    """One Evidence for the summed summaries: requests, errors, feedback and correct
    answers add up; p95 is the request-weighted mean of the replicas' p95; `labels`
    (from `comparable`, over every summary of both sides) are the label counts."""
    n = errors = fb = correct = 0
    p95_sum = p95_n = 0.0
    for s in summaries:
        e = Evidence.from_summary(s)
        n, errors = n + e.requests, errors + e.errors
        fb, correct = fb + e.feedback, correct + e.correct
        if e.p95 is not None and e.requests:
            p95_sum, p95_n = p95_sum + e.p95 * e.requests, p95_n + e.requests
    ints = {k: v for k, v in labels.items() if isinstance(k, int)}
    return Evidence(n, errors, p95_sum / p95_n if p95_n else None, fb, correct, ints,
                    sum(v for k, v in labels.items() if not isinstance(k, int)))


def judge(policy: Policy, by_version: dict[str, list[dict[str, Any]]], vid: str,
          stable_id: str) -> Decision:
    """`by_version`: version id -> one window summary per replica that served it."""
    canary, stable = by_version.get(vid, []), by_version.get(stable_id, [])
    (cl, _), (sl, _) = comparable([[Evidence.from_summary(s) for s in canary],
                                   [Evidence.from_summary(s) for s in stable]])
    return decide(policy, merged(canary, cl), merged(stable, sl))
