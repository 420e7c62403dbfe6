"""dvc.yaml names exactly the code each stage runs, at the grain of the package's folders.

A stage's code deps are its script and, for every gazelib file in the import closure of that
script, the package folder holding it (``gazelib/eval``) or the file itself when it sits at the
package's top level (``gazelib/__init__.py``); nothing else. DVC then reruns a stage whenever a
file it runs changes (the folder covers it), and the per-video caches, which hash the exact
files (gazelib.core.closure), recompute only what that file feeds. docs/architecture.md draws it.
"""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest
import yaml

from gazelib.core.closure import closure, closure_folders

REPO = Path(__file__).resolve().parents[1]

# the default graph, and the import stage kept outside it (a template: import/dvc.yaml.example)
IMPORT_TEMPLATE = REPO / "import" / "dvc.yaml.example"
DVC = {**yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"],
       **yaml.safe_load(IMPORT_TEMPLATE.read_text())["stages"]}


def _stage(name: str) -> dict:
    return DVC[name]["do"] if "do" in DVC[name] else DVC[name]


def _code_deps(stage: dict) -> set[str]:
    return {str(d) for d in stage["deps"] if str(d).startswith("gazelib/")}


@pytest.mark.parametrize("name", sorted(DVC))
def test_stage_deps_are_exactly_the_folders_of_the_code_it_runs(name):
    stage = _stage(name)
    script = Path(stage["cmd"].split()[1])
    assert str(script) in [str(d) for d in stage["deps"]], f"{name}: its script {script} is not a dep"
    want = closure_folders(closure(REPO / script))
    have = _code_deps(stage)
    assert have == want, f"{name}: missing {sorted(want - have)}, not run {sorted(have - want)}"
    assert len(have) <= 10, f"{name}: {len(have)} code deps; the package's cut should keep a stage's deps to a few folders"


def test_closure_folders_cover_every_file():
    files = {"gazelib/__init__.py", "gazelib/metrics.py", "gazelib/eval/compare.py", "gazelib/gaze/importers/diem.py"}
    assert closure_folders(files) == {"gazelib/__init__.py", "gazelib/metrics.py", "gazelib/eval", "gazelib/gaze"}


def test_every_stage_script_has_a_stage():
    scripts = {Path(_stage(n)["cmd"].split()[1]).name for n in DVC}
    assert scripts == {p.name for p in (REPO / "stages").glob("*.py")}


# ---------------------------------------------------------------- what an edit makes stale
def _stale_after_editing(path: str) -> set[str]:
    """Stages ``dvc repro`` would rerun after an edit of ``path`` (a repo-relative file): those
    whose deps name it or a folder above it, and every stage downstream of them (DVC's own
    graph of this dvc.yaml, foreach expanded)."""
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        graph = repo.index.graph                     # edges point from a stage to the stages it reads
        direct = {s for s in repo.index.stages
                  if any(path == d.def_path or path.startswith(d.def_path.rstrip("/") + "/") for d in s.deps)}
        stale = set(direct)
        for s in direct:
            stale |= nx.ancestors(graph, s)
        return {s.addressing for s in stale}


SCORING = {"score_floors", "evaluate", "compare", "report", "horizons", "attribution"}
UPSTREAM = {"demo", "ingest", "extract_audio", "extract_text", "extract_visual", "align",
            "bias_inputs", "validate", "train", "aoi", "floors"}


def _base(name: str) -> str:
    return name.split("@")[0]


def test_editing_a_metric_reruns_training_and_scoring_not_features():
    """The metrics' math (gazelib/metrics.py) scores the test rows and, through train.floor_guard, picks
    the epoch a track model keeps: an edit reruns both, never the features."""
    stale = _stale_after_editing("gazelib/metrics.py")
    assert {_base(s) for s in stale} <= SCORING | {"train"}, sorted(stale)
    assert {"train@baseline", "evaluate@multimodal", "compare", "report"} <= stale
    assert not {_base(s) for s in stale} & (UPSTREAM - {"train"})


def test_editing_the_evaluation_protocol_reruns_scoring_only():
    stale = _stale_after_editing("gazelib/eval/evaluate.py")
    assert {_base(s) for s in stale} <= SCORING, sorted(stale)
    assert {"evaluate@multimodal", "compare", "report"} <= stale
    assert not {_base(s) for s in stale} & UPSTREAM


def test_editing_the_report_reruns_the_report_only():
    assert _stale_after_editing("gazelib/report/html.py") == {"report"}


def test_editing_a_feature_extractor_reruns_its_stage_and_downstream():
    stale = _stale_after_editing("gazelib/features/visual.py")
    assert "extract_visual" in stale and "train@multimodal" in stale
    assert not {"demo", "ingest"} & stale


def test_editing_training_does_not_rerun_features():
    stale = _stale_after_editing("gazelib/model/train.py")
    assert {_base(s) for s in stale} >= {"train", "evaluate", "report"}
    assert not {"extract_audio", "extract_text", "extract_visual", "align", "ingest", "aoi", "bias_inputs", "validate"} & stale


def test_the_import_stage_is_outside_the_default_graph(tmp_path):
    """Nothing reads import.out by default, so `dvc repro` must not import the fixture recording and
    `dvc status` must not list a stage that never ran. Copied into place (as docs/importing.md says),
    the template is a stage of its own file, upstream of ingest once data.corpus points at import.out."""
    import shutil

    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        assert not [s for s in repo.index.stages if s.name == "import_gaze"]
    # the template in place, in a copy of the pipeline's files
    for f in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(REPO / f, tmp_path / f)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "import").mkdir()
    shutil.copy(IMPORT_TEMPLATE, tmp_path / "import" / "dvc.yaml")
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["data"]["corpus"] = params["import"]["out"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with Repo(str(tmp_path), uninitialized=True) as repo:
        imp = [s for s in repo.index.stages if s.name == "import_gaze"]
        assert len(imp) == 1 and Path(imp[0].dvcfile.path) == tmp_path / "import" / "dvc.yaml"
        ingest = next(s for s in repo.index.stages if s.name == "ingest")
        assert imp[0] in nx.descendants(repo.index.graph, ingest)   # ingest reads what it writes
