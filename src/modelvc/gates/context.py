"""What one gate run works on, and what each gate reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..api import RegistryAPI
    from ..manifest import Manifest
    from ..meta.api import VersionRow


@dataclass
class RunContext:
    reg: RegistryAPI
    version: VersionRow
    manifest: Manifest
    channel: str
    workdir: Path  # a private temporary folder, removed after the run
    data: str | None = None  # --data, overriding the eval gates' own data path
    baseline: VersionRow | None = None  # what the channel holds now
    baseline_metrics: dict[str, Any] = field(default_factory=dict)
    # Recorded metrics, then eval outputs and budget measurements of this run.
    metrics: dict[str, Any] = field(default_factory=dict)
    # Which gate produced each metric of this run ("eval", "budget", "derived"); a
    # metric not named here is the recorded one.
    sources: dict[str, str] = field(default_factory=dict)
    _checkout: Path | None = None

    def measured(self, values: dict[str, Any], source: str) -> None:
        """VALUES measured by a SOURCE gate: they replace recorded metrics of the same
        name for the gates that follow (which say where their value came from)."""
        self.metrics.update(values)
        self.sources.update(dict.fromkeys(values, source))

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
