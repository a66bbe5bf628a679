"""A child process for the fault tests. Prints 'ready' once imports are done and the
registry is open, optionally waits for a barrier file, does one thing, and prints a
JSON line with the result (or {"error": CODE, "message": ...} and exits with its code).

    child.py commit REG PATH MODEL BRANCH [BARRIER]
    child.py promote REG REF CHANNEL [BARRIER]
    child.py gc REG
    child.py delete REG REF
    child.py push REG DEST MODEL [BARRIER]     (REG's MODEL to the registry folder DEST)
    child.py pull REG SOURCE MODEL [BARRIER]   (MODEL from the registry folder SOURCE)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from modelvc.errors import ModelvcError
from modelvc.registry import Registry


def wait(barrier: str | None) -> None:
    if barrier is None:
        return
    deadline = time.monotonic() + 60
    while not Path(barrier).exists():
        if time.monotonic() > deadline:
            raise SystemExit("barrier never released")
        time.sleep(0.001)


def main(argv: list[str]) -> int:
    verb, reg_path, *rest = argv
    reg = Registry.open(reg_path)
    print("ready", flush=True)
    try:
        if verb == "commit":
            path, model, branch, *b = rest
            wait(b[0] if b else None)
            t0 = time.monotonic()
            v = reg.commit(path, model=model, branch=branch, message=f"commit {path}")
            out = {"id": v.id, "number": v.number, "parents": v.parents,
                   "seconds": time.monotonic() - t0}
        elif verb == "promote":
            ref, channel, *b = rest
            wait(b[0] if b else None)
            row = reg.promote(ref, channel, reason=f"promote {ref}", create=True)
            out = {"channel": channel, "version": row.version_id}
        elif verb == "gc":
            r = reg.gc(dry_run=False, grace_seconds=0)
            out = {"removed": len(r.removable)}
        elif verb in ("push", "pull"):
            from modelvc import transfer

            other, model, *b = rest
            wait(b[0] if b else None)
            move = transfer.push if verb == "push" else transfer.pull
            res = move(reg, other, [model])
            out = {"versions": len(res.versions), "objects": res.objects_sent}
        elif verb == "delete":
            (ref,) = rest
            out = {"rebased": reg.delete(ref)}
        else:
            raise SystemExit(f"unknown verb {verb}")
    except ModelvcError as exc:
        print(json.dumps({"error": exc.code, "message": exc.message}), flush=True)
        return exc.exit_code
    finally:
        reg.close()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
