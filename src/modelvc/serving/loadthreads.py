"""How a gateway's loading threads share the process with its event loop: where they
run (their own CPUs, or the serving ones at a lower priority), the GIL switch interval
while they load, and the pauses between a load's steps (swap.Pool's loads and frees)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("modelvc.serving")


_where = threading.local()  # .own_cpus: this loading thread is kept off the serving CPUs


def background(cpus: frozenset[int] | None = None) -> None:
    """Name this (loading) thread; on the serving CPUs lower its CPU priority (Linux:
    per thread), or with `cpus` keep it on those CPUs at the usual priority. A loading
    thread that shares the serving core delays requests whatever its priority (see
    pause), and an ONNX session's creation is one native call of 0.3-0.8 ms that no
    pause can split: on another core it delays no request. There a lower priority only
    lets other work stretch the load (and the short switch interval with it)."""
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):  # its name in top -H, ps -L and bench/serving.py
        Path(f"/proc/self/task/{tid}/comm").write_text("modelvc-load")
    if cpus:
        try:
            os.sched_setaffinity(tid, cpus)
            _where.own_cpus = True
            return
        except (AttributeError, OSError) as exc:  # e.g. a cpuset without those CPUs
            log.warning("versions load on any CPU: could not keep the loading thread "
                        "on CPUs %s (%s)", sorted(cpus), exc)
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, tid, 10)


LOADING_SWITCH_S = 0.0002  # the GIL switch interval while a version loads or is freed
_switch_lock = threading.Lock()
_switching = [0, 0.0]  # loads under way, the interval to restore


@contextlib.contextmanager
def short_switches() -> Iterator[None]:
    """While a thread loads (checkout, session, warm-up: Python code holding the GIL),
    the event loop waits for the GIL at most LOADING_SWITCH_S, not the usual interval,
    each time it wants it back: a swap then delays a request by that much at most.
    Only while loads run: with the loop alone, the interval costs nothing either way."""
    with _switch_lock:
        if _switching[0] == 0:
            _switching[1] = sys.getswitchinterval()
            sys.setswitchinterval(min(_switching[1], LOADING_SWITCH_S))
        _switching[0] += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switching[0] -= 1
            if _switching[0] == 0:
                sys.setswitchinterval(_switching[1])


LOAD_PAUSE_S = 0.0001  # a load blocks this long between its steps (see pause)


def pause() -> None:
    """Block for a moment between the steps of a load or a free. A thread that never
    blocks keeps the core until the scheduler's next tick, whatever its priority: on
    the 2-CPU VM of docs/benchmarks.md a woken thread waited 0-4 ms (HZ 250) behind a
    nice-19 or even SCHED_IDLE busy thread. A request that arrives while the load runs
    would wait that long; at each pause the event loop gets the core (and the GIL) and
    answers what arrived, then the load goes on. Not on CPUs of its own: there the
    loop keeps its core, and a pause is only one more GIL hand-off with it (the loop
    made to drop the GIL and wait to take it back)."""
    if not getattr(_where, "own_cpus", False):
        time.sleep(LOAD_PAUSE_S)
