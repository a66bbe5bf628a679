"""The package's front door: lazy public names, a fast CLI start."""

from __future__ import annotations

import subprocess
import sys

import modelvc


def test_public_names() -> None:
    assert modelvc.__all__ == ["Registry", "Version", "__version__", "errors"]
    from modelvc.registry import Registry

    assert modelvc.Registry is Registry


def test_cli_help_does_not_import_heavy_modules() -> None:
    code = ("import sys; from modelvc.cli.main import cli, main; "
            "heavy = {'numpy', 'sqlalchemy', 'alembic', 'torch', 'modelvc.registry'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_opening_a_registry_does_not_import_alembic_or_torch(tmp_path: object) -> None:
    code = ("import sys; from modelvc import Registry; import tempfile; "
            "d = tempfile.mkdtemp(); Registry.init(d).close(); "
            "[sys.modules.pop(m) for m in list(sys.modules) if m.startswith('alembic')]; "
            "r = Registry.open(d); print('alembic' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False False"


def test_metadata_commands_do_not_load_numpy_or_the_codecs(tmp_path: object) -> None:
    """log / refs / history read only the database: numpy and the codecs stay unloaded
    (they are most of a command's start-up after SQLAlchemy)."""
    code = ("import sys, tempfile; from modelvc import Registry; "
            "d = tempfile.mkdtemp(); Registry.init(d).close(); r = Registry.open(d); "
            "r.models(); r.refs('m') if r.models() else None; r.close(); "
            "heavy = {'numpy', 'modelvc.storage', 'modelvc.codec', 'torch'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
