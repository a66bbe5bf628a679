"""Recipes are plug-ins: one installed by another distribution (a real dist-info on
sys.path, found through importlib.metadata) derives and checks like the shipped ones."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from modelvc.derive import check, derive, load, names
from modelvc.derive import tensors as st
from modelvc.errors import NotFound, UsageError
from modelvc.registry import Registry

PLUGIN = '''
from pathlib import Path
import numpy as np
from modelvc.derive import Applied
from modelvc.derive.files import map_tensors
from modelvc.derive.tensors import Tensor


class Scale:
    name = "scale"
    version = "7"
    deterministic = True
    tolerance = 0.0
    tools = ("numpy",)

    def params(self, raw):
        return {"factor": float(raw.get("factor", "2"))}

    def apply(self, files_dir, params, out_dir):
        f = params["factor"]
        map_tensors(files_dir, out_dir, lambda n, t: Tensor(t.code, (t.array * f).astype(
            t.array.dtype)) if t.code == "F32" else t)
        return Applied(stats={"factor": f})


class NotARecipe:
    name = "broken"
'''


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[None]:
    site = tmp_path / "site"
    (site / "team_recipes").mkdir(parents=True)
    (site / "team_recipes" / "__init__.py").write_text(PLUGIN)
    info = site / "team_recipes-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: team-recipes\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""\
        [modelvc.recipes]
        scale = team_recipes:Scale
        broken = team_recipes:NotARecipe
        """))
    sys.path.insert(0, str(site))
    yield
    sys.path.remove(str(site))
    sys.modules.pop("team_recipes", None)


def test_a_plugin_recipe_derives_and_checks(plugin: None, reg: Registry, tmp_path: Path
                                            ) -> None:
    assert {"cast", "prune", "scale"} <= set(names())
    d = tmp_path / "m"
    d.mkdir()
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    st.write(d / "model.safetensors", {"w": st.Tensor("F32", w)})
    reg.commit(d, model="m")
    out = derive(reg, "m@v1", "scale", to="x3", params={"factor": "3"})
    rec = out.version.lineage["derived_from"]
    assert (rec["recipe"], rec["version_of_recipe"], rec["params"]) == ("scale", "7",
                                                                        {"factor": 3.0})
    assert np.array_equal(np.asarray(reg.load("m@x3")["w"]), w * 3)
    assert check(reg, "m@x3").ok


def test_unknown_and_malformed_recipes(plugin: None) -> None:
    with pytest.raises(NotFound, match="no recipe named 'nope'") as e:
        load("nope")
    assert e.value.hint and "cast" in e.value.hint and "modelvc.recipes" in e.value.hint
    with pytest.raises(UsageError, match="is not a recipe"):
        load("broken")
