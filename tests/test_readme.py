"""The README's results block is generated from the committed reports/metrics/compare.json."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gazelib.eval.compare import README_END, README_START, readme_results, replace_block

REPO = Path(__file__).resolve().parents[1]


def test_readme_results_match_committed_compare_json():
    cmp = json.loads((REPO / "reports/metrics/compare.json").read_text())
    baseline = yaml.safe_load((REPO / "params.yaml").read_text())["compare"]["baseline"]
    text = (REPO / "README.md").read_text()
    block = text.split(README_START, 1)[1].split(README_END, 1)[0].strip()
    assert block == readme_results(cmp, baseline=baseline).strip()
    assert f"{cmp['intervals']['n_test_videos']} test videos" in block


def test_readme_states_the_answer_of_the_committed_attribution_json():
    from gazelib.eval import attribution

    att = json.loads((REPO / "reports/metrics/attribution.json").read_text())
    text = (REPO / "README.md").read_text()
    block = text.split(attribution.README_START, 1)[1].split(attribution.README_END, 1)[0].strip()
    assert block == attribution.readme_attribution(att).strip() == att["answer"]
    assert f"{att['n_test_videos']} test videos" in block and att["full"] in block


def test_replace_block_needs_markers():
    assert replace_block(f"a\n{README_START}\nold\n{README_END}\nb", "new") == f"a\n{README_START}\nnew\n{README_END}\nb"
    with pytest.raises(ValueError, match="markers"):
        replace_block("no markers here", "x")
