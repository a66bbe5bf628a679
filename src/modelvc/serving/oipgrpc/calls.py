"""gRPC's unary call on top of HTTP/2 (github.com/grpc/grpc, doc/PROTOCOL-HTTP2.md):
status codes, the length-prefixed message in a request's body, and the grpc-message
encoding. No network here: connection.py moves the bytes."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

# status codes (grpc/doc/statuscodes.md)
OK, CANCELLED, INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED = 0, 1, 3, 5, 7
RESOURCE_EXHAUSTED, FAILED_PRECONDITION, UNIMPLEMENTED, INTERNAL = 8, 9, 12, 13
UNAVAILABLE, UNAUTHENTICATED = 14, 16
NAMES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
         "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
         "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
         "UNAUTHENTICATED")  # by code, as grpcio's StatusCode names them

ACCEPT_ENCODING = b"identity,deflate,gzip"


class GrpcStatus(Exception):
    """A call's non-OK end: grpc-status CODE with MESSAGE as grpc-message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


# handler(request message, metadata) -> (answer message, trailing metadata)
Handler = Callable[[bytes, dict[str, str]], Awaitable[tuple[bytes, list[tuple[str, str]]]]]


@dataclass(frozen=True)
class Endpoint:
    """What a connection serves: one service's methods, messages up to LIMIT bytes."""

    service: bytes
    handlers: dict[bytes, Handler]
    limit: int


def percent_encode(message: str) -> bytes:
    """grpc-message: UTF-8, with '%' and bytes outside 0x20-0x7e as %XX."""
    out = bytearray()
    for b in message.encode("utf-8", "replace"):
        out += b"%%%02X" % b if b < 0x20 or b > 0x7E or b == 0x25 else bytes((b,))
    return bytes(out)


def frame(message: bytes) -> bytes:
    """One uncompressed length-prefixed message."""
    return b"\0" + len(message).to_bytes(4, "big") + message


def unframe(body: bytes | bytearray, encoding: bytes | None, limit: int) -> bytes:
    """The one message of a unary call's body; GrpcStatus when it is not one."""
    if len(body) < 5:
        raise GrpcStatus(INTERNAL if body else UNIMPLEMENTED,
                         "the request carries no message (a unary call sends one)")
    flag, size = body[0], int.from_bytes(body[1:5], "big")
    if len(body) != 5 + size:
        raise GrpcStatus(UNIMPLEMENTED if len(body) > 5 + size else INTERNAL,
                         "the request body is not exactly one message "
                         "(streaming calls are not served)")
    message = bytes(body[5:])
    if not flag:
        return message
    wbits = {b"gzip": 31, b"deflate": 15}.get(encoding or b"")  # deflate: zlib's format
    if wbits is None:
        raise GrpcStatus(UNIMPLEMENTED, f"grpc-encoding {encoding!r} is not served "
                         f"(use one of {ACCEPT_ENCODING.decode()})")
    inflate = zlib.decompressobj(wbits)
    try:  # at most LIMIT + 1 bytes: a small bomb cannot take the memory
        out = inflate.decompress(message, limit + 1)
    except zlib.error as exc:
        raise GrpcStatus(INTERNAL, f"the compressed message does not decode: {exc}") from exc
    if len(out) > limit:
        raise GrpcStatus(RESOURCE_EXHAUSTED, "the message is over the limit of "
                         f"{limit} bytes uncompressed")
    if not inflate.eof:
        raise GrpcStatus(INTERNAL, "the compressed message is cut short")
    return out
