"""Webhooks against a real HTTP receiver on localhost: signed, ordered, at least once."""

from __future__ import annotations

import threading
from pathlib import Path

from modelvc.registry import Registry
from modelvc.webhooks import sign, verify
from tests.events.conftest import SECRET, two_versions
from tests.events.receiver import Receiver

MOVES = ["promote", "rollback", "force"]


def _moves(reg: Registry) -> None:
    reg.promote("toy@v1", "production", reason="launch", create=True)
    reg.promote("toy@v2", "production", reason="better")
    reg.rollback("toy", "production", reason="regressed")


def test_channel_moves_arrive_signed_and_in_order(any_reg: Registry, tmp_path: Path,
                                                  receiver: Receiver) -> None:
    v1, v2 = two_versions(any_reg, tmp_path)
    hook = any_reg.events.add(receiver.url, secret=SECRET, events=MOVES, actor="ops")
    _moves(any_reg)
    # Delivered by the mutations themselves: nothing was left pending.
    assert any_reg.events.pending(any_reg.events.hooks()[0]) == 0
    assert receiver.rejected == 0
    assert [(r.event, r.doc["reason"]) for r in receiver.received] == [
        ("promote", "launch"), ("promote", "better"), ("rollback", "regressed")]
    first, _, back = (r.doc for r in receiver.received)
    assert first["target"] == "toy@production" and first["model"] == "toy"
    assert first["actor"] == "tester" and first["after"]["version"] == v1
    assert back["before"] == {"version": v2} and back["after"]["version"] == v1
    audit = {e.id: e for e in any_reg.audit()}
    for r in receiver.received:
        assert r.delivery == r.doc["delivery"] == f"{hook.id}-{r.doc['id']}"
        assert r.doc["hash"] == audit[r.doc["id"]].hash  # ties the event to the audit chain
    ids = [r.doc["id"] for r in receiver.received]
    assert ids == sorted(ids)
    assert all(d.status == 204 for d in any_reg.events.log(hook.id))


def test_signature_with_the_wrong_secret_is_refused(reg: Registry, tmp_path: Path,
                                                    receiver: Receiver) -> None:
    two_versions(reg, tmp_path)
    body = b'{"event":"promote"}'
    assert verify(SECRET, body, sign(SECRET, body))
    assert not verify(SECRET, body, sign("other", body))
    assert not verify(SECRET, body + b" ", sign(SECRET, body))
    hook = reg.events.add(receiver.url, secret="not-the-receivers", events=["promote"],
                          actor="ops")
    reg.promote("toy@v1", "production", create=True)
    assert receiver.received == [] and receiver.rejected >= 1
    log = reg.events.log(hook.id)
    assert log and all(d.status == 401 for d in log)
    assert reg.events.pending(reg.events.hooks()[0]) == 1  # a refused event stays pending


def test_receiver_down_then_next_mutation_delivers_backlog(reg: Registry, tmp_path: Path,
                                                           receiver: Receiver) -> None:
    two_versions(reg, tmp_path)
    hook = reg.events.add(receiver.url, secret=SECRET, events=MOVES, actor="ops")
    receiver.stop()
    _moves(reg)  # each mutation tries briefly, logs, and succeeds anyway
    assert reg.resolve("toy@production").number == 1
    log = reg.events.log(hook.id)
    assert log and all(d.status is None and d.error for d in log)
    assert {d.audit_id for d in log} == {reg.audit(action="promote")[0].id}  # blocked in order
    assert reg.events.pending(reg.events.hooks()[0]) == 3
    receiver.start()  # same port
    reg.promote("toy@v2", "production", reason="again", create=True)
    assert [(r.event, r.doc["reason"]) for r in receiver.received] == [
        ("promote", "launch"), ("promote", "better"), ("rollback", "regressed"),
        ("promote", "again")]
    assert reg.events.pending(reg.events.hooks()[0]) == 0


def test_failing_event_is_retried_with_backoff_and_blocks_later_ones(
        reg: Registry, tmp_path: Path, receiver: Receiver) -> None:
    two_versions(reg, tmp_path)
    hook = reg.events.add(receiver.url, secret=SECRET, events=MOVES, actor="ops")
    receiver.fail_next = 6  # 503s: more than the mutations' brief tries
    _moves(reg)
    report = reg.events.deliver(wait=30)
    assert report.pending == {}
    assert [r.doc["reason"] for r in receiver.received] == ["launch", "better", "regressed"]
    log = reg.events.log(hook.id)
    assert [d.status for d in log].count(503) == 6
    first_ok = next(i for i, d in enumerate(log) if d.status == 204)
    assert {d.audit_id for d in log[:first_ok]} == {receiver.received[0].doc["id"]}


def test_filters_and_late_webhooks(reg: Registry, tmp_path: Path, receiver: Receiver) -> None:
    other = Receiver(SECRET).start()
    try:
        reg.events.add(receiver.url, secret=SECRET, events=["commit"], actor="ops")
        two_versions(reg, tmp_path)
        reg.promote("toy@v1", "production", create=True)
        assert receiver.events() == [("commit", "toy@main"), ("commit", "toy@main")]
        # Added after all that: only what happens from now on (its own entry is a ping).
        late = reg.events.add(other.url, secret=SECRET, events=[], actor="ops")
        reg.rollback("toy", "production", to="toy@v2")  # no previous target: explicit
        assert other.events() == [("webhook", other.url), ("rollback", "toy@production")]
        assert all(r.doc["id"] > late.cursor for r in other.received)
        assert len(receiver.received) == 2
    finally:
        other.stop()


def test_concurrent_deliverers_do_not_lose_or_reorder(reg: Registry, tmp_path: Path,
                                                      receiver: Receiver) -> None:
    two_versions(reg, tmp_path)
    reg.events.add(receiver.url, secret=SECRET, events=MOVES, actor="ops")
    receiver.stop()
    for i in range(6):
        reg.promote(f"toy@v{1 + i % 2}", "production", reason=str(i), create=True)
    receiver.start()
    others = [Registry.open(reg._layout.root.parent) for _ in range(3)]
    try:
        threads = [threading.Thread(target=o.events.deliver, kwargs={"wait": 20})
                   for o in others]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for o in others:
            o.close()
    # At least once, in order: deduped by delivery id, each event once and sorted.
    seen: dict[str, int] = {}
    for r in receiver.received:
        seen.setdefault(r.delivery, r.doc["id"])
    assert [int(k) for k in (r.doc["reason"] for r in receiver.received
                             if seen.pop(r.delivery, None) is not None)] == list(range(6))
    assert reg.events.pending(reg.events.hooks()[0]) == 0


def test_run_forever_delivers_what_others_left_pending(reg: Registry, tmp_path: Path,
                                                       receiver: Receiver) -> None:
    two_versions(reg, tmp_path)
    reg.events.add(receiver.url, secret=SECRET, events=MOVES, actor="ops")
    receiver.stop()
    _moves(reg)
    receiver.start()
    server = Registry.open(reg._layout.root.parent)
    stop = threading.Event()
    t = threading.Thread(target=server.events.run_forever, args=(stop, 0.1))
    t.start()
    try:
        receiver.wait_for(3)
    finally:
        stop.set()
        t.join()
        server.close()
    assert [r.doc["reason"] for r in receiver.received] == ["launch", "better", "regressed"]


def test_gate_results_are_events(reg: Registry, tmp_path: Path, receiver: Receiver) -> None:
    from modelvc.meta.api import AuditEntry

    v1, _ = two_versions(reg, tmp_path)
    reg.events.add(receiver.url, secret=SECRET, events=["gate"], actor="ops")
    for passed in (False, True):
        # As gate_runs.py records a run: the row and its audit entry, then the hook.
        reg._meta.record_gate_run(
            version_id=v1, channel="production", policy_digest="0" * 64, passed=passed,
            report_id="1" * 64, summary={"passed": passed}, actor="ci",
            audit_entry=AuditEntry(actor="ci", action="gate", target="toy@production",
                                   model="toy", after={"version": v1, "passed": passed}))
        reg.events.after_mutation()
    reg.promote("toy@v1", "production", create=True)  # not a gate: filtered out
    assert [(r.event, r.doc["after"]["passed"]) for r in receiver.received] == [
        ("gate", False), ("gate", True)]
