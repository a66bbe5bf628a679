"""`modelvc key ...`, `modelvc sign`, `modelvc verify-signature`, `modelvc signature ...`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from .context import Ctx, json_option
from .output import emit, empty, when

DEFAULT_KEY_DIR = Path("~/.config/modelvc/keys")


@click.group()
def key() -> None:
    """Signing keys: the registry keeps public keys; private keys stay with their owner."""


@key.command("create")
@click.argument("name")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help=f"Folder for NAME.key (0600) and NAME.pub (default: {DEFAULT_KEY_DIR}).")
@json_option
@click.pass_obj
def key_create(ctx: Ctx, name: str, out: Path | None, as_json: bool) -> None:
    """Generate an ECDSA P-256 key pair and register its public key."""
    from ..signing import create_key

    k, path = create_key(ctx.registry(), name, (out or DEFAULT_KEY_DIR).expanduser())
    emit(as_json, {"name": k.name, "id": k.id, "private_key": str(path),
                   "public_key": str(path.with_suffix(".pub"))},
         f"key {k.name} ({k.id[:12]}) registered\nprivate key: {path}  (keep it secret)\n"
         f"public key:  {path.with_suffix('.pub')}")


@key.command("add")
@click.argument("name")
@click.argument("public_key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@click.pass_obj
def key_add(ctx: Ctx, name: str, public_key: Path, as_json: bool) -> None:
    """Register someone's PEM public key (ECDSA P-256/P-384) under NAME."""
    from ..signing import register_key

    k = register_key(ctx.registry(), name, public_key.read_bytes())
    emit(as_json, {"name": k.name, "id": k.id}, f"key {k.name} ({k.id[:12]}) registered")


@key.command("list")
@json_option
@click.pass_obj
def key_list(ctx: Ctx, as_json: bool) -> None:
    """Registered keys."""
    rows = ctx.registry().keys.list()

    def human() -> None:
        if not rows:
            empty("no keys")
        for k in rows:
            state = f"revoked {when(k.revoked_at)}" if k.revoked_at else "active"
            click.echo(f"{k.name:<20} {k.id[:16]}  {state:<28} by {k.created_by}")

    emit(as_json, [{"name": k.name, "id": k.id, "created_at": k.created_at,
                    "created_by": k.created_by, "revoked_at": k.revoked_at} for k in rows], human)


@key.command("revoke")
@click.argument("name")
@click.option("--reason", default="", help="Why (recorded in the audit trail).")
@json_option
@click.pass_obj
def key_revoke(ctx: Ctx, name: str, reason: str, as_json: bool) -> None:
    """Revoke a key: its signatures no longer count anywhere."""
    from ..signing import revoke_key

    k = revoke_key(ctx.registry(), name, reason=reason)
    emit(as_json, {"name": k.name, "id": k.id, "revoked_at": k.revoked_at},
         f"key {k.name} ({k.id[:12]}) revoked")


@click.command("sign")
@click.argument("ref")
@click.option("--key", "key_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Private key PEM file (its public key must be registered).")
@click.option("--password", envvar="MODELVC_KEY_PASSWORD", help="Password of an encrypted key.")
@json_option
@click.pass_obj
def sign(ctx: Ctx, ref: str, key_file: Path, password: str | None, as_json: bool) -> None:
    """Sign a version (its manifest digest and every file's sha256)."""
    from ..signing import sign_version

    reg = ctx.registry()
    s = sign_version(reg, ref, key_file, password=password)
    k = reg.keys.get(s.key_id)
    emit(as_json, {"version": s.version_id, "key": k.name, "signer": s.signer},
         f"signed {ref} ({s.version_id[:12]}) with key {k.name}")


@click.command("verify-signature")
@click.argument("ref")
@click.option("--key", "key_names", multiple=True,
              help="Accept only this key (repeatable; default: the policy's trusted keys).")
@json_option
@click.pass_obj
def verify_signature(ctx: Ctx, ref: str, key_names: tuple[str, ...], as_json: bool) -> None:
    """Check a version's signatures; exit 0 only if one is valid and trusted."""
    r = ctx.registry().signatures.check(ref, keys=list(key_names) if key_names else None)
    v, checks, ok, message = r.version, r.checks, r.ok, r.message

    def human() -> None:
        for c in checks:
            click.echo(f"{c.status:<11} {c.key:<20} {c.detail}")
        click.echo(("ok: " if ok else "refused: ") + message)

    emit(as_json, {"ok": ok, "message": message, "version": v.id,
                   "signatures": [vars(c) for c in checks]}, human)
    if not ok:
        raise SystemExit(6 if any(c.status == "invalid" for c in checks) else 8)


@click.group()
def signature() -> None:
    """Exchange signatures with the OpenSSF model-signing tool (`key` method)."""


@signature.command("export")
@click.argument("ref")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--key", "key_name",
              help="The signature of this key (needed when several keys signed REF).")
@json_option
@click.pass_obj
def signature_export(ctx: Ctx, ref: str, dest: Path, key_name: str | None,
                     as_json: bool) -> None:
    """Write REF's signature as a model-signing bundle: DEST/model.sig (a checkout) or DEST."""
    from ..signing import export_signature

    path, signer = export_signature(ctx.registry(), ref, dest, key=key_name)
    emit(as_json, {"path": os.fspath(path), "key": signer},
         f"wrote {path} (key {signer})\nverify: model_signing verify key "
         f"{dest if dest.is_dir() else '.'} --signature {os.fspath(path)} --public_key PUBKEY")


@signature.command("import")
@click.argument("ref")
@click.argument("sigfile", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@click.pass_obj
def signature_import(ctx: Ctx, ref: str, sigfile: Path, as_json: bool) -> None:
    """Store a bundle made by `model_signing sign key` over REF's files (verified first)."""
    from ..signing import import_signature

    reg = ctx.registry()
    s = import_signature(reg, ref, sigfile)
    name = reg.keys.get(s.key_id).name
    emit(as_json, {"version": s.version_id, "key": name, "signer": s.signer},
         f"imported signature of {ref} ({s.version_id[:12]}) by key {name}")


def register(group: click.Group) -> None:
    for cmd in (key, sign, verify_signature, signature):
        group.add_command(cmd)
