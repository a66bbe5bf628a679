"""The image's HEALTHCHECK, for either role it runs: healthy when the one process in
the container answers its liveness path. `modelvc server`: /healthz on
MODELVC_SERVER_PORT (8470); a gateway, `modelvc serve`: /v2/health/live on
MODELVC_GATEWAY_PORT (8000, the port in deploy/k8s-fleet's serve.toml).
Exit 0 healthy, 1 not (what Docker expects)."""

from __future__ import annotations

import os
import sys
import urllib.request


def probes(env: dict[str, str]) -> list[str]:
    server = env.get("MODELVC_SERVER_PORT", "8470")
    gateway = env.get("MODELVC_GATEWAY_PORT", "8000")
    return [f"http://127.0.0.1:{server}/healthz",
            f"http://127.0.0.1:{gateway}/v2/health/live"]


def healthy(urls: list[str], timeout: float = 2.0) -> bool:
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                if 200 <= resp.status < 300:
                    return True
        except OSError:  # refused, timed out, or an HTTP error status
            continue
    return False


if __name__ == "__main__":
    sys.exit(0 if healthy(probes(dict(os.environ))) else 1)
