"""What a load generator counts (loadgen.py's threads, loadgen_fast.py's event loop)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Tally:
    ok: int = 0
    failed: int = 0
    by_version: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)  # wall-clock start of each answer
    errors: list[str] = field(default_factory=list)
