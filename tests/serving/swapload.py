"""Hot swaps under load, shared by the protocol tests (OIP HTTP, gRPC): client threads
send random 8-row batches while the test promotes versions in turn; the tally says what
failed and which versions answered."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelvc.api import RegistryAPI

from .helpers import Caller, serving, wait_for

# One request: the version that answered, or None and the bad answer.
Ask = Callable[[np.ndarray], "tuple[str | None, Any]"]
# A client thread's connection: its `Ask` and how to close it.
Client = tuple[Ask, Callable[[], None]]
Connect = Callable[[], Client]


@dataclass
class Tally:
    failures: list[Any] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    answered: int = 0


def swap_under_load(reg: RegistryAPI, url: str, x: np.ndarray, order: Iterable[int],
                    connect: Connect, errors: tuple[type[BaseException], ...],
                    threads: int = 4) -> Tally:
    """Promote digits@v{n} to production for each n of `order`, waiting until the gateway
    at `url` serves it, while `threads` clients ask for rows of `x`; a raised `errors`
    (a failed call) and a bad answer are both failures."""
    stop = threading.Event()
    tally = Tally()

    def load() -> None:
        ask, close = connect()
        rng = np.random.default_rng()
        while not stop.is_set():
            i = int(rng.integers(0, len(x) - 8))
            try:
                version, bad = ask(x[i:i + 8])
            except errors as exc:
                tally.failures.append(repr(exc))
                continue
            tally.answered += 1
            if version is None:
                tally.failures.append(bad)
            else:
                tally.seen.add(version)
        close()

    workers = [threading.Thread(target=load) for _ in range(threads)]
    for t in workers:
        t.start()
    try:
        for n in order:
            reg.promote(f"digits@v{n}", "production", reason="swap loop")
            wait_for(serving(url, n), f"the switch to v{n}")
    finally:
        stop.set()
        for t in workers:
            t.join()
    return tally


def rest_connect(url: str) -> Connect:
    """OIP REST clients whose every answer must carry 8 labels (the 8-row batches)."""
    def connect() -> Client:
        caller = Caller(url)

        def ask(x: np.ndarray) -> tuple[str | None, Any]:
            code, doc, _ = caller.infer(x)
            if code != 200 or len(doc["outputs"][0]["data"]) != 8:
                return None, (code, doc)
            return doc["model_version"], None
        return ask, caller.close
    return connect
