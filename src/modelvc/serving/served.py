"""One served model: its followers (stable, canary, shadow, pinned versions), per-version
statistics, remembered predictions for feedback, and shadow comparison."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from ..canary import Clock, Decision, Window, slot_seconds
from ..errors import NotFound
from ..meta.api import VersionRow
from .config import ModelConfig
from .follower import Follower
from .swap import Loaded, Pool

KEEP_PREDICTIONS = 20_000  # request ids remembered for feedback (~150 bytes each)
MAX_PINNED = 4  # versions loaded on demand by number


@dataclass
class Totals:
    """One version's counts since the gateway started (Triton's statistics shape)."""

    number: int = 0
    requests: int = 0
    errors: int = 0
    inferences: int = 0  # rows answered (the first dimension of the first input)
    success_ns: int = 0
    fail_ns: int = 0
    last_ms: int = 0  # wall-clock time of the last answer, ms since the epoch


@dataclass
class Refusal:
    """An automatic canary move the registry refused (roles, gates, token) or failed:
    kept until the move succeeds or the channels move on, retried after `retry_at`
    (monotonic)."""

    action: str  # "promote" | "rollback"
    version: VersionRow  # the canary version
    target: str  # where the channel was to move: MODEL@vN
    channel: str
    reason: str  # the canary policy's verdict
    actor: str | None
    error: str
    kind: str  # "permission" | "gates" | "error" (the registry failed)
    attempts: int
    at: datetime
    retry_at: float

    def as_json(self) -> dict[str, object]:
        return {"action": self.action, "version": self.version.number,
                "channel": self.channel, "to": self.target, "actor": self.actor,
                "error": self.error, "kind": self.kind, "attempts": self.attempts,
                "at": self.at.isoformat(timespec="seconds"),
                "retry_in": round(max(0.0, self.retry_at - time.monotonic()), 1),
                "verdict": self.reason}


@dataclass
class FleetShare:
    """A fleet canary by share of traffic (modelvc.fleet): `item` answers `percent` of
    requests (sticky per request key) at the trial's `epoch`, beside the stable slot."""

    item: Loaded  # this slot's hold on the canary version
    percent: float  # 0..100
    epoch: int

    def as_json(self) -> dict[str, object]:
        return {"version": self.item.version.number, "percent": self.percent,
                "epoch": self.epoch}


@dataclass
class ShadowStats:
    compared: int = 0
    agreeing: float = 0.0  # sum of per-request agreement fractions
    errors: int = 0
    pending: int = 0


@dataclass
class ServedModel:
    cfg: ModelConfig
    pool: Pool
    window: float
    stable: Follower = field(init=False)
    canary: Follower | None = field(init=False, default=None)
    shadow: Follower | None = field(init=False, default=None)
    pinned: OrderedDict[int, Follower] = field(default_factory=OrderedDict)
    windows: dict[str, Window] = field(default_factory=dict)
    totals: dict[str, Totals] = field(default_factory=dict)
    predictions: OrderedDict[str, tuple[VersionRow, bytes]] = field(
        default_factory=OrderedDict)
    blocked: str | None = None  # canary version whose traffic is zero after a rollback
    decision: Decision | None = None
    refusal: Refusal | None = None  # the last refused automatic move, while it stands
    refused_total: int = 0
    identity_warning: str | None = None  # why automatic moves would be refused (roles)
    shadow_stats: ShadowStats = field(default_factory=ShadowStats)
    fleet_share: FleetShare | None = None  # set and cleared by the fleet agent only
    clock: Clock = time.monotonic  # of the windows and of `status` (tests step it)
    label_names: dict[str, str | None] = field(default_factory=dict)  # per version id

    def __post_init__(self) -> None:
        c = self.cfg
        self.stable = Follower(self.pool, c.model, c.ref, keep_previous=c.keep_previous)
        if c.canary is not None:
            self.canary = Follower(self.pool, c.model, c.canary.ref, keep_previous=False)
        if c.shadow is not None:
            self.shadow = Follower(self.pool, c.model, c.shadow, keep_previous=False)

    def followers(self) -> list[Follower]:
        return [f for f in (self.stable, self.canary, self.shadow) if f is not None]

    def canary_live(self) -> Loaded | None:
        """The canary version when it takes traffic: differs from stable, not blocked."""
        if self.canary is None or self.cfg.canary is None or self.cfg.canary.percent <= 0:
            return None
        cur, base = self.canary.current, self.stable.current
        if cur is None or base is None or cur is base or cur.version.id == self.blocked:
            return None
        return cur

    def window_of(self, version_id: str) -> Window:
        w = self.windows.get(version_id)
        if w is None:
            w = self.windows[version_id] = Window(self.window, clock=self.clock)
        return w

    def totals_of(self, version_id: str) -> Totals:
        return self.totals.setdefault(version_id, Totals())

    def label_output(self, item: Loaded) -> str | None:
        """The output compared with feedback: configured, else the first integer one."""
        vid = item.version.id
        if vid in self.label_names:
            return self.label_names[vid]
        label = self.label_names[vid] = self._label_output(item)
        return label

    def _label_output(self, item: Loaded) -> str | None:
        names = [s.name for s in item.runtime.outputs]
        if self.cfg.label_output in names:
            return self.cfg.label_output
        ints = [s.name for s in item.runtime.outputs if s.datatype.startswith(("INT", "UINT"))]
        return ints[0] if ints else None

    def remember(self, req_id: str, version: VersionRow, labels: np.ndarray) -> None:
        self.predictions[req_id] = (version, labels.astype("<i8").tobytes())
        if len(self.predictions) > KEEP_PREDICTIONS:
            self.predictions.popitem(last=False)

    async def pinned_version(self, number: int) -> Follower:
        f = self.pinned.get(number)
        if f is None:
            f = self.pinned[number] = Follower(self.pool, self.cfg.model, f"v{number}",
                                               keep_previous=False)
            while len(self.pinned) > MAX_PINNED:
                _, old = self.pinned.popitem(last=False)
                old.close()
        self.pinned.move_to_end(number)
        await f.refresh()
        if f.current is None and f.last_error is not None:
            self.pinned.pop(number, None)
            raise NotFound(f.last_error)
        return f

    def compare_shadow(self, served: dict[str, np.ndarray],
                       mirrored: dict[str, np.ndarray]) -> None:
        common = [k for k in served if k in mirrored and served[k].shape == mirrored[k].shape]
        if not common:
            self.shadow_stats.errors += 1
            return
        fractions = []
        for k in common:
            a, b = served[k], mirrored[k]
            same = np.isclose(a, b, rtol=1e-4, atol=1e-6) if a.dtype.kind == "f" else a == b
            fractions.append(float(np.mean(same)) if same.size else 1.0)
        self.shadow_stats.compared += 1
        self.shadow_stats.agreeing += min(fractions)

    def refuse(self, action: str, version: VersionRow, target: str, channel: str,
               reason: str, actor: str | None, error: str, kind: str) -> Refusal:
        """Record a refused move; the retry backs off 1, 2, 4 ... 60 s per version."""
        old = self.refusal
        same = old is not None and (old.action, old.version.id) == (action, version.id)
        attempts = old.attempts + 1 if same and old is not None else 1
        self.refusal = Refusal(action, version, target, channel, reason, actor, error, kind,
                               attempts, datetime.now(UTC),
                               time.monotonic() + min(60.0, 2.0 ** (attempts - 1)))
        self.refused_total += 1
        return self.refusal

    def status(self, since: float | None = None) -> dict[str, object]:
        def slot(f: Follower | None) -> dict[str, object] | None:
            if f is None:
                return None
            return {"ref": f.ref, "version": f.current.version.number if f.current else None,
                    "previous": f.previous.version.number if f.previous else None,
                    "epoch": f.epoch, "error": f.last_error}

        clock = self.clock()
        numbers = {i.version.id: i.version.number for i in self.pool.items.values()}
        for vid in [v for v, w in self.windows.items() if v not in numbers and w.empty()]:
            del self.windows[vid]  # unloaded and quiet: nothing left to judge
        per_version = {}
        for vid, t in self.totals.items():
            w = self.windows.get(vid)
            # an unloaded version keeps its number (its totals recorded it)
            per_version[vid] = {"number": numbers.get(vid) or t.number or None,
                                "requests": t.requests,
                                "errors": t.errors,
                                "window": w.evidence(since).summary() if w else None}
        sh = self.shadow_stats
        live = self.canary_live()
        shadow = slot(self.shadow)
        if shadow is not None:
            shadow |= {"compared": sh.compared, "errors": sh.errors, "pending": sh.pending,
                       "agreement": sh.agreeing / sh.compared if sh.compared else None}
        return {
            "stable": slot(self.stable), "canary": slot(self.canary),
            "canary_live": live.version.number if live else None,
            "canary_percent": self.cfg.canary.percent if self.cfg.canary else 0,
            "fleet_canary": self.fleet_share.as_json() if self.fleet_share else None,
            "decision": vars(self.decision) if self.decision else None,
            "refusal": self.refusal.as_json() if self.refusal else None,
            "refused_total": self.refused_total,
            "identity_warning": self.identity_warning,
            "shadow": shadow,
            "versions": per_version,
            # freed but kept loaded (Pool.standby): served again at once if wanted
            "standby": sorted(i.version.number for i in self.pool.standby.values()
                              if i.model == self.cfg.model),
            # Window statistics cover the last `window` seconds, in slots of `slot` s;
            # `clock` read now, sent back as ?since=, limits them to later slots.
            "clock": clock, "since": since, "window": self.window,
            "slot": slot_seconds(self.window),
        }
