"""`modelvc import mlflow --tracking-uri URI [--models a,b]` (docs/mlflow.md)."""

from __future__ import annotations

from typing import Any

import click

from .context import Ctx, json_option
from .output import emit, human_bytes


@click.group("import")
def import_group() -> None:
    """Bring another registry's history into this one."""


@import_group.command("mlflow")
@click.option("--tracking-uri", required=True, metavar="URI",
              help="The MLflow server (http://...) or local store (sqlite:///mlflow.db, "
                   "a file store folder).")
@click.option("--models", default="", metavar="A,B",
              help="Only these registered models (default: all of them).")
@json_option
@click.pass_obj
def import_mlflow(ctx: Ctx, tracking_uri: str, models: str, as_json: bool) -> None:
    """Copy every registered model, version artifacts, descriptions, tags, aliases and
    stages. Resumable and idempotent: a second run copies nothing.
    Needs the MLflow client: pip install 'modelvc[mlflow]'."""
    import os

    from ..mlflow.importer import import_mlflow as run

    # Our progress is one line per version; MLflow's own bars per file would drown it.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    reg = ctx.local_registry()
    wanted = [m.strip() for m in models.split(",") if m.strip()] or None
    report = run(reg, tracking_uri, models=wanted,
                 progress=None if as_json else lambda line: click.echo(line, err=True))
    data: dict[str, Any] = report.as_dict()

    def human() -> None:
        for m in report.models:
            click.echo(f"{m.name}: {m.versions} versions ({m.copied} copied, {m.skipped} "
                       f"already here); MLflow keeps {human_bytes(m.mlflow_bytes)}, "
                       f"modelvc stored {human_bytes(m.stored_bytes)}; channels "
                       + (", ".join(f"{c}=v{n}" for c, n in sorted(m.channels.items()))
                          or "none"))
            for r in m.refused:
                click.echo(f"  refused by the policy: {r}")
        ratio = f" ({data['ratio']:.2f}x)" if data["ratio"] is not None else ""
        click.echo(f"total: MLflow {human_bytes(report.mlflow_bytes)}, modelvc "
                   f"{human_bytes(report.stored_bytes)}{ratio}")

    emit(as_json, data, human)


def register(cli: click.Group) -> None:
    cli.add_command(import_group)
