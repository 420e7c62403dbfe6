"""Regenerate the README's results block from metrics/compare.json (run after the main job)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from gazelib.compare import readme_results, replace_block
from gazelib.params import load_params


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    cmp = json.loads((root / "metrics" / "compare.json").read_text())
    block = readme_results(cmp, baseline=load_params(root / "params.yaml")["compare"]["baseline"])
    readme = root / "README.md"
    new = replace_block(readme.read_text(), block)
    if "--check" in sys.argv:
        sys.exit(0 if new == readme.read_text() else "README results differ from metrics/compare.json")
    readme.write_text(new)


if __name__ == "__main__":
    main()
