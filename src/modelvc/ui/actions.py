"""The UI's actions: promote, rollback, tag, create branch, run a channel's gates.

Each runs the same registry verb the CLI runs, as the viewer, so roles, gates and the
audit trail judge it exactly as they judge `modelvc promote` and friends. A refusal
(a gate not passed, a missing role) is shown with its message and hint; nothing moved.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

from ..errors import UsageError
from .access import Viewer
from .port import UIRegistry
from .views import SummaryCache


def _need(form: dict[str, str], key: str, what: str) -> str:
    value = form.get(key, "").strip()
    if not value:
        raise UsageError(f"{what} is required", hint="fill it in and submit again")
    return value


def _version(form: dict[str, str]) -> tuple[str, str]:
    """(model, number) of the version page a form was on."""
    return _need(form, "model", "model"), _need(form, "number", "version")


def _version_url(model: str, number: str, note: str, anchor: str = "") -> str:
    return f"/m/{quote(model, safe='')}/v/{number}?done={quote(note)}{anchor}"


def _model_url(model: str, note: str) -> str:
    return f"/m/{quote(model, safe='')}?{note}"


def back(form: dict[str, str]) -> str:
    """The page an action's form was on (where its refusal links back to)."""
    model = form.get("model", "").strip()
    number = form.get("number", "").strip()
    if not model:
        return "/"
    if number.isdigit():
        return f"/m/{quote(model, safe='')}/v/{number}"
    return f"/m/{quote(model, safe='')}"


def _channel_at(reg: UIRegistry, model: str, channel: str) -> str:
    """'vN' for the version CHANNEL names now, 'nothing' if none or no such channel."""
    for r in reg.refs(model, kind="channel"):
        if r.name == channel and r.version_id:
            return f"v{reg.resolve(f'{model}@{r.version_id}', deleted=True).number}"
    return "nothing"


def promote(reg: UIRegistry, viewer: Viewer, form: dict[str, str],
            summaries: SummaryCache) -> str:
    model, number = _version(form)
    channel = _need(form, "channel", "channel")
    force = form.get("force") == "1"
    was = _channel_at(reg, model, channel)
    reg.promote(f"{model}@v{number}", channel, reason=form.get("reason", ""),
                actor=viewer.name, force=force, create=form.get("create") == "1")
    summaries.drop(model)
    note = f"promoted v{number} to {channel} (it was at {was})"
    return _model_url(model, f"done={quote(note)}#channels")


def rollback(reg: UIRegistry, viewer: Viewer, form: dict[str, str],
             summaries: SummaryCache) -> str:
    model = _need(form, "model", "model")
    channel = _need(form, "channel", "channel")
    reason = _need(form, "reason", "a reason")
    to = form.get("to", "").strip()
    was = _channel_at(reg, model, channel)
    reg.rollback(model, channel, to=f"{model}@v{to}" if to else None, reason=reason,
                 actor=viewer.name)
    summaries.drop(model)
    note = f"rolled back {channel} from {was} to {_channel_at(reg, model, channel)}"
    return _model_url(model, f"done={quote(note)}#channels")


def tag(reg: UIRegistry, viewer: Viewer, form: dict[str, str],
        summaries: SummaryCache) -> str:
    model, number = _version(form)
    name = _need(form, "name", "a tag name")
    reg.tag(f"{model}@v{number}", name, actor=viewer.name)
    return _version_url(model, number, f"tagged {name}")


def branch(reg: UIRegistry, viewer: Viewer, form: dict[str, str],
           summaries: SummaryCache) -> str:
    model, number = _version(form)
    name = _need(form, "name", "a branch name")
    reg.create_branch(model, name, at=f"{model}@v{number}", actor=viewer.name)
    summaries.drop(model)
    return _version_url(model, number, f"branch {name} created")


def gates(reg: UIRegistry, viewer: Viewer, form: dict[str, str],
          summaries: SummaryCache) -> str:
    """Run the channel's gates on the version now (`modelvc gate run`), recorded."""
    model, number = _version(form)
    channel = _need(form, "channel", "channel")
    report = reg.gates.run(f"{model}@v{number}", channel=channel, actor=viewer.name)
    verdict = "passed" if report.passed else "failed"
    return _version_url(model, number,
                        f"v{number} {verdict} the {channel} gates (run {report.run_id})",
                        "#gates-h")


# An action: (the viewer's registry, the viewer, the form, the summaries it may make
# stale) -> where to go next. Served as POST /act/<name>.
Action = Callable[[UIRegistry, Viewer, dict[str, str], SummaryCache], str]
ACTIONS: dict[str, Action] = {"promote": promote, "rollback": rollback, "tag": tag,
                              "branch": branch, "gates": gates}
