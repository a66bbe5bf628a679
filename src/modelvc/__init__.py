"""modelvc: version control and continuous delivery for neural-network models."""

from __future__ import annotations

__version__ = "0.1.0"
