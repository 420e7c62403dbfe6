"""A finished tiny pipeline run for tests: the tiny demo corpus, ingested, with synthetic feature
files (small, typed like the extractors' own), then the real stages align, validate, train (two
variants), floors and evaluate, and optionally compare, report and horizons. Shared by the
report, benchmark and horizon tests (each runs it with its own params)."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

TRAIN = {"epochs": 1, "seeds": [0], "window_s": 4.0, "stride_s": 2.0, "batch_size": 8, "num_threads": 2}
MODEL = {"d_model": 16, "n_heads": 2, "n_layers": 1, "dim_ff": 32, "cell_dim": 8}


def _synthetic_features(root: Path, manifest, params: dict) -> None:
    """Feature files as the extractors write them (typed columns, NPZ arrays), with random values, and
    each folder's report with the params they stand for (what align records for the model bundle)."""
    from gazelib.core.cache import CacheRun, write_stage_report
    from gazelib.core.io import feature_meta, write_npz, write_table
    from gazelib.core.params import feature_record

    import pandas as pd

    feat = root / "data" / "features"
    for i, row in enumerate(manifest.itertuples()):
        rng = np.random.default_rng(i)
        vid, dur = row.video_id, float(row.duration_s)
        t = np.arange(0, dur, 0.01)
        write_table(feat / "audio" / f"{vid}.parquet",
                    pd.DataFrame({"t": t, "rms": rng.random(t.size).astype(np.float32),
                                  "is_speaking": (rng.random(t.size) > 0.5).astype(np.int8)}),
                    meta=feature_meta(video_id=vid, modality="audio", kinds={"rms": "continuous", "is_speaking": "binary"},
                                      backend="synthetic", params={}))
        t = np.arange(0, dur, 0.04)
        emb = rng.normal(size=(t.size, 4)).astype(np.float32)
        write_table(feat / "text" / f"{vid}.parquet",
                    pd.DataFrame({"t": t, "text_active": (rng.random(t.size) > 0.5).astype(np.int8)}),
                    meta=feature_meta(video_id=vid, modality="text", kinds={"text_active": "binary",
                                                                           "word_emb": "embedding"},
                                      backend="synthetic", params={}))
        write_npz(feat / "text" / f"{vid}.npz", t=t, word_emb=emb / np.linalg.norm(emb, axis=1, keepdims=True))
        t = np.arange(0, dur, 0.1)
        write_table(feat / "visual" / f"{vid}.parquet",
                    pd.DataFrame({"t": t, "motion": rng.random(t.size).astype(np.float32),
                                  "face_count": rng.integers(0, 3, t.size).astype(np.int16)}),
                    meta=feature_meta(video_id=vid, modality="visual", kinds={"motion": "continuous",
                                                                             "face_count": "count", "grid": "grid"},
                                      backend="synthetic", params={}))
        write_npz(feat / "visual" / f"{vid}.npz", t=t, grid=rng.random((t.size, 8, 9, 16)).astype(np.float32))
    for m in ("audio", "text", "visual"):
        write_stage_report(feat / m, stage=f"extract_{m}", run=CacheRun(computed=list(manifest["video_id"])),
                           extra={"params": feature_record(params[m], section=m)})


def _synthetic_bias_inputs(root: Path) -> None:
    """Content-free inputs in the synthetic features' schema (the real ones, built through the
    extractors, are tested in test_bias.py): flat audio and visual, no text, no track."""
    from gazelib.model.bias import BIAS_INPUTS
    from gazelib.core.io import read_npz, write_npz

    a = read_npz(sorted((root / "data" / "aligned").glob("*.npz"))[0])
    n_t = a["t"].size
    a.update({"audio": np.zeros_like(a["audio"]), "text": np.zeros_like(a["text"]), "visual": np.zeros_like(a["visual"]),
              "grid": np.full_like(a["grid"], 0.5), "mask": np.tile([True, False, True, False], (n_t, 1)),
              "viewers": np.array(["none"]), "gaze": np.zeros((1, n_t, 2), np.float32),
              "inout": np.zeros((1, n_t), np.int8), "valid": np.zeros((1, n_t), bool),
              "gaze_t": np.full((1, n_t), np.nan)})
    write_npz(root / BIAS_INPUTS / "grey_0.50.npz", **a)


def tiny_pipeline(*, root: Path, corpus: Path, base: dict, report: dict | None = None, evaluate: dict | None = None,
                  train: dict | None = None, compare: bool = True, run_report: bool = True,
                  horizons: bool = False) -> tuple[dict, dict]:
    """Run the stages into ``root``; returns (params, what the last stage run returned)."""
    from gazelib.data.align import run_align
    from gazelib.eval.evaluate import run_evaluate, run_score_floors
    from gazelib.model.floors import run_fit_floors
    from gazelib.gaze.ingest import run_ingest
    from gazelib.core.layout import load_manifest
    from gazelib.model.train import run_train
    from gazelib.data.validate import run_validate

    p = copy.deepcopy(base)
    p["data"]["corpus"] = str(corpus)
    p["visual"]["image_model"] = "none"
    p["train"].update({**TRAIN, **(train or {})})
    p["model"].update(MODEL)
    # one scoring process: on a tiny corpus spawning workers costs more than it saves (test_horizons checks 2)
    p["evaluate"].update({"viz_frames": 1, "workers": 1, **(evaluate or {})})
    p["variants"] = {"baseline": {"modalities": ["track"]}, "content_only": {"modalities": ["audio", "text", "visual"]}}
    if report is not None:
        p["report"] = {**p["report"], **report}
    run_ingest(params=p, root=root)
    _synthetic_features(root, load_manifest(root), p)
    run_align(params=p, root=root)
    _synthetic_bias_inputs(root)
    run_validate(params=p, root=root)
    for v in p["variants"]:
        run_train(params=p, variant=v, root=root)
    run_fit_floors(params=p, root=root)
    run_score_floors(params=p, root=root)
    for v in p["variants"]:
        run_evaluate(params=p, variant=v, root=root)
    out: dict = {}
    if horizons:
        from gazelib.eval.horizons import run_horizons

        out = run_horizons(params=p, root=root)
    if compare:
        from gazelib.eval.compare import run_compare

        out = run_compare(params=p, root=root)
    if run_report:
        from gazelib.report.html import run_report as report_stage

        out = report_stage(params=p, root=root)
    return p, out
