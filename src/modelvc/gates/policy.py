"""The policy file: roles, trust, and per model and channel the gates and promoters.

Parsed from the YAML node tree (yaml.compose) rather than plain data, so every error
names the file and line it comes from. The digest is BLAKE3 over the canonical JSON of
what the file means: re-indenting or editing comments does not invalidate gate runs,
changing a threshold does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3
import yaml

from ..canonical import canonical_json
from ..errors import InvalidName, InvalidPolicy, PathNotFound
from ..names import check_name, check_ref_name
from .expr import BASELINE_WORDS, Expr, ExprError, parse

if TYPE_CHECKING:
    from ..meta.store import MetaStore
    from ..records import GateRun

GATE_KINDS = ("metric", "regression", "eval", "budget", "format", "signature", "derived")
SOURCE_WORDS = ("source", "derived_from")  # in a derived gate: the source's value
OUTPUT_LIMITS = ("max_abs_error", "rms_error", "relative_error")
BUDGET_LIMITS = ("size_mb", "params", "load_ms", "latency_p50_ms", "latency_p95_ms")
FORMAT_FLAGS = {"allow_pickle": False, "require_clean_git": False, "require_data": False,
                "check_files": True}


@dataclass(frozen=True)
class Gate:
    kind: str
    line: int  # where it is written in the policy file (for messages)
    exprs: tuple[Expr, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChannelRule:
    model: str  # the model name or "*"
    channel: str
    promoters: frozenset[str] | None  # None: roles.promoter applies
    gates: tuple[Gate, ...]


@dataclass(frozen=True)
class Policy:
    digest: str
    body: str  # the file as written (comments kept), what `policy show` prints
    source: str
    admins: frozenset[str]
    promoters: frozenset[str] | None  # None (roles.promoter absent): anyone, gates still apply
    trust: dict[str, Any]
    rules: dict[str, dict[str, ChannelRule]]  # model or "*" -> channel -> rule

    def rule(self, model: str, channel: str) -> ChannelRule | None:
        """The model's own entry wins over "*"; a channel listed nowhere is unprotected."""
        for key in (model, "*"):
            if key in self.rules and channel in self.rules[key]:
                return self.rules[key][channel]
        return None

    def gates_digest(self, model: str, channel: str) -> str:
        """What a gate run of MODEL on CHANNEL depends on: the channel's gates and the
        trust section (signature gates read it). A run recorded with it keeps counting
        across policy edits that leave both alone (another model's gates, roles,
        promoters, comments)."""
        rule = self.rule(model, channel)
        gates = _rule_json(rule)["gates"] if rule is not None else None
        return blake3.blake3(canonical_json({"gates": gates, "trust": self.trust})).hexdigest()

    def counts(self, run: GateRun, model: str) -> bool:
        """Whether RUN (of a version of MODEL) counts under this policy: it ran the gates
        this policy has for its channel. Runs recorded before runs kept their gates'
        digest count only under the very policy they ran under."""
        mine = run.summary.get("gates_digest")
        if isinstance(mine, str):
            return mine == self.gates_digest(model, run.channel)
        return run.policy_digest == self.digest

    def channels(self, model: str) -> list[str]:
        return sorted(set(self.rules.get(model, {})) | set(self.rules.get("*", {})))

    def is_admin(self, actor: str) -> bool:
        return actor in self.admins

    def may_move(self, actor: str, rule: ChannelRule) -> bool:
        """Promoters of the channel (or roles.promoter; anyone when neither is written),
        and admins."""
        allowed = rule.promoters if rule.promoters is not None else self.promoters
        return allowed is None or actor in allowed or self.is_admin(actor)


def load_policy(path: str | Path) -> Policy:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PathNotFound(f"policy file {str(p)!r} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidPolicy(f"cannot read policy file {str(p)!r}: {exc}") from exc
    return parse_policy(text, str(p))


def applied_policy(meta: MetaStore) -> Policy | None:
    """The policy applied to the registry, or None (then everything is allowed)."""
    current = meta.current_policy()
    if current is None:
        return None
    return parse_policy(current[1], f"applied policy {current[0][:12]}")


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    return _Reader(text, source).policy()


class _Reader:
    def __init__(self, text: str, source: str) -> None:
        self.text, self.source = text, source
        # Errors in one gate, channel or model: the reader goes on with the next one, so
        # that one check names every mistake (one line each); raised together at the end.
        self.errors: list[InvalidPolicy] = []
        try:  # the reader checks every character up front (control characters fail)
            self.loader = yaml.SafeLoader(text)
        except yaml.YAMLError as exc:
            raise InvalidPolicy(f"{source}: not valid YAML: {exc}",
                                hint="a policy is plain YAML text (docs/policy.md)") from exc

    def fail(self, node: yaml.Node | None, msg: str) -> InvalidPolicy:
        line = f":{node.start_mark.line + 1}" if node is not None else ""
        return InvalidPolicy(f"{self.source}{line}: {msg}",
                             hint="see docs/policy.md for the policy format")

    def value(self, node: yaml.Node) -> Any:
        return self.loader.construct_object(node, deep=True)

    def mapping(self, node: yaml.Node, what: str, keys: tuple[str, ...] | None = None
                ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for k, v in node.value:
            key = self.value(k)
            if not isinstance(key, str):
                raise self.fail(k, f"keys of {what} must be text, not {key!r}")
            if key in out:
                raise self.fail(k, f"{key!r} appears twice in {what}")
            if keys is not None and key not in keys:
                raise self.fail(k, f"unknown key {key!r} in {what} (expected one of "
                                   f"{', '.join(keys)})")
            out[key] = (k, v)
        return out

    def names(self, node: yaml.Node, what: str) -> frozenset[str]:
        val = self.value(node)
        if val is None:
            return frozenset()
        if isinstance(val, str):
            val = [val]
        if not isinstance(val, list) or not all(isinstance(x, str) and x for x in val):
            raise self.fail(node, f"{what} must be a list of names")
        return frozenset(val)

    def policy(self) -> Policy:
        try:
            root = self.loader.get_single_node()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise InvalidPolicy(f"{self.source}{line}: not valid YAML: {problem}") from exc
        if root is None:
            raise InvalidPolicy(f"{self.source}: the policy file is empty",
                                hint="see docs/policy.md for the policy format")
        top = self.mapping(root, "the policy", ("version", "roles", "trust", "models"))
        if "version" not in top:
            raise self.fail(root, "missing 'version: 1'")
        if self.value(top["version"][1]) != 1:
            raise self.fail(top["version"][1], "unsupported policy version (this modelvc "
                                               "reads version 1)")
        admins: frozenset[str] = frozenset()
        promoters: frozenset[str] | None = None
        if "roles" in top:
            roles = self.mapping(top["roles"][1], "roles", ("admin", "promoter"))
            if "admin" in roles:
                admins = self.names(roles["admin"][1], "roles.admin")
            if "promoter" in roles:
                promoters = self.names(roles["promoter"][1], "roles.promoter")
        trust = self.trust(top["trust"][1]) if "trust" in top else {"keys": [], "require": False}
        rules: dict[str, dict[str, ChannelRule]] = {}
        if "models" in top:
            models_node = top["models"][1]
            if self.value(models_node) is not None:
                for name, (knode, vnode) in self.mapping(models_node, "models").items():
                    try:
                        rules[name] = self.model(name, knode, vnode, trust)
                    except InvalidPolicy as exc:
                        self.errors.append(exc)
        if self.errors:
            raise InvalidPolicy("\n".join(e.message for e in self.errors),
                                hint=self.errors[0].hint)
        meaning = {"admins": sorted(admins),
                   "promoters": sorted(promoters) if promoters is not None else None,
                   "trust": trust,
                   "rules": {m: {c: _rule_json(r) for c, r in chs.items()}
                             for m, chs in rules.items()}}
        digest = blake3.blake3(canonical_json(meaning)).hexdigest()
        return Policy(digest, self.text, self.source, admins, promoters, trust, rules)

    def trust(self, node: yaml.Node) -> dict[str, Any]:
        t = self.mapping(node, "trust", ("keys", "require"))
        keys = sorted(self.names(t["keys"][1], "trust.keys")) if "keys" in t else []
        require = self.value(t["require"][1]) if "require" in t else False
        if not isinstance(require, bool):
            raise self.fail(t["require"][1], "trust.require must be true or false")
        return {"keys": keys, "require": require}

    def model(self, name: str, knode: yaml.Node, vnode: yaml.Node, trust: dict[str, Any]
              ) -> dict[str, ChannelRule]:
        if name != "*":
            try:
                check_name(name, "model name")
            except InvalidName as exc:
                raise self.fail(knode, exc.message) from exc
        entry = self.mapping(vnode, f"models.{name}", ("channels",))
        if "channels" not in entry:
            raise self.fail(vnode, f"models.{name} needs 'channels:'")
        out: dict[str, ChannelRule] = {}
        for ch, (ck, cv) in self.mapping(entry["channels"][1], f"models.{name}.channels").items():
            try:
                out[ch] = self.channel(name, ch, ck, cv, trust)
            except InvalidPolicy as exc:
                self.errors.append(exc)
        return out

    def channel(self, name: str, ch: str, ck: yaml.Node, cv: yaml.Node,
                trust: dict[str, Any]) -> ChannelRule:
        try:
            check_ref_name(ch, "channel name")
        except InvalidName as exc:
            raise self.fail(ck, exc.message) from exc
        where = f"models.{name}.channels.{ch}"
        spec = self.mapping(cv, where, ("promoters", "gates")) if self.value(cv) else {}
        promoters = self.names(spec["promoters"][1], f"{where}.promoters") if (
            "promoters" in spec) else None
        gates: list[Gate] = []
        if "gates" in spec:
            gnode = spec["gates"][1]
            if not isinstance(gnode, yaml.SequenceNode):
                raise self.fail(gnode, f"{where}.gates must be a list")
            for g in gnode.value:
                try:
                    gates.append(self.gate(g, ch, trust))
                except InvalidPolicy as exc:
                    self.errors.append(exc)
        return ChannelRule(name, ch, promoters, tuple(gates))

    def gate(self, node: yaml.Node, channel: str, trust: dict[str, Any]) -> Gate:
        g = self.mapping(node, "a gate", GATE_KINDS)
        if len(g) != 1:
            raise self.fail(node, "each gate is one of: " + ", ".join(f"'{k}:'" for k in
                                                                     GATE_KINDS))
        kind, (_, body) = next(iter(g.items()))
        line = node.start_mark.line + 1
        if kind in ("metric", "regression"):
            exprs = self.exprs(body, kind, channel)
            return Gate(kind, line, exprs)
        if kind == "eval":
            return self.eval_gate(body, line, channel)
        if kind == "derived":
            return self.derived_gate(body, line, channel)
        if kind == "budget":
            return Gate(kind, line, options=self.budget(body))
        if kind == "format":
            f = self.mapping(body, "format", tuple(FORMAT_FLAGS)) if self.value(body) else {}
            opts = dict(FORMAT_FLAGS)
            for k, (_, v) in f.items():
                opts[k] = self.value(v)
                if not isinstance(opts[k], bool):
                    raise self.fail(v, f"format.{k} must be true or false")
            return Gate(kind, line, options=opts)
        s = self.mapping(body, "signature", ("keys",)) if self.value(body) else {}
        # No keys named here or in trust.keys: any key registered in the registry.
        keys = sorted(self.names(s["keys"][1], "signature.keys")) if "keys" in s else trust["keys"]
        return Gate(kind, line, options={"keys": keys})

    def exprs(self, node: yaml.Node, kind: str, channel: str) -> tuple[Expr, ...]:
        val = self.value(node)
        items = [val] if isinstance(val, str) else val
        if not isinstance(items, list) or not items or not all(isinstance(x, str) for x in items):
            raise self.fail(node, f"a {kind} gate is an expression or a list of expressions, "
                                  "e.g. \"accuracy >= 0.9\"")
        names = ((*BASELINE_WORDS, channel) if kind == "regression" else
                 SOURCE_WORDS if kind == "derived" else ())
        # Point errors at the list item itself when the gate is a list.
        item_nodes = node.value if isinstance(node, yaml.SequenceNode) else [node]
        out = []
        for text, inode in zip(items, item_nodes, strict=True):
            try:
                e = parse(text, baseline_names=names)
            except ExprError as exc:
                raise self.fail(inode, str(exc)) from exc
            if kind == "regression" and not e.uses_baseline:
                raise self.fail(inode, f"{text!r}: a regression compares with the channel's "
                                      f"current version, e.g. 'accuracy >= production - 0.01'")
            out.append(e)
        return tuple(out)

    def eval_gate(self, node: yaml.Node, line: int, channel: str) -> Gate:
        e = self.mapping(node, "eval", ("command", "entry_point", "data", "metrics",
                                        "timeout"))
        if ("command" in e) == ("entry_point" in e):
            raise self.fail(node, "an eval gate has either 'command:' or 'entry_point:'")
        opts: dict[str, Any] = {}
        for key in ("command", "entry_point", "data"):
            if key in e:
                val = self.value(e[key][1])
                if not isinstance(val, str) or not val.strip():
                    raise self.fail(e[key][1], f"eval.{key} must be non-empty text")
                opts[key] = val
        if "entry_point" in opts and ":" not in opts["entry_point"]:
            raise self.fail(e["entry_point"][1], "eval.entry_point is 'package.module:function'")
        timeout = self.value(e["timeout"][1]) if "timeout" in e else 3600
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise self.fail(e["timeout"][1], "eval.timeout is a number of seconds")
        opts["timeout"] = float(timeout)
        exprs = self.exprs(e["metrics"][1], "metric", channel) if "metrics" in e else ()
        return Gate("eval", line, exprs, opts)

    def derived_gate(self, node: yaml.Node, line: int, channel: str) -> Gate:
        """Like an eval gate (command or entry point optional: it runs on the version and
        on its derived_from source), plus `outputs:` compared on sample inputs."""
        d = self.mapping(node, "derived", ("command", "entry_point", "data", "metrics",
                                           "timeout", "outputs"))
        if "command" in d and "entry_point" in d:
            raise self.fail(node, "a derived gate has 'command:' or 'entry_point:', not both")
        if not ({"metrics", "outputs"} & set(d)):
            raise self.fail(node, "a derived gate needs 'metrics:' (e.g. \"accuracy >= source "
                                  "- 0.005\") or 'outputs:' (e.g. {samples: x.npz, "
                                  "max_abs_error: 0.001})")
        opts: dict[str, Any] = {}
        if {"command", "entry_point", "data", "timeout"} & set(d):
            evalopts = {k: v for k, v in d.items() if k not in ("outputs", "metrics")}
            if "command" not in d and "entry_point" not in d:
                raise self.fail(node, "derived.data and derived.timeout go with 'command:' "
                                      "or 'entry_point:'")
            opts = self.eval_gate(yaml.MappingNode(node.tag, [evalopts[k] for k in evalopts],
                                                   node.start_mark, node.end_mark),
                                  line, channel).options
        exprs = self.exprs(d["metrics"][1], "derived", channel) if "metrics" in d else ()
        if "outputs" in d:
            onode = d["outputs"][1]
            o = self.mapping(onode, "derived.outputs", ("samples", "file", "entry_point",
                                                        "names", *OUTPUT_LIMITS))
            outs: dict[str, Any] = {}
            for key, (_, v) in o.items():
                val = self.value(v)
                if key in OUTPUT_LIMITS:
                    if not isinstance(val, int | float) or isinstance(val, bool) or val < 0:
                        raise self.fail(v, f"derived.outputs.{key} must be a number >= 0")
                    val = float(val)
                elif key == "names":
                    val = sorted(self.names(v, "derived.outputs.names"))
                elif not isinstance(val, str) or not val.strip():
                    raise self.fail(v, f"derived.outputs.{key} must be non-empty text")
                elif key == "entry_point" and ":" not in val:
                    raise self.fail(v, "derived.outputs.entry_point is "
                                       "'package.module:function'")
                outs[key] = val
            if "samples" not in outs:
                raise self.fail(onode, "derived.outputs needs 'samples:' (an .npz of inputs)")
            if not any(k in outs for k in OUTPUT_LIMITS):
                raise self.fail(onode, "derived.outputs needs at least one of "
                                       + ", ".join(OUTPUT_LIMITS))
            opts["outputs"] = outs
        return Gate("derived", line, exprs, opts)

    def budget(self, node: yaml.Node) -> dict[str, Any]:
        b = self.mapping(node, "budget", (*BUDGET_LIMITS, "samples", "file"))
        opts: dict[str, Any] = {"samples": 20}
        for key, (_, v) in b.items():
            val = self.value(v)
            if key == "file":
                if not isinstance(val, str):
                    raise self.fail(v, "budget.file is the ONNX file's path in the version")
            elif not isinstance(val, int | float) or isinstance(val, bool) or val <= 0:
                raise self.fail(v, f"budget.{key} must be a positive number")
            elif key == "samples" and not isinstance(val, int):
                raise self.fail(v, "budget.samples is a whole number")
            opts[key] = val
        if not any(k in opts for k in BUDGET_LIMITS):
            raise self.fail(node, "a budget needs at least one of " + ", ".join(BUDGET_LIMITS))
        return opts


def _rule_json(r: ChannelRule) -> dict[str, Any]:
    return {"promoters": sorted(r.promoters) if r.promoters is not None else None,
            "gates": [{"kind": g.kind, "exprs": [e.text for e in g.exprs],
                       "options": g.options} for g in r.gates]}
