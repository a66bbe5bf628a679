"""The server UI's session cookies: signed, expiring, never the token (uisession.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from modelvc.meta.auth import hash_token
from modelvc.server.uisession import KEY_ENV, Sessions, load_key


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def test_a_session_names_the_token_hash_and_expires() -> None:
    clock = Clock()
    s = Sessions(b"k" * 32, seconds=3600, clock=clock)
    token = "mvc_secret_token"
    cookie = s.issue(hash_token(token))
    assert token not in cookie
    assert s.token_hash(cookie) == hash_token(token)
    assert s.issue(hash_token(token)) != cookie  # a fresh nonce per login
    clock.t += 3599
    assert s.token_hash(cookie) == hash_token(token)
    clock.t += 1
    assert s.token_hash(cookie) is None


def test_a_forged_or_foreign_cookie_is_refused() -> None:
    s = Sessions(b"k" * 32)
    cookie = s.issue(hash_token("a"))
    h, exp, nonce, mac = cookie.split(".")
    assert Sessions(b"other key").token_hash(cookie) is None
    assert s.token_hash(f"{hash_token('b')}.{exp}.{nonce}.{mac}") is None
    assert s.token_hash(f"{h}.{int(exp) + 1}.{nonce}.{mac}") is None
    for bad in ("", "a.b.c", "a.b.c.d.e", f"{h}.soon.{nonce}.{mac}", "a"):
        assert s.token_hash(bad) is None


def test_the_key_is_made_once_private_and_shared(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    key = load_key(tmp_path)
    path = tmp_path / "ui" / "session-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(tmp_path) == key and len(key) == 32  # a second process agrees
    shared = tmp_path / "mounted-secret"
    shared.write_text("ab" * 32 + "\n")
    monkeypatch.setenv(KEY_ENV, str(shared))
    assert load_key(tmp_path / "elsewhere") == bytes.fromhex("ab" * 32)
