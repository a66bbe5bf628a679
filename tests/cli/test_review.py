"""What a user review of the CLI found: output that fits 80 columns, consistent empty
listings, wording, names of versions in messages, JSON that says what it means."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_cli import js


def test_init_json_meta_is_a_valid_sqlite_url(tmp_path: Path) -> None:
    doc = js(["init", "sub"], tmp_path)
    db = (tmp_path / "sub" / ".modelvc" / "meta.db").resolve()
    assert doc["meta"] == f"sqlite:///{db}"  # four slashes: an absolute path
    assert doc["meta"].startswith("sqlite:////")


def test_redact_keeps_urls_without_secrets() -> None:
    from modelvc.scaleout import redact

    assert redact("sqlite:////srv/reg/meta.db") == "sqlite:////srv/reg/meta.db"
    assert redact("postgresql+psycopg://u:pw@db/m") == "postgresql+psycopg://u:***@db/m"
    assert redact("s3://b/p?secret_key=x&region=eu") == "s3://b/p?secret_key=***&region=eu"
