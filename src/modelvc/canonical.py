"""Canonical JSON: sorted keys, no spaces, UTF-8. What is hashed (version ids, audit
entries, policy digests) is written this way, so equal meaning gives equal bytes."""

from __future__ import annotations

import json
from typing import Any


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
