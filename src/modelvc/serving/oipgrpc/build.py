"""Regenerate inference.desc from inference.proto with grpcio-tools (a developer step:
`python -m modelvc.serving.oipgrpc.build`; the package ships the result, and
tests/serving/test_grpc_build.py checks it matches the .proto)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
PROTO, DESC = HERE / "inference.proto", HERE / "inference.desc"


def compile_proto() -> bytes:
    """The FileDescriptorSet of inference.proto, as grpcio-tools' protoc writes it."""
    from grpc_tools import protoc  # the `grpc-build` test extra; not needed at run time

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "inference.desc"
        rc = protoc.main(["protoc", f"-I{HERE}", f"--descriptor_set_out={out}",
                          PROTO.name])
        if rc != 0:
            raise SystemExit(f"protoc failed ({rc}) on {PROTO}")
        return out.read_bytes()


def main() -> None:
    DESC.write_bytes(compile_proto())
    print(f"wrote {DESC}", file=sys.stderr)


if __name__ == "__main__":
    main()
