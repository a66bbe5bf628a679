"""The gateway's configuration: CPU lists for the loading threads, and what is refused."""

from __future__ import annotations

import os

import pytest

from modelvc.errors import UsageError
from modelvc.serving.config import load_config, parse_cpus

MODELS = [{"model": "digits"}]


@pytest.mark.parametrize(("text", "cpus"), [
    ("1", (1,)), ("1,3", (1, 3)), ("2-3", (2, 3)), ("3, 0-1", (0, 1, 3))])
def test_parse_cpus_reads_taskset_lists(text: str, cpus: tuple[int, ...]) -> None:
    assert parse_cpus(text) == cpus


def test_load_cpus_from_a_flag_or_a_file_list() -> None:
    last = (os.cpu_count() or 1) - 1
    assert load_config(None, {"models": MODELS}).load_cpus is None
    assert load_config(None, {"models": MODELS, "load_cpus": str(last)}).load_cpus == (last,)
    assert load_config(None, {"models": MODELS, "load_cpus": [last, last]}).load_cpus == \
        (last,)


@pytest.mark.parametrize(("value", "extra", "message"), [
    ("one", {}, "'one' is not a CPU list; give e.g. 1"),
    ([], {}, "load_cpus must be a list of CPU numbers"),
    (["1"], {}, "load_cpus must be a list of CPU numbers"),
    ([4096], {}, "CPUs [4096] do not exist here"),
    ([0], {"threads": 2}, "load_cpus needs threads = 1"),
])
def test_bad_load_cpus_are_refused_with_what_to_give(
        value: object, extra: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=None) as err:
        load_config(None, {"models": MODELS, "load_cpus": value, **extra})
    assert message in err.value.message


def test_checkout_helper_defaults_to_the_load_cpus() -> None:
    # None: on with load_cpus (the gateway decides; test_checkouts.py has each case)
    assert load_config(None, {"models": MODELS}).checkout_helper is None
    assert load_config(None, {"models": MODELS, "checkout_helper": False}
                       ).checkout_helper is False
    assert load_config(None, {"models": MODELS, "checkout_helper": True}).checkout_helper
