"""Upload sessions on their own (transfer/sessions.py): real files, real flocks."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import blake3
import pytest

from modelvc.errors import ChunkRefused, CorruptObject, SessionMoved, StorageError
from modelvc.transfer.sessions import Sessions

OID = blake3.blake3(b"object").hexdigest()


def _digest(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def test_chunks_append_at_the_held_offset_and_never_beyond(tmp_path: Path) -> None:
    s = Sessions(tmp_path, ttl=3600)
    assert s.offset("wes", "object", OID, 10) == 0
    assert s.append("wes", "object", OID, 10, 0, b"abcd", _digest(b"abcd")) == 4
    assert s.offset("wes", "object", OID, 10) == 4
    with pytest.raises(SessionMoved) as exc:  # a gap: refused, nothing written
        s.append("wes", "object", OID, 10, 6, b"gh")
    assert exc.value.held == 4 and s.offset("wes", "object", OID, 10) == 4
    # A smaller offset rewrites from there (the sender decides).
    assert s.append("wes", "object", OID, 10, 2, b"CDEF") == 6
    assert s.append("wes", "object", OID, 10, 6, b"ghij") == 10
    with s.complete("wes", "object", OID, 10) as path:
        assert path.read_bytes() == b"abCDEFghij"
    assert s.offset("wes", "object", OID, 10) == 0  # removed once complete


def test_a_chunk_that_does_not_match_its_digest_is_not_written(tmp_path: Path) -> None:
    s = Sessions(tmp_path, ttl=3600)
    s.append("wes", "object", OID, 8, 0, b"abcd", _digest(b"abcd"))
    with pytest.raises(ChunkRefused):
        s.append("wes", "object", OID, 8, 4, b"eXgh", _digest(b"efgh"))
    assert s.offset("wes", "object", OID, 8) == 4
    assert s.path("wes", "object", OID, 8).read_bytes() == b"abcd"


def test_a_failed_check_discards_the_session(tmp_path: Path) -> None:
    s = Sessions(tmp_path, ttl=3600)
    s.append("wes", "raw", OID, 4, 0, b"abcd")
    with pytest.raises(CorruptObject), s.complete("wes", "raw", OID, 4) as path:
        assert s.digest(path) == _digest(b"abcd")
        raise CorruptObject("not the object")
    assert s.offset("wes", "raw", OID, 4) == 0
    with pytest.raises(SessionMoved):
        s.append("wes", "raw", OID, 4, 2, b"cd")


def test_sessions_are_per_subject_kind_and_size(tmp_path: Path) -> None:
    s = Sessions(tmp_path, ttl=3600)
    s.append("wes", "object", OID, 8, 0, b"abcd")
    assert s.offset("olga", "object", OID, 8) == 0
    assert s.offset("wes", "raw", OID, 8) == 0
    assert s.offset("wes", "object", OID, 9) == 0
    with pytest.raises(SessionMoved):  # olga cannot continue wes's upload
        s.append("olga", "object", OID, 8, 4, b"efgh")
    assert s.path("wes", "object", OID, 8).read_bytes() == b"abcd"


def test_stale_sessions_expire_and_busy_or_fresh_ones_stay(tmp_path: Path) -> None:
    s = Sessions(tmp_path, ttl=3600)
    other = blake3.blake3(b"other").hexdigest()
    busy = blake3.blake3(b"busy").hexdigest()
    for oid in (OID, other, busy):
        s.append("wes", "object", oid, 8, 0, b"abcd")
    old = time.time() - 7200
    for oid in (OID, busy):
        os.utime(s.path("wes", "object", oid, 8), (old, old))
    fd = os.open(s.path("wes", "object", busy, 8), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # being written by another process right now
        assert s.expire() == 1
    finally:
        os.close(fd)
    assert s.offset("wes", "object", OID, 8) == 0
    assert s.offset("wes", "object", other, 8) == 4
    assert s.offset("wes", "object", busy, 8) == 4


def test_the_digest_is_of_the_file_whoever_wrote_it(tmp_path: Path) -> None:
    """Two processes on one folder (two Sessions on one root): one rewrites what the
    other sent; the check at the end hashes what is in the file, not what either sent."""
    a, b = Sessions(tmp_path, ttl=3600), Sessions(tmp_path, ttl=3600)
    a.append("wes", "raw", OID, 8, 0, b"abcd")
    b.append("wes", "raw", OID, 8, 0, b"wxyz")
    a.append("wes", "raw", OID, 8, 4, b"efgh")
    with a.complete("wes", "raw", OID, 8) as path:
        assert a.digest(path) == _digest(b"wxyzefgh")


def test_a_failed_store_keeps_the_complete_session(tmp_path: Path) -> None:
    """Issue 11.5: the store failing after the spool was received (an S3 outage) is
    not the upload's fault: the spool stays for the next attempt to store."""
    s = Sessions(tmp_path, ttl=3600)
    s.append("wes", "object", OID, 4, 0, b"abcd")
    with pytest.raises(StorageError), s.complete("wes", "object", OID, 4):
        raise StorageError("cannot write it: the S3 endpoint is down")
    assert s.offset("wes", "object", OID, 4) == 4
    with s.complete("wes", "object", OID, 4) as path:  # the retry stores it
        assert path.read_bytes() == b"abcd"
    assert s.offset("wes", "object", OID, 4) == 0
