"""The benchmark-protocol block and the infinite-observer ceiling through the real stages on the tiny
demo corpus (ingest, synthetic features, align, validate, train, floors, evaluate, compare, report):
eval JSON, compare.json and the HTML report hold them, and the numbers are recomputed here
independently (sklearn's ROC AUC, numpy's corrcoef) from the labels and the centre prior."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.tiny_pipeline import tiny_pipeline

# slow tier (scripts/test.sh runs it under GAZELIB_TEST_TIER=all): a tiny pipeline run with the benchmark stages
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_corpus):
    corpus, base = tiny_corpus
    root = tmp_path_factory.mktemp("bench_run")
    p, _ = tiny_pipeline(root=root, corpus=corpus, base=base, report={"clip_s": 1.0, "clip_width": 160})
    return root, p


def test_eval_json_has_the_benchmark_block_and_the_ceiling_once(run):
    root, p = run
    base = json.loads((root / "reports" / "metrics" / "eval" / "baseline.json").read_text())["benchmark"]
    other = json.loads((root / "reports" / "metrics" / "eval" / "content_only.json").read_text())["benchmark"]
    assert set(base["rows"]) == {"baseline", "centre_prior", "persistence"}
    assert "inter_observer" not in base["rows"]                       # leaks when averaged: the ceiling replaces it
    assert "frame width" in base["sigma_from"][0]                     # the demo has no screen geometry
    assert isinstance(base["ceiling"], dict) and isinstance(other["ceiling"], str)
    assert base["ceiling"]["benchmark"]["k"] == [1, 2]                # 4 viewers: halves of 2
    assert base["ceiling"]["per_viewer"]["k"] == [1, 2, 3]
    for m in base["ceiling"]["benchmark"]["metrics"].values():
        assert m["s_inf"] is not None and m["ci95"] == [None, None]   # one test video: no interval
    # the floors are identical in both files: the same scoring code on the same labels
    assert base["rows"]["centre_prior"] == other["rows"]["centre_prior"]


def test_centre_prior_row_recomputed_independently(run):
    """bench_cc and bench_sauc of the centre prior from the labels, the floors file and sklearn / numpy."""
    from scipy.ndimage import gaussian_filter
    from sklearn.metrics import roc_auc_score

    from gazelib.eval.evaluate import eval_map_shape, sauc_negatives
    from gazelib.core.layout import FLOORS, index_grid, load_manifest, read_index, read_labels, split_files
    from gazelib.metrics import resize_bilinear

    root, p = run
    index, meta = read_index(root)
    _, gh, gw = index_grid(meta)
    labels = read_labels(split_files(root, index, "test"))
    (vid, lab), = labels.items()
    row = load_manifest(root).set_index("video_id").loc[vid]
    h, w = eval_map_shape(width=int(row["width"]), height=int(row["height"]),
                          saliency_width=p["evaluate"]["saliency_width"])
    prior = np.asarray(json.loads((root / FLOORS).read_text())["prior"]).reshape(1, gh, gw)
    s = resize_bilinear(maps=prior, out_hw=(h, w))[0].ravel()
    other = sauc_negatives(labels=labels, video_id=vid, max_n=p["evaluate"]["sauc_negatives"], seed=p["seed"])
    neg = np.unique(np.minimum((other[:, 1] * h).astype(int), h - 1) * w + np.minimum((other[:, 0] * w).astype(int), w - 1))
    sigma = p["evaluate"]["benchmark"]["sigma_frame"] * w
    ok = lab["valid"].astype(bool) & (lab["inout"] > 0)
    ccs, saucs = [], []
    for t in np.nonzero(ok.any(0))[0]:
        g = lab["gaze"][ok[:, t], t]
        fix = np.unique(np.minimum((g[:, 1] * h).astype(int), h - 1) * w + np.minimum((g[:, 0] * w).astype(int), w - 1))
        b = np.zeros(h * w)
        b[fix] = 1
        fm = gaussian_filter(b.reshape(h, w), sigma, mode="constant").ravel()
        ccs.append(np.corrcoef(s, fm)[0, 1])
        saucs.append(roc_auc_score(np.r_[np.ones(fix.size), np.zeros(neg.size)], np.r_[s[fix], s[neg]]))
    got = json.loads((root / "reports" / "metrics" / "eval" / "baseline.json").read_text())["benchmark"]["rows"]["centre_prior"]
    assert got["bench_cc"] == pytest.approx(np.mean(ccs), abs=1e-9)
    assert got["bench_sauc"] == pytest.approx(np.mean(saucs), abs=1e-9)
    assert got["n_frames"] == len(ccs)


def test_compare_json_and_report_hold_rows_deltas_ceiling_and_percent(run):
    root, p = run
    cmp = json.loads((root / "reports" / "metrics" / "compare.json").read_text())
    b = cmp["benchmark"]
    ev = json.loads((root / "reports" / "metrics" / "eval" / "content_only.json").read_text())["benchmark"]["rows"]
    assert set(b["rows"]) == {"baseline", "content_only", "centre_prior", "persistence"}
    assert b["rows"]["content_only"]["metrics"]["bench_nss"] == pytest.approx(ev["content_only"]["bench_nss"])
    d = b["deltas"]["content_only"]["vs_baseline"]["bench_cc"]["delta"]
    assert d == pytest.approx(b["rows"]["content_only"]["metrics"]["bench_cc"] - b["rows"]["baseline"]["metrics"]["bench_cc"])
    assert b["deltas"]["content_only"]["vs_baseline"]["bench_kl"]["better"] == (d_kl := (
        b["rows"]["content_only"]["metrics"]["bench_kl"] < b["rows"]["baseline"]["metrics"]["bench_kl"])) or d_kl is None
    c = cmp["ceiling"]
    ceil = c["benchmark"]["metrics"]["bench_nss"]["s_inf"]
    val = b["rows"]["centre_prior"]["metrics"]["bench_nss"]
    assert c["pct_of_ceiling"]["benchmark"]["centre_prior"]["bench_nss"] == pytest.approx(100 * val / ceil)
    auc = cmp["rows"]["inter_observer"]["metrics"]["auc_vat"]
    ceil_v = c["per_viewer"]["metrics"]["auc_vat"]["s_inf"]
    assert c["pct_of_ceiling"]["per_viewer"]["inter_observer"]["auc_vat"] == pytest.approx(
        100 * (auc - 0.5) / (ceil_v - 0.5))
    assert "bench_sim" not in c["pct_of_ceiling"]["benchmark"]["baseline"]   # no chance level: no percentage
    page = (root / "reports" / "index.html").read_text()
    assert "id='benchmark'" in page and "Ceiling at infinite observers" in page and "% of ceiling" in page
    assert "alt='ceiling curves' src='data:image/png;base64," in page          # the curve plot, inlined
    assert f"{b['rows']['content_only']['metrics']['bench_cc']:.3f}" in page


def test_benchmark_outputs_are_byte_identical_on_a_rerun(run):
    from gazelib.eval.compare import run_compare
    from gazelib.eval.evaluate import run_evaluate

    root, p = run
    files = [root / "reports" / "metrics" / "eval" / "baseline.json", root / "reports" / "metrics" / "compare.json",
             root / "reports" / "benchmark.md", root / "reports" / "eval" / "baseline" / "benchmark_frames.parquet"]
    before = [f.read_bytes() for f in files]
    run_evaluate(params=p, variant="baseline", root=root)
    run_compare(params=p, root=root)
    assert [f.read_bytes() for f in files] == before


def test_ceiling_curve_at_all_others_is_the_inter_observer_row(run):
    """With k = every other viewer the k-observer predictor is the inter_observer floor itself: the
    per-viewer curve's last point equals that row's scores on the same samples (same scoring code)."""
    from gazelib.core.io import read_table
    from gazelib.core.layout import read_index, read_labels, split_files

    root, p = run
    index, _ = read_index(root)
    (vid, lab), = read_labels(split_files(root, index, "test")).items()
    ok = lab["valid"].astype(bool) & (lab["inout"] > 0)
    n_v = ok.shape[0]
    full = ok & (ok.sum(0)[None, :] - ok >= n_v - 1)               # every other viewer in frame
    s = read_table(root / "reports" / "eval" / "baseline" / "samples.parquet")[0]
    s = s[(s["row"] == "inter_observer") & (s["video_id"] == vid)]
    s = s[full[s["viewer"].to_numpy(), s["step"].to_numpy()]]
    cur = json.loads((root / "reports" / "metrics" / "eval" / "baseline.json").read_text())["benchmark"]["ceiling"]["per_viewer"]
    assert cur["k"][-1] == n_v - 1
    for key in ("auc_vat", "nss", "cc", "ig"):
        assert cur["metrics"][key]["curve"][-1] == pytest.approx(s[key].mean(), abs=2e-4), key
