"""`modelvc webhook` as a real subprocess: add, list without secrets, deliver --wait, log."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.test_cli import js, run
from tests.conftest import write_model
from tests.events.conftest import SECRET
from tests.events.receiver import Receiver


def test_cli_backlog_after_receiver_was_down(tmp_path: Path, receiver: Receiver) -> None:
    run(["init"], tmp_path)
    base = write_model(tmp_path / "m1.safetensors", 1)
    write_model(tmp_path / "m2.safetensors", 2, base=base)
    added = js(["webhook", "add", receiver.url, "--secret", SECRET, "--event", "promote",
                "--event", "rollback"], tmp_path)
    assert "secret" not in added and added["events"] == ["promote", "rollback"]
    generated = js(["webhook", "add", "http://127.0.0.1:9/unused", "--event", "gate"],
                   tmp_path)
    assert len(generated["secret"]) >= 32  # printed once, here
    listed = run(["webhook", "list", "--json"], tmp_path).stdout
    assert SECRET not in listed and generated["secret"] not in listed
    assert [h["id"] for h in json.loads(listed)] == [added["id"], generated["id"]]
    js(["webhook", "remove", str(generated["id"])], tmp_path)

    js(["commit", "m1.safetensors", "--model", "toy"], tmp_path)
    js(["commit", "m2.safetensors", "--model", "toy"], tmp_path)
    receiver.stop()
    js(["promote", "toy@v1", "--to", "production", "--create", "-r", "launch"], tmp_path)
    js(["promote", "toy@v2", "--to", "production", "-r", "better"], tmp_path)
    js(["rollback", "toy", "production", "-r", "regressed"], tmp_path)
    (hook,) = js(["webhook", "list"], tmp_path)
    assert hook["pending"] == 3
    log = js(["webhook", "log", str(added["id"])], tmp_path)
    assert log and all(d["status"] is None and d["error"] for d in log)
    assert run(["webhook", "deliver"], tmp_path, ok=False).returncode == 1  # still down

    receiver.start()  # back on the same port
    report = js(["webhook", "deliver", "--wait", "30"], tmp_path)
    assert report["delivered"] == 3 and report["total_pending"] == 0
    assert [(r.event, r.doc["reason"]) for r in receiver.received] == [
        ("promote", "launch"), ("promote", "better"), ("rollback", "regressed")]
    assert len({r.delivery for r in receiver.received}) == 3  # each exactly once
    assert js(["webhook", "list"], tmp_path)[0]["pending"] == 0
    assert js(["webhook", "log"], tmp_path)[-1]["status"] == 204
    actions = [(e["action"], e["actor"]) for e in js(["audit"], tmp_path)]
    assert actions.count(("webhook", "cli-tester")) == 3  # two adds and a remove
