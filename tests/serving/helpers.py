"""Small helpers for serving tests (stdlib only): keep-alive HTTP callers, polling, a
registry whose checkouts of one version wait for the test."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import numpy as np


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url) as resp:
        return json.loads(resp.read())


def status(url: str, model: str = "digits") -> dict[str, Any]:
    doc: dict[str, Any] = get_json(f"{url}/modelvc/status")[model]
    return doc


def wait_for(check: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    """Poll until `check()` holds (a generous limit only guards against hanging)."""
    end = time.monotonic() + limit
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


T = TypeVar("T")


def in_loop(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """asyncio.run(fn()) in a thread of its own (this worker's thread may run a loop
    already: a UI module's sync Playwright before a serving module); its error re-raised."""
    got: list[T] = []
    err: list[BaseException] = []

    def run() -> None:
        try:
            got.append(asyncio.run(fn()))
        except BaseException as exc:  # re-raised in the test's thread
            err.append(exc)
    t = threading.Thread(target=run)
    t.start()
    t.join()
    if err:
        raise err[0]
    return got[0]


class ManualClock:
    """A clock the test steps (Window, Gateway `clock=`): no sleeping for time to pass."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def serving(url: str, number: int, slot: str = "stable") -> Callable[[], bool]:
    return lambda: (status(url)[slot] or {}).get("version") == number


class Caller:
    """One keep-alive connection sending digits rows as OIP JSON."""

    def __init__(self, url: str, key: str | None = None) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self.headers = {"Content-Type": "application/json"}
        if key is not None:
            self.headers["X-Request-Key"] = key

    def infer(self, x: np.ndarray, *, model: str = "digits", req_id: str | None = None,
              version: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
        body: dict[str, Any] = {"inputs": [{"name": "X", "datatype": "FP32",
                                            "shape": list(x.shape),
                                            "data": x.reshape(-1).tolist()}],
                                "outputs": [{"name": "label"}]}
        if req_id:
            body["id"] = req_id
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        self.conn.request("POST", path, json.dumps(body), self.headers)
        resp = self.conn.getresponse()
        doc = json.loads(resp.read())
        return resp.status, doc, dict(resp.getheaders())

    def feedback(self, req_id: str, label: int | list[int], model: str = "digits"
                 ) -> tuple[int, dict[str, Any]]:
        self.conn.request("POST", f"/v2/models/{model}/feedback",
                          json.dumps({"id": req_id, "label": label}), self.headers)
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read())

    def close(self) -> None:
        self.conn.close()


def triton_refused_calls(client: Any) -> list[Callable[[], Any]]:
    """The tritonclient calls (http or grpc client: same names) that docs/serving.md
    marks refused: model control, trace and log settings, shared memory."""
    return [
        lambda: client.load_model("digits"), lambda: client.unload_model("digits"),
        client.get_trace_settings, lambda: client.update_trace_settings(settings={}),
        client.get_log_settings, lambda: client.update_log_settings(settings={}),
        client.get_system_shared_memory_status, client.get_cuda_shared_memory_status,
        lambda: client.register_system_shared_memory("r", "/r", 64),
        lambda: client.unregister_system_shared_memory("r"),
    ]


class Gated:
    """The registry, with checkouts of one version held until `open` is set: a load of
    it is then still under way whatever the machine's load."""

    def __init__(self, reg: Any, label: str) -> None:  # a modelvc Registry
        self.reg, self.label = reg, label
        self.entered, self.open = threading.Event(), threading.Event()
        self.reads = 0  # version rows read

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reg, name)

    def version(self, vid: str) -> Any:
        row = self.reg.version(vid)
        self.reads += 1
        return row

    def checkout(self, label: str, folder: Path, **kw: Any) -> Any:
        if label == self.label:
            self.entered.set()
            assert self.open.wait(120), "the test never opened the gate"
        return self.reg.checkout(label, folder, **kw)


class Crawling(Gated):
    """The registry, with checkouts of one version crawling until `open` is set: the
    checkout reports progress (nothing done) every 10 ms meanwhile, as a long checkout
    of a big model does between its files, then checks out as usual."""

    def checkout(self, label: str, folder: Path, **kw: Any) -> Any:
        if label == self.label:
            self.entered.set()
            progress = kw.get("progress")
            for _ in range(12_000):  # 120 s at most
                if self.open.wait(0.01):
                    break
                if progress is not None:
                    progress(0, 1)
        return self.reg.checkout(label, folder, **kw)
