"""The server's /ui on the scale-out deployment (PostgreSQL metadata, SeaweedFS S3
objects): the same pages and the same gated actions as on the embedded default."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from modelvc.registry import Registry
from tests.services.postgres import drop_database, fresh_database, postgres_url
from tests.services.s3 import start_seaweed
from tests.services.server import ServerProcess

from .conftest import Console, login, roll_back
from .seed import Seeded, seed
from .test_crawl import _crawl

pytestmark = [pytest.mark.postgres, pytest.mark.s3]


@pytest.fixture(scope="module")
def scaleout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Seeded, ServerProcess]]:
    import os

    if os.environ.get("MODELVC_SKIP_POSTGRES") == "1":
        pytest.skip("MODELVC_SKIP_POSTGRES=1")
    tmp: Path = tmp_path_factory.mktemp("pgs3")
    url = fresh_database(postgres_url())
    s3 = start_seaweed(tmp / "s3")
    objects = (f"s3://{s3.bucket}/ui?endpoint={s3.endpoint}&access_key={s3.access_key}"
               f"&secret_key={s3.secret_key}&region=us-east-1")
    try:
        seeded = seed(tmp, meta_url=url, objects_url=objects)
        server = ServerProcess(seeded.path, tmp / "server.log").start()
        yield seeded, server
        server.stop()
    finally:
        s3.stop()
        drop_database(url)


def test_every_page_and_a_gated_rollback_on_postgres_and_s3(
        page: Page, scaleout: tuple[Seeded, ServerProcess], console: Console) -> None:
    seeded, server = scaleout
    login(page, server, seeded.tokens["admin"])
    seen = _crawl(page, server.url + "/ui/", console)
    assert server.url + "/ui/m/bert/v/4" in seen
    page.goto(server.url + "/ui/m/bert/v/2")
    expect(page.locator("section[aria-labelledby=sig-h] [role=status]")).to_contain_text(
        "Verified")  # the signature bundle read back from S3
    expect(page.locator("section[aria-labelledby=files] table")).to_contain_text(
        "bert.safetensors")

    login(page, server, seeded.tokens["maint"])
    roll_back(page, server, "bert", "production", "back to v1 on pg")
    expect(page.locator("section[aria-labelledby=timeline] tbody tr").first).to_contain_text(
        "back to v1 on pg")
    with Registry.open(seeded.path) as reg:
        assert reg.resolve("bert@production").number == 1
