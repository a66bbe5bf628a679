"""One error decoder for every client of a modelvc server: RemoteRegistry and push/pull
(HttpEnd) raise the same modelvc error for the same answer, whether the server sent a
modelvc error body or something in between (a proxy, a balancer) answered by status."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from modelvc import errors
from modelvc.client import transport
from modelvc.remote import RemoteRegistry
from modelvc.transfer.http import HttpEnd

# path -> (status, body, content type): what a proxy in front of the registry answers.
ANSWERS: dict[str, tuple[int, bytes, str]] = {
    "401": (401, b"<html>login required</html>", "text/html"),
    "403": (403, b"forbidden", "text/plain"),
    "507": (507, b"", "text/plain"),
    "502": (502, b"<html>bad gateway</html>", "text/html"),
    "coded": (409, json.dumps({"error": "SessionMoved", "message": "held 5",
                               "hint": "ask again"}).encode(), "application/json"),
}


class Proxy(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        key = next((k for k in ANSWERS if f"/{k}/" in self.path), "401")
        status, body, ctype = ANSWERS[key]
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def proxy() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("key", "cls"), [
    ("401", errors.Unauthenticated), ("403", errors.PermissionDenied),
    ("507", errors.StorageError), ("502", errors.StorageError),
    ("coded", errors.SessionMoved)])
def test_both_clients_raise_the_same_error(proxy: str, key: str,
                                           cls: type[errors.ModelvcError]) -> None:
    raised = []
    with RemoteRegistry(f"{proxy}/{key}") as remote, pytest.raises(errors.ModelvcError) as a:
        remote.models()
    raised.append(a.value)
    end = HttpEnd(f"{proxy}/{key}")
    try:
        with pytest.raises(errors.ModelvcError) as b:
            end.models()
        raised.append(b.value)
        with pytest.raises(errors.ModelvcError) as c:  # an upload session's answer too
            end.stream_offset("m", "0" * 64, 10)
        raised.append(c.value)
    finally:
        end.close()
    assert [type(e) for e in raised] == [cls] * 3
    if key == "coded":  # the server's own class, message and hint, not a status guess
        assert all(e.message == "held 5" and e.hint == "ask again" for e in raised)


@pytest.fixture(scope="module")
def tls_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The proxy over HTTPS with a self-signed certificate for 127.0.0.1 (made by the
    openssl command): its URL and the certificate, which a client trusts only if told."""
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", d / "cert.pem"
    finally:
        server.shutdown()
        server.server_close()


def test_https_verifies_against_the_trusted_bundle_once_per_process(
        tls_proxy: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    url, cert = tls_proxy
    # Not trusted: the default bundle does not hold our certificate.
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    transport._tls.cache_clear()
    with RemoteRegistry(f"{url}/403") as remote, pytest.raises(errors.StorageError) as no:
        remote.models()
    assert "CERTIFICATE_VERIFY_FAILED" in str(no.value)
    # Trusted through SSL_CERT_FILE, as httpx itself honours it: the server's answer
    # arrives; every client of the process shares the one context.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    transport._tls.cache_clear()
    with RemoteRegistry(f"{url}/403") as remote, pytest.raises(errors.PermissionDenied):
        remote.models()
    end = HttpEnd(f"{url}/coded")
    try:
        with pytest.raises(errors.SessionMoved):
            end.models()
    finally:
        end.close()
    assert transport._tls.cache_info().misses == 1
    transport._tls.cache_clear()  # the next test's clients build their own


def test_plain_http_builds_no_tls_context(proxy: str) -> None:
    transport._tls.cache_clear()
    with RemoteRegistry(f"{proxy}/403") as remote, pytest.raises(errors.PermissionDenied):
        remote.models()
    assert transport._tls.cache_info().misses == 0


def test_a_server_never_reached_is_not_a_transfer_to_resume() -> None:
    """Nothing listens: the hint says to check the address (nothing arrived to resume
    from); once the server has answered, a lost connection is a cut transfer."""
    gone = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)  # bound, then closed: a free port
    url = f"http://127.0.0.1:{gone.server_address[1]}"
    gone.server_close()
    end = HttpEnd(url)
    try:
        with pytest.raises(errors.StorageError) as never:
            end.models()
    finally:
        end.close()
    assert never.value.hint == errors.NEVER_REACHED_HINT and not never.value.resumable

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    end = HttpEnd(f"http://127.0.0.1:{server.server_address[1]}/403")
    try:
        with pytest.raises(errors.PermissionDenied):
            end.models()  # answered
        server.shutdown()
        server.server_close()
        with pytest.raises(errors.StorageError) as cut:
            end.models()
    finally:
        end.close()
    assert cut.value.hint == errors.UNREACHABLE_RESUME_HINT and cut.value.resumable
