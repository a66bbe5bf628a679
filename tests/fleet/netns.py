"""Hosts as network namespaces: a bridge on a private /24 in the root namespace, one veth
pair per host, and a TCP relay so the hosts reach the PostgreSQL that listens on the
root namespace's loopback (the shared cluster is not reconfigured for a test)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check)


def netns_works() -> str | None:
    """None if `ip netns add` works here, else why not."""
    name = f"mvc-probe-{uuid.uuid4().hex[:6]}"
    try:
        done = sh("ip", "netns", "add", name, check=False)
    except OSError as exc:
        return f"ip: {exc}"
    if done.returncode != 0:
        return f"ip netns add failed: {done.stderr.strip()}"
    sh("ip", "netns", "del", name, check=False)
    return None


@dataclass(frozen=True)
class Host:
    ns: str
    ip: str
    link: str  # the root-namespace end of its veth pair: down = cut off

    def cut(self) -> None:
        sh("ip", "link", "set", self.link, "down")

    def restore(self) -> None:
        sh("ip", "link", "set", self.link, "up")


def free_subnet() -> int:
    """A 10.200.X.0/24 no interface uses (concurrent runs each take their own)."""
    used = set(re.findall(r"inet 10\.200\.(\d+)\.", sh("ip", "-4", "-o", "addr").stdout))
    free = [x for x in range(2, 255) if str(x) not in used]
    return random.choice(free)


@contextlib.contextmanager
def hosts(n: int, subnet: int | None = None) -> Iterator[tuple[str, list[Host]]]:
    """(gateway ip of the bridge, hosts); everything is deleted afterwards, even on error."""
    tag = uuid.uuid4().hex[:4]
    bridge, base = f"mvcbr{tag}", f"10.200.{subnet or free_subnet()}"
    made: list[Host] = []
    try:
        sh("ip", "link", "add", bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{base}.1/24", "dev", bridge)
        sh("ip", "link", "set", bridge, "up")
        for i in range(n):
            ns, a, b = f"mvc-{tag}-h{i + 1}", f"mvc{tag}h{i + 1}a", f"mvc{tag}h{i + 1}b"
            sh("ip", "netns", "add", ns)
            made.append(Host(ns, f"{base}.{10 + i + 1}", a))
            sh("ip", "link", "add", a, "type", "veth", "peer", "name", b)
            sh("ip", "link", "set", b, "netns", ns)
            sh("ip", "link", "set", a, "master", bridge)
            sh("ip", "link", "set", a, "up")
            for cmd in (["ip", "link", "set", "lo", "up"],
                        ["ip", "addr", "add", f"{base}.{10 + i + 1}/24", "dev", b],
                        ["ip", "link", "set", b, "up"]):
                sh("ip", "netns", "exec", ns, *cmd)
        yield f"{base}.1", made
    finally:
        for h in made:
            sh("ip", "netns", "del", h.ns, check=False)  # takes its veth pair along
        sh("ip", "link", "del", bridge, check=False)


class Relay:
    """TCP relay: listen_host:port -> target (asyncio on a daemon thread)."""

    def __init__(self, listen_host: str, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, listen_host, 0), self.loop).result()
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            r2, w2 = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            finally:
                w.close()

        try:
            await asyncio.gather(pipe(reader, w2), pipe(r2, writer))
        except (OSError, asyncio.CancelledError):
            writer.close()
            w2.close()

    def close(self) -> None:
        async def shut() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
