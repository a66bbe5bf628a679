"""Bad input through the real CLI: the right exit code and a message that says what
is wrong and what to do, as text and (with --json) as a JSON object. The CLI runs in
process (`fk.cli_here`), but for the tests that check the real command's exit codes
and output as a process (`fk.cli`)."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelvc.registry import Registry

from . import faultkit as fk


@dataclass(frozen=True)
class Env:
    root: Path
    registry: Path
    good: Path  # a valid model file
    v1: str  # version ids on m@main
    v2: str


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    root = tmp_path_factory.mktemp("bad-input")
    reg = root / "reg"
    Registry.init(reg).close()
    good = root / "good.safetensors"
    base = fk.tensors(1)
    with Registry.open(reg) as r:
        fk.write_model(good, base)
        v1 = r.commit(good, model="m").id
        fk.write_model(good, fk.tensors(2, base))
        v2 = r.commit(good, model="m").id
    return Env(root, reg, good, v1, v2)


def _safetensors(path: Path, header: object, *, length: int | None = None,
                 data: bytes = b"") -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


F32x4 = {"dtype": "F32", "shape": [4]}
BAD_FILES: dict[str, tuple[object, int | None, bytes, str]] = {
    # name: (header, forced header length, data section, what the message must name)
    "header-length-missing": (None, None, b"", "8-byte header length"),
    "header-larger-than-file": ({}, 1000, b"", "larger than the file"),
    "header-oversized": ({}, 200_000_000, b"", "limit"),
    "header-not-json": (b"{not json", None, b"", "JSON"),
    "header-not-object": (b"[1, 2]", None, b"", "expected an object"),
    "offsets-overlap": ({"a": {**F32x4, "data_offsets": [0, 16]},
                         "b": {**F32x4, "data_offsets": [8, 24]}}, None, bytes(24), "overlap"),
    "offsets-out-of-range": ({"a": {**F32x4, "data_offsets": [0, 16]}}, None, bytes(8),
                             "out of range"),
    "offsets-reversed": ({"a": {**F32x4, "data_offsets": [16, 0]}}, None, bytes(16), "a"),
    "offsets-size-mismatch": ({"a": {**F32x4, "data_offsets": [0, 8]}}, None, bytes(8), "a"),
    # What the safetensors library refuses too (it could not be loaded).
    "dtype-unknown": ({"a": {"dtype": "F99", "shape": [4], "data_offsets": [0, 16]}}, None,
                      bytes(16), "unknown dtype 'F99'"),
    "trailing-bytes": ({"a": {**F32x4, "data_offsets": [0, 16]}}, None, bytes(20),
                       "4 trailing bytes"),
    "hole-between-tensors": ({"a": {**F32x4, "data_offsets": [0, 16]},
                              "b": {**F32x4, "data_offsets": [20, 36]}}, None, bytes(36),
                             "belong to no tensor"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_not_really_safetensors(env: Env, case: str) -> None:
    header, length, data, named = BAD_FILES[case]
    path = env.root / f"{case}.safetensors"
    if header is None:
        path.write_bytes(b"\x01\x02\x03\x04")
    else:
        _safetensors(path, header, length=length, data=data)
    done = fk.cli_here(env.registry, "commit", str(path), "--model", "m")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "not a valid safetensors file" in done.stderr and named in done.stderr, done.stderr
    assert str(path) in done.stderr
    assert "hint: re-save it" in done.stderr
    assert f"mv {path.name} {path.name}.raw" in done.stderr  # how to keep it as bytes
    assert "Traceback" not in done.stderr
    _nothing_recorded(env)


def test_a_refused_file_is_kept_as_opaque_bytes_under_another_extension(env: Env) -> None:
    """The hint's way out works: the same bytes, renamed, are stored exactly."""
    header, _, data, _ = BAD_FILES["trailing-bytes"]
    path = _safetensors(env.root / "odd.safetensors.raw", header, data=data)
    done = fk.cli_here(env.registry, "commit", str(path), "--model", "odd")
    assert done.returncode == 0, done.stderr
    with Registry.open(env.registry) as reg:
        reg.checkout("odd@main", env.root / "odd-out")
        assert (env.root / "odd-out" / path.name).read_bytes() == path.read_bytes()


def _nothing_recorded(env: Env) -> None:
    with Registry.open(env.registry) as reg:
        assert [v.id for v in reg.versions("m")] == [env.v2, env.v1]
        assert reg.resolve("m@main").id == env.v2


NAME_RULE = "use 1-128 letters, digits"


@pytest.mark.parametrize("name", ["a/b", "a\\b", "..", "a..b", "a\x01b", "tab\there", "",
                                  "a@b", " lead", "-dash", "x" * 129])
def test_bad_model_name(env: Env, name: str) -> None:
    done = fk.cli_here(env.registry, "commit", str(env.good), "--model", name)
    assert done.returncode == 2, (name, done.stdout, done.stderr)
    assert "invalid model name" in done.stderr and NAME_RULE in done.stderr
    assert "\x01" not in done.stderr  # control characters are shown escaped
    _nothing_recorded(env)


@pytest.mark.parametrize(("flag", "name"), [("--branch", "a/b"), ("--branch", "v3"),
                                            ("--branch", "x\ny"), ("--tag", "../up"),
                                            ("--branch", "HEAD"), ("--tag", "deadbeef")])
def test_bad_ref_names(env: Env, flag: str, name: str) -> None:
    done = fk.cli_here(env.registry, "commit", str(env.good), "--model", "m", flag, name)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "invalid" in done.stderr and ("name" in done.stderr), done.stderr
    _nothing_recorded(env)


@pytest.mark.parametrize("ref", ["m@v1@x", "@v1", "m@", "", "m@a/b", "m@a\x07"])
def test_malformed_refs(env: Env, ref: str) -> None:
    done = fk.cli_here(env.registry, "show", ref)
    assert done.returncode == 2, (ref, done.stdout, done.stderr)
    assert "invalid ref" in done.stderr or "empty ref" in done.stderr, done.stderr
    assert "\x07" not in done.stderr


@pytest.mark.parametrize(("ref", "says"), [
    ("m@nope", "modelvc refs m"), ("m@v99", "modelvc log m"), ("zz", "modelvc models"),
    ("zz@v1", "modelvc models"), ("m@abcdef12", "modelvc log m")])
def test_unknown_refs(env: Env, ref: str, says: str) -> None:
    for verb in (["show", ref], ["checkout", ref, str(env.root / "never")]):
        done = fk.cli_here(env.registry, *verb)
        assert done.returncode == 3, (verb, done.stdout, done.stderr)
        assert "hint:" in done.stderr and says in done.stderr, done.stderr
    assert not (env.root / "never").exists()


def test_missing_path(env: Env) -> None:
    missing = env.root / "no-such-model.safetensors"
    done = fk.cli_here(env.registry, "commit", str(missing), "--model", "m")
    assert done.returncode == 3, done.stderr
    assert str(missing) in done.stderr and "does not exist" in done.stderr
    assert "hint:" in done.stderr
    empty = env.root / "empty-folder"
    empty.mkdir()
    done = fk.cli_here(env.registry, "commit", str(empty), "--model", "m")
    assert done.returncode == 2, done.stderr
    assert "no files" in done.stderr
    _nothing_recorded(env)


def test_ambiguous_id_prefix(env: Env) -> None:
    """A short branch name that is also a prefix of a version id is refused at creation
    (exit 2); one made before that rule (here: below the registry's check) is ambiguous
    (exit 4)."""
    prefix = env.v1[:4]
    made = fk.cli_here(env.registry, "branch", "create", "m", prefix, "--at", "m@v2")
    assert made.returncode == 2 and "version id" in made.stderr, made.stderr
    with Registry.open_local(env.registry) as reg:
        from modelvc.ingest.refs import move_ref

        move_ref(reg._meta, "m", prefix, "branch", expected=None,
                 new=reg.resolve("m@v2").id, actor="old", action="create", create=True)
        try:
            done = fk.cli_here(env.registry, "show", f"m@{prefix}")
            assert done.returncode == 4, (done.stdout, done.stderr)
            assert "both a branch and a version id prefix" in done.stderr
            # A longer prefix is not ambiguous.
            longer = fk.cli_here(env.registry, "show", f"m@{env.v1[:12]}", "--json")
            assert longer.returncode == 0, longer.stderr
            assert json.loads(longer.stdout)["version"]["id"] == env.v1
        finally:
            reg.delete_ref("m", prefix)


def test_parent_not_at_branch_head(env: Env) -> None:
    done = fk.cli_here(env.registry, "commit", str(env.good), "--model", "m", "--parent", "m@v1")
    assert done.returncode == 5, (done.stdout, done.stderr)
    assert "not at your parent" in done.stderr and "hint:" in done.stderr
    _nothing_recorded(env)


def test_unknown_registry(env: Env) -> None:
    """As a real process: its exit code and its stdout/stderr as a shell sees them."""
    nowhere = env.root / "no-registry-here"
    done = fk.cli(nowhere, "show", "m")
    assert done.returncode == 3, done.stderr
    assert "no modelvc registry" in done.stderr and "modelvc init" in done.stderr
    assert "Traceback" not in done.stderr
    js = fk.cli(nowhere, "log", "m", "--json")
    assert js.returncode == 3
    assert json.loads(js.stdout)["error"] == "RegistryNotFound"


@pytest.mark.parametrize(("argv", "code", "error"), [
    (["show", "m@nope"], 3, "RefNotFound"),
    (["show", "m@v1@x"], 2, "InvalidRef"),
    (["commit", "{missing}", "--model", "m"], 3, "PathNotFound"),
    (["commit", "{good}", "--model", "a/b"], 2, "InvalidName"),
    (["commit", "{good}", "--model", "m", "--parent", "m@v1"], 5, "RefMoved"),
    (["commit", "{bad}", "--model", "m"], 2, "InvalidModelFile"),
    (["checkout", "m@v1", "{good}"], 5, "AlreadyExists"),
])
def test_json_errors(env: Env, argv: list[str], code: int, error: str) -> None:
    bad = _safetensors(env.root / "json-bad.safetensors", {}, length=999)
    subs = {"missing": str(env.root / "missing"), "good": str(env.good), "bad": str(bad)}
    done = fk.cli_here(env.registry, *[a.format(**subs) for a in argv], "--json")
    assert done.returncode == code, (done.stdout, done.stderr)
    err = json.loads(done.stdout)
    assert err["error"] == error
    assert isinstance(err["message"], str) and err["message"]
    assert "hint" in err


@pytest.mark.parametrize("where", ["process", "here"])
def test_json_usage_errors(env: Env, where: str) -> None:
    cli = fk.cli if where == "process" else fk.cli_here
    for argv in (["commit", "--json"], ["no-such-command", "--json"]):
        done = cli(env.registry, *argv)
        assert done.returncode == 2
        err = json.loads(done.stdout)
        assert err["error"] and err["message"]


def test_double_at_says_what_to_do(env: Env) -> None:
    done = fk.cli_here(env.registry, "show", "m@v1@x")
    assert done.returncode == 2
    assert "NAME@vN" in done.stderr, done.stderr


def test_control_character_shown_once_escaped(env: Env) -> None:
    done = fk.cli_here(env.registry, "commit", str(env.good), "--model", "a\x01b")
    assert done.returncode == 2
    assert "'a\\x01b'" in done.stderr, done.stderr


# ---- issue 11: each bad input gets a clear error, a hint that is true, and no traceback.

def _refused(done: object, code: int, *says: str) -> str:
    import subprocess

    assert isinstance(done, subprocess.CompletedProcess)
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    for s in says:
        assert s in done.stderr, (s, done.stderr)
    return str(done.stderr)


@pytest.mark.parametrize("number", ["99999999999999999999999999", str(2**63), str(2**31)])
def test_huge_version_number_is_not_found(env: Env, number: str) -> None:
    _refused(fk.cli_here(env.registry, "log", f"m@v{number}"), 3, f"m has no v{number}",
             "modelvc log m")
    js = fk.cli_here(env.registry, "show", f"m@v{number}", "--json")
    assert js.returncode == 3 and json.loads(js.stdout)["error"] == "RefNotFound"


def test_huge_version_number_over_http_is_404(env: Env, tmp_path: Path) -> None:
    import httpx

    from tests.services.server import ServerProcess, grant_token

    token = grant_token(env.registry, "reader-11", "reader", "*")
    server = ServerProcess(env.registry, tmp_path / "server.log").start()
    try:
        r = httpx.get(f"{server.url}/api/v1/log", params={"ref": f"m@v{'9' * 26}"},
                      headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 404, r.text
        assert "m has no v" in r.text
    finally:
        server.stop()


def test_init_where_nothing_can_be_created(env: Env) -> None:
    err = _refused(fk.cli_here(None, "init", "/proc/modelvc-cannot"), 7,
                   "cannot create a registry at /proc/modelvc-cannot/.modelvc", "hint:")
    assert "FileNotFoundError" not in err
    _refused(fk.cli_here(None, "init", str(env.good)), 7, "cannot create a registry")


def test_registry_that_is_a_file(env: Env) -> None:
    err = _refused(fk.cli_here(env.good, "log", "m"), 3, "it is a file",
                   "pass the folder that holds .modelvc")
    assert "modelvc init" not in err


def test_load_a_file_the_version_lacks(env: Env) -> None:
    from modelvc.errors import PathNotFound

    with Registry.open(env.registry) as reg:
        assert len(reg.load("m", file="good.safetensors")) == 12
        with pytest.raises(PathNotFound, match=r"no file 'nofile\.safetensors'") as info:
            reg.load("m", file="nofile.safetensors")
        assert info.value.hint and "good.safetensors" in info.value.hint


def test_parent_from_another_model(env: Env) -> None:
    with Registry.open(env.registry) as reg:
        reg.commit(env.good, model="other")
    _refused(fk.cli_here(env.registry, "commit", str(env.good), "--model", "m", "-b", "side",
                    "--parent", "other@v1"), 2, "parent other@v1 is a version of other, not of m",
             "--fork")
    with Registry.open(env.registry) as reg:
        assert "side" not in {r.name for r in reg.refs("m")}
    _nothing_recorded(env)
    # A fork asked for: the log names the other model's version as such (not `v1 <- v1`).
    forked = fk.cli_here(env.registry, "commit", str(env.good), "--model", "forked", "--parent",
                    "other@v1", "--fork")
    assert forked.returncode == 0, forked.stderr
    lines = fk.cli_here(env.registry, "log", "forked", "--graph").stdout.splitlines()
    assert [ln.split()[:2] for ln in lines] == [["*", "v1"], ["*", "other@v1"]], lines


def test_history_of_a_channel_that_does_not_exist(env: Env) -> None:
    with Registry.open(env.registry) as reg:
        reg.promote("m@v1", "staging", create=True)
    for argv in (["channel", "history", "m", "nochan"], ["rollback", "m", "nochan"],
                 ["channel", "history", "m", "nochan", "--at", "2026-01-01T00:00:00"]):
        err = _refused(fk.cli_here(env.registry, *argv), 3, "m has no channel 'nochan'",
                       "its channels: staging", "modelvc channel list m")
        assert "list refs of" not in err


@pytest.mark.parametrize("grace", ["-5", "nan"])
def test_gc_negative_grace(env: Env, grace: str) -> None:
    _refused(fk.cli_here(env.registry, "gc", "--grace", grace), 2, "invalid grace period",
             "seconds >= 0")


def test_existing_tag_hint_says_tags_are_immutable(env: Env) -> None:
    with Registry.open(env.registry) as reg:
        reg.tag("m@v1", "t-exists")
    err = _refused(fk.cli_here(env.registry, "tag", "m@v2", "t-exists"), 5, "already exists",
                   "tags are immutable")
    assert "move it" not in err


def test_deleted_version_hint_is_true(env: Env) -> None:
    with Registry.open(env.registry) as reg:
        v = reg.commit(env.good, model="del-me")
        reg.commit(env.root / "good.safetensors", model="del-me", message="second")
        reg.delete(f"del-me@{v.id}", reason="bad data")
    err = _refused(fk.cli_here(env.registry, "show", "del-me@v1"), 3, "was deleted",
                   "modelvc audit --model del-me --action delete")
    assert "stays in `modelvc log`" not in err
    audit = fk.cli_here(env.registry, "audit", "--model", "del-me", "--action", "delete")
    assert "bad data" in audit.stdout


def test_checkout_folder_version_onto_a_file(env: Env) -> None:
    folder = env.root / "folder-model"
    folder.mkdir()
    fk.write_model(folder / "model.safetensors", fk.tensors(3))
    (folder / "config.json").write_text("{}")
    with Registry.open(env.registry) as reg:
        reg.commit(folder, model="fold")
    target = env.root / "a-file"
    target.write_text("keep me")
    err = _refused(fk.cli_here(env.registry, "checkout", "fold", str(target)), 5,
                   "is a file, and this version is a folder of 2 files", "into a folder")
    assert "File exists" not in err
    assert target.read_text() == "keep me"


def test_unauthenticated_hint_names_no_missing_option(env: Env, tmp_path: Path) -> None:
    from tests.services.server import ServerProcess

    server = ServerProcess(env.registry, tmp_path / "server.log").start()
    try:
        from tests.services.clirun import run

        done = run(["--registry", server.url, "log", "m"], env={"MODELVC_TOKEN": None})
        err = _refused(done, 8, "needs an API token", "set MODELVC_TOKEN")
        assert "pass --token" not in err
    finally:
        server.stop()


def test_promote_to_a_misspelt_channel_creates_nothing(env: Env) -> None:
    with Registry.open(env.registry) as reg:
        reg.promote("m@v1", "production", create=True)
    err = _refused(fk.cli_here(env.registry, "promote", "m@v2", "--to", "prodution"), 3,
                   "m has no channel 'prodution'", "did you mean production?")
    assert "its channels:" in err and "--create" not in err  # a near miss is no new channel
    with Registry.open(env.registry) as reg:
        assert "prodution" not in {r.name for r in reg.refs("m")}
        assert reg.resolve("m@production").id == env.v1
    made = fk.cli_here(env.registry, "promote", "m@v2", "--to", "nightly", "--create", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["name"] == "nightly"
    moved = fk.cli_here(env.registry, "promote", "m@v2", "--to", "production")
    assert moved.returncode == 0, moved.stderr
    _nothing_recorded(env)


def test_promote_to_a_channel_the_policy_declares_needs_no_create(env: Env) -> None:
    policy = env.root / "policy.yaml"
    policy.write_text("version: 1\nmodels:\n  m:\n    channels:\n      qa: {}\n")
    applied = fk.cli_here(env.registry, "policy", "apply", str(policy))
    assert applied.returncode == 0, applied.stderr
    try:
        done = fk.cli_here(env.registry, "promote", "m@v1", "--to", "qa")
        assert done.returncode == 0, done.stderr
        _refused(fk.cli_here(env.registry, "promote", "m@v1", "--to", "qa2"), 3, "no channel 'qa2'")
    finally:
        empty = env.root / "empty-policy.yaml"
        empty.write_text("version: 1\n")
        assert fk.cli_here(env.registry, "policy", "apply", str(empty)).returncode == 0
