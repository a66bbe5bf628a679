"""The base of MetaStore's areas (store.py lists them): each public method of an area
is one transaction, run by MetaStore's `_tx` (retries, error translation, sealing the
audit head after a write that appended to it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import sqlalchemy as sa

T = TypeVar("T")


class Area:
    if TYPE_CHECKING:
        def _tx(self, fn: Callable[[sa.Connection], T], *, write: bool = False) -> T: ...
