"""Gateway processes and a load of sticky clients for fleet tests (stdlib HTTP only)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelvc.cli.main import CLI_POOL_MB
from tests.faults.zygote import Forked, Zygote


def wait_for(check: Any, what: str, limit: float = 60.0) -> None:
    """Poll until `check()` holds (the limit only guards against hanging). A connection
    error counts as "not yet": a host whose network was just restored may reset the
    first connection that was opened while it was cut off."""
    end = time.monotonic() + limit
    last: OSError | None = None
    while True:
        try:
            if check():
                return
        except OSError as exc:
            last = exc
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}"
                                 + (f" (last error: {last})" if last else ""))
        time.sleep(0.02)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


class _Child:
    """A child process a test ends: with a signal, then kill -9 if it outlasts `wait` s."""

    proc: subprocess.Popen[bytes] | Forked

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def _end(self, sig: signal.Signals, wait: float) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                self.kill()


class GatewayProcess(_Child):
    """`modelvc serve --fleet` in its own process (optionally inside a network namespace)."""

    def __init__(self, registry: Path, replica: str, port: int, *, host: str = "127.0.0.1",
                 labels: dict[str, str] | None = None, netns: str | None = None,
                 trust: str = "never", log: Path | None = None) -> None:
        self.replica, self.url = replica, f"http://{host}:{port}"
        cmd = [sys.executable, "-m", "modelvc.cli.main", "--registry", str(registry), "serve",
               "digits@production", "--fleet", "--replica-id", replica, "--host", host,
               "--port", str(port), "--grpc-port", "0", "--poll-interval", "0.05",
               "--heartbeat", "0.2",
               "--trust", trust, "--workers", "2", "--log-level", "warning"]
        for k, v in (labels or {"app": "digits"}).items():
            cmd += ["--label", f"{k}={v}"]
        self.log = log
        env = os.environ | {"PYTHONUNBUFFERED": "1"}
        if netns is None and env.get("MODELVC_POOL_MB", CLI_POOL_MB) == CLI_POOL_MB:
            # Forked from a zygote that imported the gateway (a start to ready and
            # serving: 0.65 -> 0.2 s of CPU); still a process of its own (its own pid,
            # sockets, model sessions, database connections, killed with SIGKILL).
            with open(log or os.devnull, "ab") as out:
                self.proc = _zygote().spawn(
                    cmd[3:], env, entry="modelvc.cli.main:main", output=out.fileno())
            return
        if netns is not None:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            tail = self.log.read_text()[-3000:] if self.log else ""
            raise AssertionError(f"gateway {self.replica} exited {self.proc.returncode}\n{tail}")
        try:
            return bool(get_json(f"{self.url}/v2/health/ready")["ready"])
        except OSError:
            return False

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = get_json(f"{self.url}/modelvc/status")["digits"]["stable"]
        return doc

    def stop(self) -> None:
        self._end(signal.SIGTERM, 15)


@dataclass
class Seen:
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    backwards: list[str] = field(default_factory=list)
    versions: set[str] = field(default_factory=set)


class Load:
    """Clients with sticky keys, each sending round-robin to every gateway and carrying
    the newest epoch it saw (X-Modelvc-Epoch); records failures and backward steps.
    Each waits `pause` s between requests: ~200 a second per client still puts several
    of each client's requests into any switch of the fleet, without the clients and
    gateways taking both CPUs for the whole test (the epoch races themselves are forced
    deterministically in test_epoch_guarantee.py)."""

    def __init__(self, urls: list[str], x: np.ndarray, clients: int = 6,
                 pause: float = 0.005) -> None:
        self.urls, self.x, self.seen, self.pause = urls, x, Seen(), pause
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                         for i in range(clients)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _client(self, i: int) -> None:
        conns = []
        for u in self.urls:
            host, port = u.removeprefix("http://").split(":")
            conns.append(http.client.HTTPConnection(host, int(port), timeout=30))
        last = (0, 0)  # (epoch, version number) last seen
        n = 0
        while not self._stop.is_set():
            k = (i + n) % len(conns)
            row = self.x[n % len(self.x)][None, :]
            n += 1
            body = json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 64],
                                           "data": row.reshape(-1).tolist()}]})
            headers = {"Content-Type": "application/json", "X-Request-Key": f"client-{i}",
                       "X-Modelvc-Epoch": str(last[0])}
            try:
                conns[k].request("POST", "/v2/models/digits/infer", body, headers)
                resp = conns[k].getresponse()
                doc = json.loads(resp.read())
                status = resp.status
            except (OSError, http.client.HTTPException) as exc:
                conns[k].close()
                with self._lock:
                    self.seen.failed.append(f"{self.urls[k]}: {exc}")
                continue
            with self._lock:
                if status != 200:
                    self.seen.failed.append(f"{self.urls[k]}: {status} {doc}")
                    continue
                epoch = int(resp.getheader("x-modelvc-epoch", "0"))
                version = resp.getheader("x-modelvc-version", "")
                if doc.get("parameters", {}).get("modelvc_epoch") != epoch:
                    self.seen.failed.append(f"header and body disagree: {doc}")
                if epoch < last[0]:
                    self.seen.backwards.append(
                        f"client-{i}: epoch {last[0]} then {epoch} (v{version}) at "
                        f"{self.urls[k]}")
                last = max(last, (epoch, int(version)))
                self.seen.ok += 1
                self.seen.versions.add(version)
            self._stop.wait(self.pause)
        for c in conns:
            c.close()


class WatchProcess(_Child):
    """`modelvc deploy watch NAME --json ...` in its own process: its JSON lines (one
    per rollout, or per refused version it skips) are read from its output file."""

    def __init__(self, registry: Path, name: str, *args: str, log: Path) -> None:
        self.out, self.log = log.with_suffix(".jsonl"), log
        cmd = [sys.executable, "-m", "modelvc.cli.main", "--registry", str(registry),
               "deploy", "watch", name, "--json", *args]
        with open(self.out, "wb") as out, open(log, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err,
                                         env=os.environ | {"PYTHONUNBUFFERED": "1"})

    def lines(self) -> list[dict[str, Any]]:
        if self.proc.poll() is not None and self.proc.returncode not in (0, 130, 143, -9):
            raise AssertionError(f"watcher exited {self.proc.returncode}\n"
                                 f"{self.log.read_text()[-3000:]}")
        text = self.out.read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def wait_lines(self, n: int, what: str, limit: float = 90.0) -> list[dict[str, Any]]:
        wait_for(lambda: len(self.lines()) >= n, what, limit)
        return self.lines()

    def stop(self) -> None:
        """Ctrl-C, as an operator stops it (a loaded machine may take a while)."""
        self._end(signal.SIGINT, 90)


# What `modelvc serve --fleet` imports before it serves (the CLI, the gateway, its fleet
# agent, ONNX Runtime, uvicorn's loop and protocol), imported once in the zygote of
# GatewayProcess; gRPC is left to each gateway (no gRPC state crosses a fork).
PRELOAD = ("modelvc.cli.main", "modelvc.cli.serve_cmds", "modelvc.serving.runner",
           "modelvc.serving.fleet_agent", "modelvc.serving.infer_protocol",
           "modelvc.serving.runtimes.onnx",
           "onnxruntime", "uvicorn.loops.auto", "uvicorn.protocols.http.auto",
           "uvicorn.lifespan.on")
_gateway_zygote: Zygote | None = None


def _zygote() -> Zygote:
    global _gateway_zygote
    if _gateway_zygote is None or _gateway_zygote.proc.poll() is not None:
        _gateway_zygote = Zygote(PRELOAD, env={"MODELVC_POOL_MB": CLI_POOL_MB})
    return _gateway_zygote


def spawn(argv: list[str], env: dict[str, str], code: str | None = None) -> Forked:
    """`modelvc ARGV` (or CODE, as `python -c CODE ARGV` runs it) forked from the
    gateways' zygote: a controller process that is killed or signalled, without the
    ~0.5 s of CPU of its interpreter's start-up and imports."""
    if code is not None:
        return _zygote().spawn(argv, env, code)
    return _zygote().spawn(argv, env, entry="modelvc.cli.main:main")
