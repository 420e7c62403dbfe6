"""Intervals over test videos and seeds in compare: point values, paired deltas and interval widths."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from gazelib.eval.contrasts import compare_rows
from gazelib.eval.compare import render_report
from gazelib.metrics import MEAN_KEYS

N_PER_VIDEO = 50


def _samples(row, seeds, video_effects, rng, noise=0.02, seed_sd=0.0):
    frames = []
    for s in seeds:
        seed_shift = rng.normal(0, seed_sd) if seed_sd else 0.0
        for vid, eff in video_effects.items():
            df = pd.DataFrame({"row": row, "seed": s, "video_id": vid, "viewer": 0,
                               "step": np.arange(N_PER_VIDEO), "inout": (rng.uniform(size=N_PER_VIDEO) > 0.2).astype(np.int8)})
            df["p_in"] = np.clip(df["inout"] * 0.6 + rng.uniform(0, 0.4, N_PER_VIDEO), 0, 1)
            for k in MEAN_KEYS:
                df[k] = 0.5 + eff + seed_shift + rng.normal(0, noise, N_PER_VIDEO)
            frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _run(samples, rows, refs):
    return compare_rows(samples=samples, rows=rows, references=refs, primary=("auc_vat", "ig"))


def test_point_values_are_pooled_means_over_seeds_and_ap_as_sklearn():
    rng = np.random.default_rng(0)
    vids = {f"v{i}": rng.normal(0, 0.05) for i in range(5)}
    s = pd.concat([_samples("base", [0, 1], vids, rng), _samples("persistence", [-1], vids, rng)])
    out = _run(s, {"base": "variant", "persistence": "floor"}, ["persistence"])
    b = s[s["row"] == "base"]
    assert out["rows"]["base"]["metrics"]["auc_vat"] == pytest.approx(b.groupby("seed")["auc_vat"].mean().mean())
    ap = np.mean([average_precision_score(d["inout"], d["p_in"]) for _, d in b.groupby("seed")])
    assert out["rows"]["base"]["metrics"]["inout_ap"] == pytest.approx(ap, abs=1e-12)
    out_ap = np.mean([average_precision_score(1 - d["inout"], 1 - d["p_in"]) for _, d in b.groupby("seed")])
    assert out["rows"]["base"]["metrics"]["out_ap"] == pytest.approx(out_ap, abs=1e-12)
    assert out["intervals"]["n_test_videos"] == 5 and out["intervals"]["seeds"]["base"] == [0, 1]


def test_a_constant_shift_is_a_zero_width_paired_interval():
    rng = np.random.default_rng(1)
    vids = {f"v{i}": rng.normal(0, 0.1) for i in range(6)}
    base = _samples("base", [0], vids, rng)
    var = base.copy()
    var["row"] = "var"
    var[list(MEAN_KEYS)] += 0.03
    out = _run(pd.concat([base, var]), {"base": "variant", "var": "variant"}, ["base"])
    d = out["deltas"]["var"]["vs_base"]["nss"]
    assert d["delta"] == pytest.approx(0.03) and d["ci95"] == pytest.approx([0.03, 0.03])
    assert d["excludes_zero"]
    assert out["deltas"]["var"]["vs_base"]["l2_vat"]["better"] is False  # lower is better for l2


def test_interval_width_matches_the_spread_of_video_effects():
    """Delta per video ~ N(0.1, 0.05): the 95% interval of the mean over 40 videos is about
    0.1 +- 1.96 * 0.05 / sqrt(40)."""
    rng = np.random.default_rng(2)
    n = 40
    base_eff = {f"v{i}": rng.normal(0, 0.2) for i in range(n)}
    gain = {v: rng.normal(0.1, 0.05) for v in base_eff}
    base = _samples("base", [0], base_eff, rng, noise=0.0)
    var = _samples("var", [0], {v: base_eff[v] + gain[v] for v in base_eff}, rng, noise=0.0)
    out = _run(pd.concat([base, var]), {"base": "variant", "var": "variant"}, ["base"])
    d = out["deltas"]["var"]["vs_base"]["cc"]
    sd = np.std(list(gain.values()))
    half = (d["ci95"][1] - d["ci95"][0]) / 2
    assert half == pytest.approx(1.96 * sd / np.sqrt(n), rel=0.3)
    assert d["excludes_zero"]


def test_opposite_effects_on_two_videos_give_an_interval_over_zero():
    rng = np.random.default_rng(3)
    base = _samples("base", [0], {"a": 0.0, "b": 0.0}, rng, noise=0.0)
    var = _samples("var", [0], {"a": 0.2, "b": -0.2}, rng, noise=0.0)
    d = _run(pd.concat([base, var]), {"base": "variant", "var": "variant"}, ["base"])["deltas"]["var"]["vs_base"]["sim"]
    assert d["ci95"][0] < 0 < d["ci95"][1] and not d["excludes_zero"]


def test_seed_variation_widens_the_interval():
    rng = np.random.default_rng(4)
    vids = {f"v{i}": 0.0 for i in range(10)}
    base = _samples("base", [0, 1, 2, 3], vids, rng)
    steady = _samples("steady", [0, 1, 2, 3], {v: 0.05 for v in vids}, rng)
    shaky = _samples("shaky", [0, 1, 2, 3], {v: 0.05 for v in vids}, rng, seed_sd=0.08)
    out = _run(pd.concat([base, steady, shaky]), {"base": "variant", "steady": "variant", "shaky": "variant"},
               ["base"])

    def width(r):
        lo, hi = out["deltas"][r]["vs_base"]["auc_vat"]["ci95"]
        return hi - lo

    assert width("shaky") > 3 * width("steady")


def test_missing_rows_are_named_and_report_renders():
    rng = np.random.default_rng(5)
    s = _samples("base", [0], {"a": 0.0, "b": 0.1}, rng)
    with pytest.raises(ValueError, match="persistence"):
        _run(s, {"base": "variant"}, ["persistence"])
    md = render_report(_run(s, {"base": "variant"}, []), "Protocol: test.")
    assert "| base | variant | 1 |" in md and "Protocol: test." in md
