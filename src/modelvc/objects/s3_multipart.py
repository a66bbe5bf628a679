"""S3Store's multipart uploads (objects above 64 MiB) and the incomplete ones gc sweeps.

An upload that fails (the endpoint goes away, a part is refused, the source breaks) is
aborted, retried after a pause or two since the outage that failed it often fails the
first abort too; what is left after that (the process was killed, the endpoint stayed
down) costs storage until aborted, and nothing lists it as an object. gc lists the
incomplete uploads under the store's prefix, reports them and, unless a dry run, aborts
those started longer ago than its grace period (a writer on another host may be in
the middle of one).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from ..errors import ObjectNotFound, StorageError

log = logging.getLogger(__name__)
MiB = 1 << 20
PART_SIZE = 16 * MiB
PART_THREADS = 4  # parts in flight: memory is this many parts


@dataclass(frozen=True)
class IncompleteUpload:
    key: str  # the object key it was writing
    name: str  # its S3 name
    upload_id: str
    initiated: float  # POSIX time


class MultipartMixin:
    """Multipart verbs of S3Store (which provides the attributes below)."""

    if TYPE_CHECKING:
        bucket: str
        prefix: str
        _client: Any

        def _translated(self, key: str | None, action: str) -> AbstractContextManager[None]: ...

        def _key_of(self, name: str) -> str | None: ...

    # Pauses before the second and third attempt to abort a failed upload.
    abort_pauses: tuple[float, ...] = (1.0, 4.0)
    sleep: Callable[[float], None]  # time.sleep; tests inject their own

    def _multipart(self, key: str, name: str, src: BinaryIO) -> None:
        """Upload SRC to NAME in parts; on any failure abort the upload, then raise."""
        with self._translated(key, "write"):
            uid = str(self._client.create_multipart_upload(Bucket=self.bucket, Key=name)
                      ["UploadId"])
        try:
            parts = self._parts(key, name, uid, src)
            with self._translated(key, "write"):
                self._client.complete_multipart_upload(
                    Bucket=self.bucket, Key=name, UploadId=uid,
                    MultipartUpload={"Parts": parts})
        except BaseException:
            self._abort(key, name, uid)
            raise

    def _parts(self, key: str, name: str, uid: str, src: BinaryIO) -> list[dict[str, Any]]:
        """Read parts in order, upload up to PART_THREADS at once; their ETags."""
        done: list[dict[str, Any]] = []
        pending: deque[Future[dict[str, Any]]] = deque()
        with ThreadPoolExecutor(PART_THREADS, thread_name_prefix="modelvc-s3-part") as pool:
            try:
                number = 0
                while True:
                    data = _read_full(src, PART_SIZE)
                    if not data and number:
                        break
                    number += 1
                    pending.append(pool.submit(self._part, key, name, uid, number, data))
                    if len(pending) >= PART_THREADS:
                        done.append(pending.popleft().result())
                    if len(data) < PART_SIZE:
                        break
                while pending:
                    done.append(pending.popleft().result())
            finally:
                for f in pending:  # failed: parts not started are not sent
                    f.cancel()
        return done

    def _part(self, key: str, name: str, uid: str, number: int, data: bytes
              ) -> dict[str, Any]:
        with self._translated(key, "write"):
            resp = self._client.upload_part(Bucket=self.bucket, Key=name, UploadId=uid,
                                            PartNumber=number, Body=data)
        return {"ETag": resp["ETag"], "PartNumber": number}

    def _abort(self, key: str, name: str, uid: str) -> None:
        """Abort a failed upload, retrying; never raises (the upload's own error is
        what the caller reports). Left behind, gc finds it."""
        for pause in (*self.abort_pauses, None):
            try:
                self.abort_upload(IncompleteUpload(key, name, uid, 0.0))
                return
            except StorageError as exc:
                if pause is None:
                    log.warning("could not abort the incomplete upload of %s (%s): "
                                "`modelvc gc --apply` aborts it after the grace period",
                                key, exc)
                    return
                self.sleep(pause)

    def incomplete_uploads(self) -> Iterator[IncompleteUpload]:
        """Multipart uploads under this store's prefix that were never completed."""
        with self._translated(None, "list uploads in"):
            pages = self._client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.prefix)
            for page in pages:
                for u in page.get("Uploads", []) or []:
                    key = self._key_of(str(u["Key"]))
                    if key is not None:  # another application's upload is not ours
                        yield IncompleteUpload(key, str(u["Key"]), str(u["UploadId"]),
                                               u["Initiated"].timestamp())

    def upload_bytes(self, upload: IncompleteUpload) -> int:
        """What the parts of an incomplete upload hold (0 if it is gone)."""
        total = 0
        try:
            with self._translated(upload.key, "list the parts of"):
                pages = self._client.get_paginator("list_parts").paginate(
                    Bucket=self.bucket, Key=upload.name, UploadId=upload.upload_id)
                for page in pages:
                    total += sum(int(p["Size"]) for p in page.get("Parts", []) or [])
        except ObjectNotFound:  # completed or aborted meanwhile
            return 0
        return total

    def abort_upload(self, upload: IncompleteUpload) -> None:
        """Abort an incomplete upload (one already gone is fine)."""
        try:
            with self._translated(upload.key, "abort the upload of"):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=upload.name,
                                                    UploadId=upload.upload_id)
        except ObjectNotFound:  # NoSuchUpload: completed or aborted meanwhile
            pass


def _read_full(src: BinaryIO, n: int) -> bytes:
    """Up to N bytes, fewer only at the end (a raw stream may return less per read)."""
    out = bytearray()
    while len(out) < n:
        piece = src.read(n - len(out))
        if not piece:
            break
        out += piece
    return bytes(out)


__all__ = ["PART_SIZE", "IncompleteUpload", "MultipartMixin"]
