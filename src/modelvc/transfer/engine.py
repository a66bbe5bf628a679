"""The transfer algorithm, the same for push, pull, clone and server to server.

1. Refs to send are read from the source; their current values at the sink are noted
   (the compare-and-swap expectations of step 5).
2. Versions: the source lists the tips' ancestry, the sink says which it has.
3. Objects: the source lists the closure of the missing versions (manifests, listed
   objects, delta chains), the sink says which it has; only the rest travels, as
   stored (a fine-tune's deltas are small), in waves by delta depth so a reference
   always lands before the deltas on it (the sink verifies each by decoding it).
4. Versions are recorded at the sink oldest first (the sink numbers them).
5. Refs move by compare-and-swap (branches fast-forward only unless forced).

Small objects go in packs (one request each); large ones stream into an upload session
on the sink, which keeps what arrived: a retried transfer asks how much the sink holds
and sends only the rest. A few packs/streams run in parallel, so memory is bounded by
jobs x PACK_BYTES. Progress is reported in stored bytes, chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby
from threading import Event, Lock

from ..client.uploads import resume
from ..errors import ChunkRefused, CorruptObject, RefNotFound, SessionMoved, UsageError
from ..names import parse_ref
from .protocol import ObjectEntry, RefInfo, Sink, Source

PACK_BYTES = 8 << 20  # one request: at most this many stored bytes (bounds memory)
PACK_OBJECTS = 1024
JOBS = 4
STREAM_BYTES = PACK_BYTES // 2  # larger objects stream (resumably), one at a time each
RESTARTS = 3  # per streamed object: re-asks after a refused chunk or a failed check
MOVED_WHOLE = 2  # a session that moved this often: the object goes whole in one request

Progress = Callable[[int, int], None]  # (bytes done, bytes total)

# A received object that fails its check (it was verified by the receiver before it was
# stored) after the retries `resume` allows: the sender's copy, most likely.
DAMAGED_HINT = ("nothing was recorded here; if it fails again, the sending registry's copy "
                "is damaged: run `modelvc verify` on it (a server: `modelvc --registry URL "
                "verify`, as an admin) to see which versions it breaks, then `modelvc "
                "verify --repair` there")


class _Stopped(Exception):
    """A stream ended early: the transfer failed elsewhere or was interrupted."""


@dataclass
class RefResult:
    ref: str
    kind: str
    version_id: str
    result: str  # created | fast-forward | forced | promoted | up to date


@dataclass
class TransferResult:
    versions: list[str] = field(default_factory=list)  # recorded at the sink
    objects_sent: int = 0
    bytes_sent: int = 0  # stored bytes of the objects moved
    objects_skipped: int = 0  # the sink had them already
    bytes_resumed: int = 0  # of bytes_sent: held by the sink's upload sessions, not resent
    refs: list[RefResult] = field(default_factory=list)


def select_refs(source: Source, specs: Sequence[str], *, channels: bool = False
                ) -> list[RefInfo]:
    """MODEL (its branches and tags, plus channels if asked) or MODEL@NAME (that ref);
    no SPECS: every model that has a ref."""
    out: list[RefInfo] = []
    named = bool(specs)
    for spec in specs or source.models():
        ref = parse_ref(spec)
        rows = [r for r in source.refs(ref.model) if r.version_id is not None]
        if ref.selector is None:
            kinds = {"branch", "tag", "channel"} if channels else {"branch", "tag"}
            picked = [r for r in rows if r.kind in kinds]
        else:
            picked = [r for r in rows if r.name == ref.selector]
            if not picked:
                raise RefNotFound(f"no branch, channel or tag {spec} at the source")
        if not picked:
            if not named:  # every model: one with no versions yet (an empty registered
                continue   # model, a Hub repo just created) has nothing to send
            raise RefNotFound(f"{spec}: nothing to transfer (no refs)")
        out.extend(picked)
    return out


def transfer(source: Source, sink: Sink, specs: Sequence[str], *, force: bool = False,
             channels: bool = False, jobs: int = JOBS, progress: Progress | None = None,
             refs: list[RefInfo] | None = None) -> TransferResult:
    result = TransferResult()
    refs = refs if refs is not None else select_refs(source, specs, channels=channels)
    # One model at a time: a server authorizes object access per model.
    for model, group in groupby(sorted(refs, key=lambda r: r.model), key=lambda r: r.model):
        mrefs = list(group)
        now = {r.name: r.version_id for r in sink.refs(model)}
        expected = {r.name: now.get(r.name) for r in mrefs}
        _send_versions(source, sink, model, sorted({r.version_id for r in mrefs
                                                     if r.version_id}),
                       jobs, progress, result)
        for r in mrefs:
            assert r.version_id is not None
            what = sink.update_ref(r, expected=expected[r.name], force=force)
            result.refs.append(RefResult(f"{r.model}@{r.name}", r.kind, r.version_id, what))
    return result


def _send_versions(source: Source, sink: Sink, model: str, tips: list[str], jobs: int,
                   progress: Progress | None, result: TransferResult) -> None:
    history = source.ancestry(model, tips)
    have = sink.has_versions(model, [v.id for v in history])
    missing = [v for v in history if v.id not in have and v.id not in result.versions]
    if not missing:
        return
    closure = source.closure(model, [v.id for v in missing])
    present = sink.has_objects(model, [o.id for o in closure])
    send = [o for o in closure if o.id not in present]
    result.objects_skipped += len(closure) - len(send)
    try:
        _send(source, sink, model, send, jobs, progress, result)
    except CorruptObject as exc:
        # The object id alone says nothing to the user: name the versions it was sent
        # for (one of them needs it), and what to do.
        names = ", ".join(f"{v.model}@v{v.number}" for v in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        exc.message = f"sending {names}{more}: {exc.message}"
        exc.args = (exc.message,)
        exc.hint = exc.hint or DAMAGED_HINT
        raise
    for v in missing:  # oldest first: parents get their numbers before children
        sink.record_version(model, v.id)
        result.versions.append(v.id)


def _send(source: Source, sink: Sink, model: str, objs: list[ObjectEntry], jobs: int,
          progress: Progress | None, result: TransferResult) -> None:
    total = sum(o.size for o in objs)
    lock = Lock()
    done = 0
    credited: dict[str, int] = {}  # streamed object -> bytes of it counted as done
    # Set when the transfer fails or is interrupted (Ctrl-C, SIGTERM: the main thread):
    # streams end at their next chunk. The pool's exit waits for its workers, and an
    # object streaming on would have held the interrupted command until it was sent
    # whole (tests/transfer/test_interrupted.py). The sink keeps the chunks it got.
    stop = Event()

    def going(chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if stop.is_set():
                raise _Stopped
            yield chunk

    if progress:
        progress(0, total)

    def add(n: int) -> None:
        nonlocal done
        with lock:  # also serializes the callback: counts arrive in order
            done += n
            if progress and n:
                progress(done, total)

    def mark(o: ObjectEntry, pos: int) -> None:
        """The sink holds POS bytes of O (monotonic: a restart is not progress)."""
        with lock:
            before = credited.get(o.id, 0)
            credited[o.id] = max(before, pos)
        add(max(0, pos - before))

    def pack(batch: list[ObjectEntry]) -> None:
        if stop.is_set():
            raise _Stopped
        sink.write_pack(model, source.read_pack(model, [o.id for o in batch]))
        add(sum(o.size for o in batch))

    def stream(o: ObjectEntry) -> None:
        sent = 0  # bytes handed to the sink over all attempts
        reached = 0  # what the sink holds in the current attempt
        theirs = False  # another transfer finished it meanwhile

        def ask() -> int | None:
            nonlocal reached, theirs
            off = sink.stream_offset(model, o.id, o.size)
            theirs = off is None
            mark(o, o.size if off is None else off)
            reached = off or 0
            return off

        def held(pos: int) -> None:
            nonlocal reached
            reached = pos
            mark(o, pos)

        def send(off: int) -> None:
            nonlocal sent
            chunks = going(source.read_stream(model, o.id, off)) if off < o.size \
                else iter(())
            try:
                sink.write_stream(model, o.id, chunks, offset=off, size=o.size,
                                  progress=held)
            except ChunkRefused:
                sent += reached - off
                raise
            except CorruptObject:  # the whole went and failed verification
                sent += o.size - off
                raise
            except SessionMoved:
                sent += reached - off
                raise
            sent += o.size - off

        def whole() -> None:
            nonlocal sent
            sink.write_whole(model, o.id, going(source.read_stream(model, o.id)), o.size)
            sent += o.size

        resume(ask, send, whole, restarts=RESTARTS, moved_whole=MOVED_WHOLE)
        if not theirs:
            mark(o, o.size)
            with lock:
                result.bytes_resumed += max(0, o.size - sent)

    with ThreadPoolExecutor(max(1, jobs), thread_name_prefix="modelvc-transfer") as pool:
        by_depth = sorted(objs, key=lambda o: o.depth)
        for _, wave in groupby(by_depth, key=lambda o: o.depth):
            # A wave finishes before the next starts: its objects are the references
            # of the next wave's deltas.
            items = list(wave)
            futures = [pool.submit(pack, b) for b in _batches(items)]
            futures += [pool.submit(stream, o) for o in items if o.size > STREAM_BYTES]
            try:
                for f in futures:
                    f.result()
            except BaseException:
                stop.set()
                raise
            finally:
                for f in futures:
                    f.cancel()
    result.objects_sent += len(objs)
    result.bytes_sent += total


def _batches(items: list[ObjectEntry]) -> Iterator[list[ObjectEntry]]:
    batch: list[ObjectEntry] = []
    size = 0
    for o in items:
        if o.size > STREAM_BYTES:
            continue  # streamed on its own
        if batch and (size + o.size > PACK_BYTES or len(batch) >= PACK_OBJECTS):
            yield batch
            batch, size = [], 0
        batch.append(o)
        size += o.size
    if batch:
        yield batch


def check_jobs(jobs: int) -> int:
    if jobs < 1 or jobs > 64:
        raise UsageError(f"--jobs must be between 1 and 64, not {jobs}")
    return jobs
