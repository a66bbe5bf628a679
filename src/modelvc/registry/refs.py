"""The embedded registry's ref verbs, mixed into Registry (a module of its own for
size): branches, tags, promotion and rollback of channels (gates, roles and signatures
checked), ref history. Every move is a compare-and-swap with its audit entry
(modelvc.ingest.refs)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, cast

from ..errors import AlreadyExists, Conflict, RefMoved, RefNotFound, UsageError
from ..ingest.refs import check_not_an_id
from ..lineage import author as default_author
from ..meta.api import RefKind, RefMove, RefRow, VersionRow
from ..names import DEFAULT_BRANCH, check_ref_name, did_you_mean, ref_missing
from ..records import UNSET, Unset, previous_target
from .parts import RegistryParts

if TYPE_CHECKING:
    pass

Version = VersionRow
_Unset = Unset


class RefOps(RegistryParts):
    def _channel_missing(self, model: str, channel: str, *, promoting: bool = False
                         ) -> RefNotFound:
        """No channel CHANNEL: the error names the channels the model has, and the
        hint the one meant when the name is a near miss (a typo must not make a new
        channel: --create is offered only when nothing is close)."""
        have = [r.name for r in self._meta.list_refs(model, "channel")]
        listed = ", ".join(have) if have else "none yet"
        hint = did_you_mean(channel, have) or (
            "new channel? add --create (Python: create=True)" if promoting
            else f"see `modelvc channel list {model}`")
        return RefNotFound(f"{model} has no channel {channel!r} (its channels: {listed})",
                           hint=hint)

    # ---- refs
    def _move(self, model: str, name: str, kind: RefKind, *, expected: str | None,
              new: str | None, who: str, action: str, reason: str = "",
              create: bool = False) -> RefRow:
        """A compare-and-swap ref move with its audit entry, in one transaction."""
        from ..ingest.refs import move_ref

        row = move_ref(self._meta, model, name, kind, expected=expected, new=new, actor=who,
                       action=action, reason=reason, create=create)
        self.events.after_mutation()
        return row

    def create_branch(self, model: str, name: str, *, at: str | None = None,
                      actor: str | None = None) -> RefRow:
        check_ref_name(name, "branch name")
        check_not_an_id(self._meta, model, name, "branch name")
        target = self.resolve(at or model).id
        return self._move(model, name, "branch", expected=None, new=target,
                          who=actor or default_author(), action="create", create=True)

    def delete_ref(self, model: str, name: str, *, actor: str | None = None,
                   reason: str = "") -> None:
        """Delete a branch (not main), a channel, or a tag (with a reason: tags never
        move, but one may go, e.g. to let its version be deleted)."""
        row = self._ref_or_none(model, name)
        if row is None:
            self._meta.get_model(model)
            raise ref_missing(model, name, [r.name for r in self._meta.list_refs(model)])
        if row.kind == "tag" and not reason.strip():
            # A tag pins a version for whoever relies on it: its removal says why.
            raise UsageError(f"deleting tag {model}@{name} needs a reason (it is audited)",
                             hint=f"modelvc tag delete {model} {name} -r REASON")
        if row.kind == "branch" and name == DEFAULT_BRANCH and not reason.strip():
            # Bare MODEL means its head, and the next commit would start a parentless
            # main: nothing a user wants from tidying branches. With a reason it goes
            # (a main line whose versions must be deleted, e.g. a leaked file in them).
            raise Conflict(f"{model}@{name} is {model}'s main branch (bare `{model}` names "
                           "its head): it is not deleted without a reason",
                           hint=f"if you mean it (to delete its versions), "
                                f"`modelvc branch delete {model} {name} -r REASON`; bare "
                                f"`{model}` then names nothing until main exists again")
        self._governance.authorize_ref_delete(model, name, row.kind, actor or default_author())
        self._move(model, name, row.kind, expected=row.version_id, new=None,
                   who=actor or default_author(), action="delete", reason=reason)

    def tag(self, ref: str, name: str, *, actor: str | None = None) -> RefRow:
        check_ref_name(name, "tag name")
        v = self.resolve(ref)
        check_not_an_id(self._meta, v.model, name, "tag name")
        return self._move(v.model, name, "tag", expected=None, new=v.id,
                          who=actor or default_author(), action="create", create=True)

    def promote(self, ref: str, channel: str, *, reason: str = "", actor: str | None = None,
                expected: str | _Unset | None = UNSET, force: bool = False,
                create: bool = False) -> RefRow:
        """Point CHANNEL of the version's model at the version (compare-and-swap).

        When a policy is applied, the version must have passed the channel's gates
        (and the actor hold the role); `force` skips the gates, needs the admin role
        and a reason, and is recorded as such. `expected`: the version the channel
        must hold now (default: whatever it holds when read here). A channel that does
        not exist yet is refused (RefNotFound naming the model's channels: a typo must
        not make a new one) unless `create=True` or the applied policy declares it."""
        check_ref_name(channel, "channel name")
        v = self.resolve(ref)
        # Under `trust: require` every gateway refuses an unsigned version: a channel
        # must not name one (force skips gates, not signatures).
        self._trust.check(v)
        if self._ref_or_none(v.model, channel) is None:
            if not create and not self._governance.declares(v.model, channel):
                raise self._channel_missing(v.model, channel, promoting=True)
            check_not_an_id(self._meta, v.model, channel, "channel name")
        who = actor or default_author()
        clearance = self._governance.authorize_promotion(v, channel, who, force=force,
                                                        reason=reason)
        # Regression gates judged against the channel's value when they ran: the swap
        # must start from exactly that value (a promotion landing meanwhile fails it).
        expected = cast("str | _Unset | None", clearance.expected(expected))
        current = self._ref_or_none(v.model, channel)
        if current is not None and current.kind != "channel":
            raise UsageError(f"{v.model}@{channel} is a {current.kind}, not a channel")
        action = "force" if force else "promote"
        from ..ingest.record import COMMIT_RETRIES

        for _ in range(COMMIT_RETRIES):
            try:
                if current is None:
                    if isinstance(expected, str):
                        raise RefMoved(f"{v.model}@{channel} does not exist yet; "
                                       f"expected {expected[:12]}")
                    return self._move(v.model, channel, "channel", expected=None, new=v.id,
                                      who=who, action=action, reason=reason, create=True)
                exp = current.version_id if isinstance(expected, _Unset) else expected
                return self._move(v.model, channel, "channel", expected=exp, new=v.id,
                                  who=who, action=action, reason=reason)
            except (RefMoved, AlreadyExists) as exc:
                if clearance.pinned:  # retrying would skip the regression gates
                    raise self._governance.moved_since_gated(v, channel, clearance) from exc
                # Without an explicit expectation the caller just wants the channel on
                # this version: another promoter was first, so move on from theirs.
                if not isinstance(expected, _Unset):
                    raise
                current = self._ref_or_none(v.model, channel)
        raise RefMoved(f"{v.model}@{channel} kept moving; retry the promotion")

    def rollback(self, model: str, channel: str, *, to: str | None = None, reason: str = "",
                 actor: str | None = None) -> RefRow:
        """Move CHANNEL back to its previous target (or to `to`: a ref, or a selector
        of MODEL such as `v2`) in one recorded step."""
        who = actor or default_author()
        current = self._ref_or_none(model, channel)
        if current is None:
            self._meta.get_model(model)
            raise self._channel_missing(model, channel)
        if current.kind != "channel":
            raise UsageError(f"{model}@{channel} is a {current.kind}, not a channel")
        self._governance.authorize_rollback(model, channel, who)
        if to is not None:
            # `--to v2` (a number, tag, branch or id prefix) is MODEL's, not a model v2.
            target = self.resolve(to if "@" in to or to == model else f"{model}@{to}")
            if target.model != model:
                raise UsageError(f"{to} is not a version of {model}")
            target_id = target.id
        else:
            prev = previous_target(self._meta.ref_history(model, channel), current.version_id)
            if prev is None:
                raise Conflict(f"{model}@{channel} has no earlier version to roll back to")
            target_id = prev
        if target_id is not None:
            self._trust.check(self._meta.get_version(target_id))
        return self._move(model, channel, "channel", expected=current.version_id,
                          new=target_id, who=who, action="rollback", reason=reason)

    def history(self, model: str, name: str | None = None) -> list[RefMove]:
        self._meta.get_model(model)
        moves = self._meta.ref_history(model, name)
        if name is not None and not moves:
            raise self._channel_missing(model, name)
        return moves

    def at(self, model: str, name: str, when: datetime) -> Version | None:
        """What ref NAME (e.g. channel production) pointed to at time `when`."""
        vid = self._meta.ref_at(model, name, when)
        if vid is None:
            self.history(model, name)  # a ref that never existed: say so (RefNotFound)
        return self._meta.get_version(vid) if vid else None
