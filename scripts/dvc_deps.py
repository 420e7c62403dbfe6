"""Rewrite the code deps of every stage in dvc.yaml and import/dvc.yaml.example from the import closure of
its script: the package folders (``gazelib/eval``) and top-level files (``gazelib/__init__.py``) that
hold the files it runs (gazelib.core.closure.closure_folders). tests/test_dvc_deps.py checks the
result. Usage: ``python scripts/dvc_deps.py`` from the repository root."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gazelib.core.closure import closure, closure_folders  # noqa: E402


def _order(dep: str) -> tuple[bool, str]:
    return dep.endswith(".py") and dep.count("/") == 1, dep   # folders first, then top-level files


def rewrite(dvc_file: Path) -> bool:
    """Replace the ``gazelib/`` deps following each stage script's own dep line; True if changed."""
    text = dvc_file.read_text()
    scripts = {}
    for stage in yaml.safe_load(text)["stages"].values():
        cmd = stage.get("do", stage)["cmd"]
        script = cmd.split()[1]
        scripts[script] = sorted(closure_folders(closure(REPO / script)), key=_order)
    lines, out, i = text.splitlines(keepends=True), [], 0
    while i < len(lines):
        m = re.match(r"^(\s+)- (stages/\w+\.py)\s*$", lines[i])
        out.append(lines[i])
        i += 1
        if m and m.group(2) in scripts:
            while i < len(lines) and re.match(rf"^{m.group(1)}- gazelib/", lines[i]):
                i += 1
            out += [f"{m.group(1)}- {d}\n" for d in scripts[m.group(2)]]
    new = "".join(out)
    if new != text:
        dvc_file.write_text(new)
    return new != text


if __name__ == "__main__":
    for f in (REPO / "dvc.yaml", REPO / "import" / "dvc.yaml.example"):
        print(f"{f.relative_to(REPO)}: {'rewritten' if rewrite(f) else 'unchanged'}")
