"""`modelvc serve` as a real process: flags, a config file, clean shutdown, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelvc.registry import Registry
from tests.services.ports import free_port

from .conftest import Digits
from .helpers import Caller, get_json, wait_for

MODELVC = [sys.executable, "-m", "modelvc.cli.main"]


grpc_ports: dict[str, int] = {}  # REST URL -> the gRPC port of the same process


@pytest.fixture
def run_serve(serve_reg: Registry, tmp_path: Path) -> Iterator[object]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        log = (tmp_path / f"serve{len(procs)}.log").open("wb")
        grpc_ports[f"http://127.0.0.1:{port}"] = grpc_port = free_port()
        p = subprocess.Popen([*MODELVC, "--registry", str(serve_reg._layout.root), "serve",
                              "--port", str(port), "--grpc-port", str(grpc_port),
                              "--log-level", "warning", *args],
                             stdout=log, stderr=log, env=os.environ | {"TMPDIR": str(tmp_path)})
        procs.append(p)
        return p, f"http://127.0.0.1:{port}"

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def _ready(url: str) -> bool:
    try:
        return bool(get_json(f"{url}/v2/health/ready")["ready"])
    except OSError:
        return False


def test_serve_command_serves_and_stops_cleanly(run_serve: object, digits: Digits,
                                                tmp_path: Path) -> None:
    proc, url = run_serve("digits@production", "--poll-interval", "0.05")  # type: ignore[operator]
    wait_for(lambda: _ready(url), "modelvc serve to be ready", limit=60)
    code, doc, _ = Caller(url).infer(digits.x[:5])
    assert code == 200 and doc["model_version"] == "1"
    # the same process answers OIP over gRPC
    import tritonclient.grpc as tg

    client = tg.InferenceServerClient(f"127.0.0.1:{grpc_ports[url]}")
    assert client.is_server_ready() and client.is_model_ready("digits")
    inp = tg.InferInput("X", [5, 64], "FP32")
    inp.set_data_from_numpy(digits.x[:5])
    result = client.infer("digits", [inp])
    assert result.get_response().model_version == "1"
    assert result.as_numpy("label").tolist() == doc["outputs"][0]["data"]
    client.close()
    assert len(list(tmp_path.glob("modelvc-serve-*"))) == 1  # its checkouts
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    assert list(tmp_path.glob("modelvc-serve-*")) == []  # removed on shutdown


def test_a_killed_gateways_folder_goes_when_the_next_one_starts(
        run_serve: object, tmp_path: Path) -> None:
    first, url = run_serve("digits@production")  # type: ignore[operator]
    wait_for(lambda: _ready(url), "modelvc serve to be ready", limit=60)
    (left,) = tmp_path.glob("modelvc-serve-*")
    first.kill()  # kill -9: no shutdown ran
    first.wait()
    assert (left / "kept").exists()
    _, url = run_serve("digits@production")  # type: ignore[operator]
    wait_for(lambda: _ready(url), "the second modelvc serve to be ready", limit=60)
    (mine,) = tmp_path.glob("modelvc-serve-*")
    assert mine != left and not left.exists()
    _, url = run_serve("digits@production")  # type: ignore[operator]
    wait_for(lambda: _ready(url), "the third modelvc serve to be ready", limit=60)
    assert mine.exists() and len(list(tmp_path.glob("modelvc-serve-*"))) == 2  # both live


def test_serve_config_file(run_serve: object, digits: Digits, tmp_path: Path) -> None:
    cfg = tmp_path / "serve.toml"
    cfg.write_text('poll_interval = 0.05\n[[models]]\nname = "digits-prod"\nmodel = "digits"\n'
                   'ref = "production"\n[models.canary]\nref = "canary"\npercent = 25\n')
    proc, url = run_serve("--config", str(cfg))  # type: ignore[operator]
    wait_for(lambda: _ready(url), "modelvc serve to be ready", limit=60)
    code, doc, _ = Caller(url).infer(digits.x[:5], model="digits-prod")
    assert code == 200 and doc["model_name"] == "digits-prod"
    st = get_json(f"{url}/modelvc/status")["digits-prod"]
    assert st["canary_percent"] == 25 and st["canary"]["error"] is not None  # no such channel
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0


@pytest.mark.parametrize(("args", "message"), [
    ((), "nothing to serve"),
    (("--config", "{bad}"), "unknown keys ['colour']"),
])
def test_serve_bad_input_exits_2(serve_reg: Registry, tmp_path: Path, args: tuple[str, ...],
                                 message: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('colour = "blue"\n')
    argv = [a.replace("{bad}", str(bad)) for a in args]
    out = subprocess.run([*MODELVC, "--registry", str(serve_reg._layout.root), "serve", *argv],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert message in out.stderr


def test_serve_takes_an_actor_or_a_token_not_both(serve_reg: Registry) -> None:
    out = subprocess.run([*MODELVC, "--registry", str(serve_reg._layout.root), "serve",
                          "digits@production", "--canary", "canary", "--actor", "bob"],
                         capture_output=True, text=True, check=False,
                         env=os.environ | {"MODELVC_SERVE_TOKEN": "mvc_secret"})
    assert out.returncode == 2
    assert "give the gateway an actor or a token, not both" in out.stderr
    assert "mvc_secret" not in out.stderr + out.stdout


def test_serve_json_start_line(run_serve: object, tmp_path: Path) -> None:
    proc, url = run_serve("digits@production", "--json")  # type: ignore[operator]
    wait_for(lambda: _ready(url), "modelvc serve to be ready", limit=60)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0
    first = json.loads((tmp_path / "serve0.log").read_text().splitlines()[0])
    assert first["grpc"].startswith("grpc://127.0.0.1:")
    del first["grpc"]
    assert first == {"serving": ["digits@production"], "url": f"{url}/v2", "fleet": False}


def test_serve_warns_of_a_model_or_channel_that_does_not_exist(
        run_serve: object, tmp_path: Path) -> None:
    """A typo in what to serve (a model or channel not in the registry) started a
    gateway that never got ready, without a word; it still starts (the channel may be
    created later) but says so at once."""
    run_serve("digitz@production", "digits@prodution")  # type: ignore[operator]
    log = tmp_path / "serve0.log"  # (the fixture stops the gateway)
    wait_for(lambda: log.read_text().count("warning: ") >= 2, "the start-up warnings",
             limit=60)
    text = log.read_text()
    assert "no model 'digitz' in this registry yet" in text, text
    assert "digits has no channel, branch or tag 'prodution' yet" in text, text
    assert "did you mean 'digits'?" in text and "did you mean 'production'?" in text, text
    assert "Traceback" not in text, text


def test_serve_canary_flags_judge_without_feedback(
        run_serve: object, serve_reg: Registry, digits: Digits, tmp_path: Path) -> None:
    """`serve --canary` waited for 30 feedback labels that never came: --no-accuracy
    (and the other policy options) on the command line let it decide on what it sees."""
    from .conftest import commit_onnx

    better = commit_onnx(serve_reg, tmp_path, digits.better, "v2")
    serve_reg.promote("digits@v1", "canary", reason="start equal", create=True)
    serve_reg.promote(f"digits@v{better}", "canary", reason="candidate")
    _, url = run_serve("digits@production", "--canary", "canary",  # type: ignore[operator]
                       "--canary-percent", "50", "--no-accuracy", "--no-latency",
                       "--min-samples", "20")
    wait_for(lambda: _ready(url), "the gateway", limit=60)
    caller = Caller(url)
    sent = 0
    while serve_reg.resolve("digits@production").number != better:
        assert sent < 5000, get_json(f"{url}/modelvc/status")
        caller.headers["X-Request-Key"] = f"user-{sent}"
        assert caller.infer(digits.x[sent % 100:sent % 100 + 1])[0] == 200
        sent += 1
    caller.close()
    assert "canary policy" in serve_reg.history("digits", "production")[-1].reason


@pytest.mark.parametrize("args,want", [
    (["--canary-percent", "20"], "need --canary CHANNEL"),
    (["--no-accuracy"], "need --canary CHANNEL"),
    (["--canary", "production"], "--canary production is the channel digits@production"),
])
def test_serve_refuses_canary_flags_that_would_be_ignored(
        serve_reg: Registry, args: list[str], want: str) -> None:
    p = subprocess.run([*MODELVC, "--registry", str(serve_reg._layout.root), "serve",
                        "digits@production", *args], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and want in p.stderr, p.stderr


def test_a_port_in_use_is_a_clear_conflict_before_anything_loads(
        serve_reg: Registry) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = subprocess.run([*MODELVC, "--registry", str(serve_reg._layout.root), "serve",
                            "digits@production", "--port", str(port), "--grpc-port", "0"],
                           capture_output=True, text=True, timeout=120)
    assert p.returncode == 5, p.stderr  # a conflict, not "not found" (3)
    assert f"the REST port 127.0.0.1:{port} is not free" in p.stderr, p.stderr
    assert "--port" in p.stderr and "Traceback" not in p.stderr, p.stderr
