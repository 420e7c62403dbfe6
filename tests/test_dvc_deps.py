"""dvc.yaml names exactly the code each stage runs: its script and the closure of its gazelib imports."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gazelib.closure import closure

REPO = Path(__file__).resolve().parents[1]

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _code_deps(stage: dict) -> set[str]:
    out = set()
    for d in stage["deps"]:
        d = str(d)
        if not d.startswith("gazelib/"):
            continue
        p = REPO / d
        out.update(str(f.relative_to(REPO)) for f in sorted(p.rglob("*.py"))) if p.is_dir() else out.add(d)
    return out


@pytest.mark.parametrize("name", sorted(DVC))
def test_stage_deps_are_exactly_the_code_it_runs(name):
    stage = DVC[name]["do"] if "do" in DVC[name] else DVC[name]
    script = Path(stage["cmd"].split()[1])
    assert str(script) in [str(d) for d in stage["deps"]], f"{name}: its script {script} is not a dep"
    want = closure(REPO / script)
    have = _code_deps(stage)
    assert have == want, f"{name}: missing {sorted(want - have)}, not run {sorted(have - want)}"


def test_every_stage_script_has_a_stage():
    scripts = {Path((s["do"] if "do" in s else s)["cmd"].split()[1]).name for s in DVC.values()}
    assert scripts == {p.name for p in (REPO / "stages").glob("*.py")}
