"""Upload possession across two server processes on one PostgreSQL and one SeaweedFS
bucket: the bytes reach one process, the commit (or the pushed version) the other."""

from __future__ import annotations

from pathlib import Path

from tests.scaleout.conftest import Cluster
from tests.server.test_two_servers import check_split_possession


def test_uploads_to_one_node_commit_through_the_other(cluster: Cluster, tmp_path: Path) -> None:
    check_split_possession([s.url for s in cluster.servers], cluster.folders[0], tmp_path)
