"""Ordered parallel map with a bounded window: memory stays at a few items in flight."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Executor, Future
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
WINDOW = 4


def windowed(pool: Executor | None, items: Iterable[T], fn: Callable[[T], R], *,
             window: int = WINDOW) -> Generator[R, None, None]:
    """fn over items on pool, at most `window` in flight, results in input order.

    Without a pool (or for a single item) it runs inline. Pending work is cancelled
    when the consumer stops early."""
    if pool is None:
        yield from (fn(x) for x in items)
        return
    pending: deque[Future[R]] = deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()
