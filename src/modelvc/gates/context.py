"""What one gate run works on, and what each gate reports."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..manifest import Manifest
    from ..meta.api import VersionRow
    from ..registry import Registry


@dataclass
class GateResult:
    gate: str  # kind: metric, eval, regression, budget, format, signature
    name: str  # what was checked, e.g. "accuracy >= 0.9" or "size_mb"
    passed: bool
    measured: Any = None
    expected: Any = None
    message: str = ""
    line: int = 0  # the gate's line in the policy file

    def to_json(self) -> dict[str, Any]:
        return {"gate": self.gate, "name": self.name, "passed": self.passed,
                "measured": finite(self.measured), "expected": finite(self.expected),
                "message": self.message, "line": self.line}


def finite(x: Any) -> Any:
    """JSON has no NaN/inf: say so in text instead of writing invalid JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    return x


@dataclass
class RunContext:
    reg: Registry
    version: VersionRow
    manifest: Manifest
    channel: str
    workdir: Path  # a private temporary folder, removed after the run
    data: str | None = None  # --data, overriding the eval gates' own data path
    baseline: VersionRow | None = None  # what the channel holds now
    baseline_metrics: dict[str, Any] = field(default_factory=dict)
    # Recorded metrics, then eval outputs and budget measurements of this run.
    metrics: dict[str, Any] = field(default_factory=dict)
    _checkout: Path | None = None

    def checkout(self) -> Path:
        """The version's files in a folder (one checkout shared by every gate)."""
        if self._checkout is None:
            dest = self.workdir / "model"
            self.reg.checkout(f"{self.version.model}@{self.version.id}", dest)
            self._checkout = dest
        return self._checkout

    @property
    def label(self) -> str:
        return f"{self.version.model}@v{self.version.number}"
