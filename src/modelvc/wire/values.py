"""JSON on the wire for the registry API: dataclass results out, the same dataclasses in.

Shared by the server and the client. Decoding follows the
dataclass's type hints, so VersionRow, RefMove, VersionDiff... round-trip exactly.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin

T = TypeVar("T")


def encode(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): encode(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [encode(v) for v in obj]
    return obj


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def decode(tp: Any, data: Any) -> Any:
    """`data` (parsed JSON) as an instance of the type `tp`."""
    if data is None or tp is Any:
        return data
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return decode(args[0], data) if len(args) == 1 else data
    if origin is typing.Literal:
        return data
    if origin in (list, set, frozenset):
        arg = (get_args(tp) or (Any,))[0]
        return origin(decode(arg, v) for v in data)
    if origin is tuple:
        targs = get_args(tp)
        if len(targs) == 2 and targs[1] is Ellipsis:
            return tuple(decode(targs[0], v) for v in data)
        return tuple(decode(a, v) for a, v in zip(targs, data, strict=False))
    if origin is dict:
        val = (get_args(tp) or (str, Any))[1]
        return {k: decode(val, v) for k, v in data.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _hints(tp)
        kwargs = {f.name: decode(hints[f.name], data[f.name])
                  for f in dataclasses.fields(tp) if f.name in data}
        return tp(**kwargs)
    if tp is datetime:
        return datetime.fromisoformat(data)
    if tp is Path:
        return Path(data)
    return data


def decode_as(cls: type[T], data: Any) -> T:
    out: T = decode(cls, data)
    return out
