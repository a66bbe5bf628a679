"""The MLflow API on a server whose metadata is on PostgreSQL and objects on S3 (the
sidecar then lives in the same PostgreSQL database): the same calls as on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mlflow import test_registry_calls as calls
from tests.mlflow.conftest import Server

pytestmark = [pytest.mark.postgres, pytest.mark.s3]


def test_log_model_load_by_alias_versions_and_gates(scaled_user: Server,
                                                    tmp_path: Path) -> None:
    calls.test_log_model_then_load_by_alias_predicts_the_same(scaled_user,
                                                          infer_requirements=False)
    calls.test_model_versions_stages_tags_and_artifacts(scaled_user, tmp_path)
    calls.test_a_gate_refuses_an_alias_until_it_passes(scaled_user)
    calls.test_a_reader_token_reads_but_is_refused_writes(scaled_user)
    import sqlalchemy as sa

    from modelvc import layout

    with scaled_user.open() as reg:  # the sidecar is a table of the registry's database
        url = layout.find(Path(reg.location)).meta_url
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        assert "mlflow_docs" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
