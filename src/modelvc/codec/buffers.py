"""A process-wide pool of byte buffers for decoding, reused instead of allocated.

On VMs a page fault on fresh memory costs ~2 ms per MB (measured on this project's CI
class of machine), more than decoding the bytes it holds; decoding a block through a
delta chain touches a dozen plane-sized buffers. The pool hands the same memory out
again, whichever thread asks (threads come and go with each Registry's pools).
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from typing import Any

from modelvc.codec.kernels import empty

# A writable byte buffer from kernels.empty (a memoryview; a numpy array without the C
# kernels): slicing it gives views, memoryview(buf) its bytes.
Bytes = Any
# Bytes kept idle at most; beyond that, buffers are freed. A one-shot CLI command keeps
# fewer (cli/main.py): its peak RSS counts every idle buffer.
MAX_POOLED = int(os.environ.get("MODELVC_POOL_MB", "96")) << 20
SMALL = 64 << 10
CLASS = 256 << 10


class BufferPool:
    def __init__(self, max_bytes: int = MAX_POOLED) -> None:
        self.max_bytes = max_bytes
        self._free: defaultdict[int, list[Bytes]] = defaultdict(list)
        self._idle = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> Bytes:
        """A buffer of at least n bytes (uninitialised; slice it); hand it back with
        give() when done. Sizes are rounded up to a class so that the last, shorter
        blocks of different tensors share buffers."""
        if n < SMALL:
            return empty(n)  # malloc's own bins reuse these
        size = -(-n // CLASS) * CLASS
        with self._lock:
            free = self._free.get(size)
            if free:
                self._idle -= size
                return free.pop()
        return empty(size)

    def give(self, buf: Bytes) -> None:
        """Return a buffer from take(); nothing may use it afterwards."""
        n = memoryview(buf).nbytes
        if n < SMALL or n % CLASS:
            return
        with self._lock:
            if self._idle + n <= self.max_bytes:
                self._free[n].append(buf)
                self._idle += n

    def clear(self) -> None:
        with self._lock:
            self._free.clear()
            self._idle = 0


POOL = BufferPool()
