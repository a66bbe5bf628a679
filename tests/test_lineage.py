"""The package versions a commit records (read from dist-info folder names, for speed)
are the ones importlib.metadata reports."""

from __future__ import annotations

from importlib import metadata

from modelvc import lineage


def test_package_versions_match_importlib_metadata() -> None:
    want = []
    for name in lineage.PACKAGES:
        try:
            want.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    assert ("numpy", metadata.version("numpy")) in want
    assert lineage._package_versions() == tuple(want)


def test_platform_tag_reads_as_platform_does() -> None:
    # The recorded environment keeps platform.platform(terse=True)'s string, built
    # without its `uname -p` subprocess (on Linux with glibc, where the suite runs).
    import platform

    assert lineage.platform_tag() == platform.platform(terse=True)
    assert lineage.environment()["platform"] == platform.platform(terse=True)
