"""Regenerate the README's results and attribution blocks from reports/metrics/compare.json and
reports/metrics/attribution.json (run after the main job); --check only compares."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from gazelib.eval import attribution
from gazelib.eval.compare import readme_results, replace_block
from gazelib.core.layout import ATTRIBUTION, COMPARE
from gazelib.core.params import load_params


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    cmp = json.loads((root / COMPARE).read_text())
    att = json.loads((root / ATTRIBUTION).read_text())
    readme = root / "README.md"
    new = replace_block(readme.read_text(), readme_results(cmp, baseline=load_params(root / "params.yaml")["compare"]
                                                             ["baseline"]))
    new = replace_block(new, attribution.readme_attribution(att), attribution.README_START, attribution.README_END)
    if "--check" in sys.argv:
        sys.exit(0 if new == readme.read_text() else "README results differ from reports/metrics/*.json")
    readme.write_text(new)


if __name__ == "__main__":
    main()
