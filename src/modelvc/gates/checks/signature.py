"""A valid signature by a trusted key (verification lives in modelvc.signing)."""

from __future__ import annotations

import importlib
import importlib.util

from ...errors import ModelvcError
from ...records import GateResult
from ..context import RunContext
from ..policy import Gate


def signature(ctx: RunContext, gate: Gate) -> list[GateResult]:
    keys = list(gate.options["keys"])
    name = "signed by " + (" or ".join(keys) if keys else "a registered key")
    if importlib.util.find_spec("modelvc.signing") is None:
        return [GateResult("signature", name, False, None, keys,
                           "this modelvc has no signing support (modelvc.signing is missing)",
                           gate.line)]
    signing = importlib.import_module("modelvc.signing")
    try:
        got = signing.verify_version(ctx.reg, ctx.version, keys or None)
    except ModelvcError as exc:
        return [GateResult("signature", name, False, None, keys, exc.message, gate.line)]
    # verify_version returns (valid, what it found); the message says which key or why not.
    ok, detail = (bool(got[0]), str(got[1])) if isinstance(got, tuple) else (bool(got), "")
    if not ok:
        detail = (f"{detail}; " if detail else "") + (
            f"sign it with `modelvc sign {ctx.label} --key KEY`")
    return [GateResult("signature", name, ok, "valid" if ok else "invalid", keys or "trust",
                       detail, gate.line)]
