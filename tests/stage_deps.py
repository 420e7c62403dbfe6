"""The gazelib files a stage script runs: the closure of its imports (module- and function-level)."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != "gazelib":
        return None
    base = REPO.joinpath(*parts)
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.exists():
            return cand
    return None


def _imports(path: Path) -> set[str]:
    """Modules ``path`` imports, plus ``"gazelib.x.y"`` string constants: the names a registry
    hands to ``importlib.import_module`` (importer formats, CLI verbs)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("gazelib."):
            names.add(node.value.split(":")[0])
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)  # `from gazelib import io`
    return names


def closure(script: Path) -> set[str]:
    """Repo-relative paths of every gazelib file ``script`` imports, directly or not."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        f = todo.pop()
        for name in _imports(f):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                mf = _module_file(".".join(parts[:i]))
                if mf is not None and mf not in seen:
                    seen.add(mf)
                    todo.append(mf)
    return {str(p.relative_to(REPO)) for p in seen}
