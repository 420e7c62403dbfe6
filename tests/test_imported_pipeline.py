"""The pipeline on an imported corpus: demo gaze written as EyeLink sessions on a letterboxed
display, imported back with `gazelib import`, then ingest -> ... -> evaluate, which reports the
gaze error in degrees because the import recorded the screen geometry."""
from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from gazelib.data.align import run_align
from gazelib.pipeline.bias_inputs import run_bias_inputs
from gazelib.eval.evaluate import run_evaluate, run_score_floors
from gazelib.features.audio import run_extract_audio
from gazelib.features.text import run_extract_text
from gazelib.features.visual import run_extract_visual
from gazelib.model.floors import run_fit_floors
from gazelib.gaze.geometry import angular_distance_deg
from gazelib.gaze.importers import run_import
from gazelib.gaze.ingest import run_ingest
from gazelib.core.io import read_table
from gazelib.model.train import run_train
from gazelib.data.validate import run_validate

# slow tier (scripts/test.sh runs it under GAZELIB_TEST_TIER=all): the pipeline on an imported corpus
pytestmark = pytest.mark.slow

DISPLAY = (1920, 1200)
RECT = (0.0, 60.0, 1920.0, 1080.0)      # a 16:9 video fitted on a 16:10 display: bars top and bottom
GEOMETRY = {"rect": "fit", "screen_cm": [51.8, 32.4], "distance_cm": 65.0}


def write_session_asc(path, clips: list[tuple[str, pd.DataFrame]], gap_ms: int = 700) -> None:
    """One viewer's EyeLink ASC: the clips one after another on the tracker clock, with
    VIDEO_START / VIDEO_END messages; gaze in display pixels ('.' when missing)."""
    base = 5_000_000
    lines = ["** CONVERTED FROM S.EDF using edfapi 4.2.1 Linux", "** SOURCE: EYELINK CL", "**", "",
             f"MSG\t{base - 500} DISPLAY_COORDS 0 0 {DISPLAY[0] - 1} {DISPLAY[1] - 1}",
             f"START\t{base} \tLEFT\tSAMPLES\tEVENTS", "PRESCALER\t1", "VPRESCALER\t1", "PUPIL\tAREA",
             "EVENTS\tGAZE\tLEFT\tRATE\t 1000.00\tTRACKING\tCR\tFILTER\t2",
             "SAMPLES\tGAZE\tLEFT\tRATE\t 1000.00\tTRACKING\tCR\tFILTER\t2"]
    clock = base + gap_ms
    for vid, df in clips:
        ms = clock + np.round(df["t"].to_numpy() * 1000).astype(np.int64)
        lines.append(f"MSG\t{clock} VIDEO_START {vid}")
        for ts, x, y, ok in zip(ms, df["x"], df["y"], df["valid"]):
            if ok and np.isfinite(x):
                lines.append(f"{ts}\t{RECT[0] + x * RECT[2]:7.1f}\t{RECT[1] + y * RECT[3]:7.1f}\t  900.0\t...")
            else:
                lines.append(f"{ts}\t   .\t   .\t    0.0\t...")
        end = int(ms[-1]) + 1
        lines.append(f"MSG\t{end} VIDEO_END {vid}")
        clock = end + gap_ms
    lines.append(f"END\t{clock} \tSAMPLES\tEVENTS\tRES\t  38.00\t  38.00")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def imported(tmp_path_factory, tiny_corpus):
    src, params = tiny_corpus
    raw = tmp_path_factory.mktemp("asc")
    videos = sorted(p.stem for p in (src / "videos").glob("*.mp4"))
    viewers = sorted(p.stem for p in (src / "gaze" / videos[0]).glob("*.csv"))
    for viewer in viewers:
        write_session_asc(raw / f"{viewer}.asc", [(v, pd.read_csv(src / "gaze" / v / f"{viewer}.csv")) for v in videos])
    splits = yaml.safe_load((src / "corpus.yaml").read_text())["splits"]
    root = tmp_path_factory.mktemp("repo")
    corpus = root / "imported"
    summary = run_import(cfg={"format": "eyelink", "inputs": [str(raw / "*.asc")], "videos": str(src / "videos"),
                              "copy_videos": True, "on_error": "raise", "splits": splits, "geometry": GEOMETRY,
                              "sync": {"start": r"VIDEO_START (?P<video>\S+)", "end": r"VIDEO_END (?P<video>\S+)"}},
                         out_dir=corpus)
    return root, corpus, src, params, summary


def test_import_matches_the_original_gaze(imported):
    root, corpus, src, _, summary = imported
    assert summary["n_videos"] == 3 and summary["recordings"] == 4
    for csv in sorted((src / "gaze").glob("*/*.csv")):
        orig = pd.read_csv(csv)
        got = pd.read_csv(corpus / "gaze" / csv.parent.name / csv.name)
        ok = orig["valid"].to_numpy() == 1
        assert len(got) == len(orig) and (got["valid"].to_numpy() == ok).all()
        np.testing.assert_allclose(got["t"], np.round(orig["t"] * 1000) / 1000, atol=1e-6)
        np.testing.assert_allclose(got.loc[ok, ["x", "y"]], orig.loc[ok, ["x", "y"]], atol=0.1 / 1080)
    geo = yaml.safe_load((corpus / "corpus.yaml").read_text())["geometry"]
    assert geo["display_px"] == list(DISPLAY) and geo["video_rect_px"]["demo000"] == list(RECT)


def test_pipeline_on_the_imported_corpus_reports_degrees(imported):
    root, corpus, _, base_params, _ = imported
    params = copy.deepcopy(base_params)
    params["data"]["corpus"] = str(corpus)
    params["visual"]["image_model"] = "none"
    params["variants"] = {"baseline": {"modalities": ["track"]}}
    params["train"].update(epochs=1, seeds=[0])
    for run in (run_ingest, run_extract_audio, run_extract_text, run_extract_visual, run_align, run_bias_inputs,
                run_validate, run_fit_floors):
        run(params=params, root=root)
    manifest = read_table(root / "data/interim/manifest.parquet")[0].set_index("video_id")
    geo = yaml.safe_load((corpus / "corpus.yaml").read_text())["geometry"]
    np.testing.assert_allclose(manifest.loc["demo000", ["deg_per_unit_x", "deg_per_unit_y"]].to_numpy(float),
                               geo["deg_per_unit"]["demo000"])
    assert manifest["px_per_deg"].iloc[0] == pytest.approx(np.mean(geo["pixels_per_degree"]))
    run_train(params=params, variant="baseline", root=root)
    run_score_floors(params=params, root=root)
    metrics = run_evaluate(params=params, variant="baseline", root=root)
    for row in ("model", "centre_prior", "persistence", "inter_observer"):
        assert np.isfinite(metrics[row]["l2_vat_deg"]) and metrics[row]["l2_vat_deg"] > 0
    # per sample, the degrees are the visual angle of the same error l2_vat measures
    s = read_table(root / "reports/eval/baseline/samples.parquet")[0]
    s = s[s["row"] == "centre_prior"].dropna(subset=["l2_vat"])
    ratio = s["l2_vat_deg"] / s["l2_vat"]
    lo, hi = min(geo["deg_per_unit"]["demo000"]), np.hypot(*geo["deg_per_unit"]["demo000"])
    assert ratio.between(0.8 * lo, 1.05 * hi).all()
    eval_json = json.loads((root / "reports/metrics/eval/baseline.json").read_text())
    assert "l2_vat_deg is the same error as a visual angle" in eval_json["protocol"]
    # the benchmark protocol's fixation-map sigma comes from degrees here (docs/benchmark.md)
    bench, w = eval_json["benchmark"], params["evaluate"]["saliency_width"]
    assert bench["sigma_from"] == [f"{params['evaluate']['benchmark']['sigma_deg']:g} deg of visual angle (corpus geometry)"]
    for vid, (sy, sx) in bench["sigma_px"].items():
        assert sx == pytest.approx(params["evaluate"]["benchmark"]["sigma_deg"] / geo["deg_per_unit"][vid][0] * w, abs=1e-4)
    # the video spans the screen's width: edge to edge is 2 atan(w / 2d), computed independently
    assert angular_distance_deg(x0=0.0, y0=0.5, x1=1.0, y1=0.5, geometry=geo, video_id="demo000") == \
        pytest.approx(2 * np.degrees(np.arctan(51.8 / 2 / 65.0)), rel=1e-6)


def test_fixation_labels_through_ingest(imported):
    """ingest.labels: fixations: samples in a fixation take its centroid, the rest are missing,
    and the share of samples in fixations is reported."""
    from gazelib.gaze.ingest import ingest_corpus

    _, corpus, _, base_params, _ = imported
    cfg = {**base_params["ingest"], "labels": "fixations"}
    res = ingest_corpus(corpus=corpus, params=cfg, on_error="raise")
    plain = ingest_corpus(corpus=corpus, params=base_params["ingest"], on_error="raise")
    share = res.manifest.set_index("video_id")["fixation_share"]
    assert share.between(0.3, 1.0).all() and plain.manifest["fixation_share"].isna().all()
    g, p = res.gaze["demo000"], plain.gaze["demo000"]
    assert len(g) == len(p) and g["valid"].sum() < p["valid"].sum()
    one = g[(g["viewer_id"] == "viewer00") & g["valid"]]
    runs = int((one["x"].diff().fillna(1) != 0).sum())     # centroids repeat within a fixation
    assert 3 <= runs < 0.25 * len(one)
