"""The hostile-input campaign (issue 12): every test here is marked `campaign`.

`scripts/test` runs a short version (CAMPAIGN_EXAMPLES=50 mutations per parser); a
full run: `CAMPAIGN_EXAMPLES=5000 pytest -m campaign tests/campaign` (docs/security.md)."""

from __future__ import annotations

import os

import pytest

EXAMPLES = int(os.environ.get("CAMPAIGN_EXAMPLES", "50"))
# kill -9 campaign (tests/faults/test_kill9.py): kills of commits per round, the others
# in proportion (the full run: 30, 202 kills)
KILLS = int(os.environ.get("CAMPAIGN_KILLS", "3"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/campaign/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.campaign)
