"""A real package: one version, declared dependencies that the hashed lock satisfies, a setup
that fails loudly. (`pip install .[all]` into an empty venv + `gazelib --help` is the CI step
scripts/check_package.sh: it takes minutes, docs/install.md.)"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import gazelib

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _lock() -> dict[str, tuple[str, list[str]]]:
    """requirements.lock: canonical name -> (version, hashes)."""
    text = (REPO / "requirements.lock").read_text()
    out = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = re.match(r"([A-Za-z0-9._-]+)==(\S+)", block)
        if m:
            out[canonicalize_name(m.group(1))] = (m.group(2), re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return out


def _requirements() -> list[Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["dependencies"]]
    for extra in PYPROJECT["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra]
    return [r for r in reqs if canonicalize_name(r.name) != canonicalize_name(PYPROJECT["name"])]


def test_the_version_lives_in_one_place():
    assert "version" not in PYPROJECT and PYPROJECT["dynamic"] == ["version"]
    dyn = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["dynamic"]
    assert dyn["version"] == {"attr": "gazelib.__version__"}
    Version(gazelib.__version__)  # a valid version
    top = re.search(r"^## (?!Unreleased$)(\S+)", (REPO / "CHANGELOG.md").read_text(), re.M).group(1)   # after any Unreleased
    assert top == gazelib.__version__, "a release bumps gazelib.__version__ and adds its CHANGELOG.md section"
    # nothing else spells the version out
    hits = [p for p in (REPO / "gazelib").rglob("*.py")
            if p.name != "__init__.py" and re.search(r"""["']%s["']""" % re.escape(gazelib.__version__), p.read_text())]
    assert not hits


def test_the_distribution_name_is_not_the_taken_one():
    assert canonicalize_name(PYPROJECT["name"]) != "gazelib"
    assert PYPROJECT["scripts"] == {"gazelib": "gazelib.cli:main"}


def test_the_lock_pins_and_hashes_every_package_and_satisfies_pyproject():
    lock = _lock()
    assert len(lock) > 100
    assert all(hashes for _, hashes in lock.values()), [n for n, (_, h) in lock.items() if not h]
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in lock, f"{req} (pyproject.toml) is not in requirements.lock: bash scripts/lock.sh"
        assert req.specifier.contains(Version(lock[name][0]), prereleases=True), (str(req), lock[name][0])
    # torch stays the CPU build on this machine's disk; OpenCV is the headless build only
    assert lock["torch"][0] == "2.13.0+cpu"
    assert "opencv-python" not in lock and "opencv-python-headless" in lock


def test_the_lock_matches_this_environment():
    """What the tests run on is what the lock says (setup.sh installed it)."""
    from importlib.metadata import PackageNotFoundError, version

    wrong = {}
    for name, (want, _) in _lock().items():
        try:
            have = version(name)
        except PackageNotFoundError:
            have = None
        if have is None or Version(have) != Version(want):
            wrong[name] = (want, have)
    assert not wrong, f"environment differs from requirements.lock (want, have): {wrong}"


def test_every_import_of_the_package_is_declared():
    """Third-party modules gazelib imports come from a declared dependency (or are optional
    backends it names in its error messages)."""
    from importlib.metadata import packages_distributions

    from gazelib.core.closure import PACKAGE, ROOT, third_party_imports

    declared = {canonicalize_name(r.name) for r in _requirements()}
    dists = packages_distributions()
    optional = {"mediapipe", "whisperx"}  # optional backends, never installed by the lock (docs/pipeline.md)
    missing = {}
    for top in sorted(third_party_imports(sorted((ROOT / PACKAGE).rglob("*.py"))) - optional):
        names = {canonicalize_name(d) for d in dists.get(top, [])}
        if not names & declared:
            missing[top] = sorted(names)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("with_uv", [True, False], ids=["uv-then-pip", "pip-only"])
def test_setup_stops_with_pips_error_when_an_install_fails(tmp_path, with_uv):
    """A lock entry whose hash does not match: setup exits non-zero with pip's own message and
    writes no 'installed' stamp (it used to end every pip call in `|| true`). With uv (its pinned
    installer.lock present) uv refuses the file first; without it pip alone runs."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "setup.sh").write_text((REPO / "scripts" / "setup.sh").read_text())
    if with_uv:
        (tmp_path / "scripts" / "installer.lock").write_text((REPO / "scripts" / "installer.lock").read_text())
    (tmp_path / "pyproject.toml").write_text((REPO / "pyproject.toml").read_text())
    (tmp_path / "requirements.lock").write_text("six==1.17.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    venv = tmp_path / "venv"
    env = {**os.environ, "GAZELIB_VENV": str(venv), "PYTHON": sys.executable}
    r = subprocess.run(["bash", "scripts/setup.sh"], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0
    assert "installing requirements.lock with pip (uv not available or it failed)" in r.stderr
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in r.stderr
    assert "setup: 'pip install --require-hashes --no-deps -r requirements.lock' failed" in r.stderr
    assert not (venv / ".gazelib-installed").exists()


def test_a_bundle_records_the_version_and_predict_compares_it(tmp_path, base_params, caplog):
    import json
    import logging

    from gazelib.model.bundle import load_bundle, write_bundle

    stats = {"grid": {"mean": [0.0, 0.0]}}
    write_bundle(out_dir=tmp_path, params=base_params, stats=stats, variant="v", modalities=["visual"])
    doc = json.loads((tmp_path / "bundle.json").read_text())
    assert doc["gazelib_version"] == gazelib.__version__
    caplog.set_level(logging.WARNING, logger="gazelib.model.bundle")
    load_bundle(tmp_path)
    assert not caplog.records
    major, minor = Version(gazelib.__version__).release[:2]
    for recorded, says in ((f"{major}.{minor + 1}.0", "newer than this"), ("0.0.1", "features may differ"),
                           (None, "no readable gazelib version")):
        caplog.clear()
        (tmp_path / "bundle.json").write_text(json.dumps({**doc, "gazelib_version": recorded}))
        load_bundle(tmp_path)
        assert says in caplog.text, recorded
