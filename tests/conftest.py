"""Shared fixtures: a tiny demo corpus generated once per session, and params for it."""
from __future__ import annotations

import gazelib  # noqa: F401  (first: pins one CPU instruction-set path before numpy / torch load, gazelib.core.cpu)

import copy
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def base_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def tiny_params(base: dict, **demo) -> dict:
    p = copy.deepcopy(base)
    p["demo"].update({"n_videos": 3, "duration_s": 10.0, "split_counts": {"val": 1, "test": 1}, **demo})
    p["train"].update({"epochs": 1, "seeds": [0]})
    # 3 short videos: worker processes would cost more to start (each loads the models) than they
    # save; the parallel path is tested on its own (tests/test_compute.py) and by the e2e run
    p["compute"]["workers"] = 1
    return p


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory, base_params) -> tuple[Path, dict]:
    """Three 10 s demo videos (4 viewers each), written once for the whole session."""
    from gazelib.demo.corpus import generate_corpus

    root = tmp_path_factory.mktemp("tiny_demo")
    params = tiny_params(base_params)
    generate_corpus(out_dir=root, cfg=params["demo"])
    return root, params


@pytest.fixture(scope="session")
def causal_corpus(tmp_path_factory, base_params) -> tuple[Path, dict]:
    """Four 30 s videos: enough sentences to test the viewer model's causal links."""
    from gazelib.demo.corpus import generate_corpus

    root = tmp_path_factory.mktemp("causal_demo")
    params = tiny_params(base_params, n_videos=4, duration_s=30.0, seed=7)
    generate_corpus(out_dir=root, cfg=params["demo"])
    return root, params


# ---------------------------------------------------------------- tiny trained model folders (gazelib predict)
TRAIN_CFG = {"horizon_s": 1.0, "window_s": 6.0, "stride_s": 3.0, "batch_size": 8, "epochs": 1, "lr": 0.003,
             "weight_decay": 0.0, "patience": 5, "heatmap_sigma": 0.06, "lambda_heatmap": 1.0, "lambda_inout": 0.5,
             "num_threads": 2, "heatmap_target": "gaussian", "warmup_frac": 0.05, "grad_clip": 1.0,
             "horizons_sampled": None, "cache_videos": 64, "lambda_entropy": 0.0, "entropy_every": 10,
             "viewer_group": 4}
MODEL_CFG = {"d_model": 16, "n_heads": 2, "n_layers": 1, "dim_ff": 32, "dropout": 0.0, "fusion": "gated",
             "cell_dim": 8, "content_context": "causal"}


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_corpus):
    """Model folders ``content_only`` and ``multimodal`` (track, audio, text, visual) trained on two
    demo videos whose features were extracted by predict's own extraction into ``out/_features``
    (so predicting on those videos into ``out`` reuses them). Shared by the predict and aoi tests."""
    import pandas as pd

    from gazelib.data.align import align_video
    from gazelib.model.bundle import write_bundle
    from gazelib.demo.corpus import DEMO_SYNTHETIC
    from gazelib.features.grid import grid_shape
    from gazelib.gaze.ingest import read_gaze_csv
    from gazelib.core.io import read_npz, write_npz
    from gazelib.core.normalize import fit_norm_stats
    from gazelib.serve.extract import extract_features
    from gazelib.serve.inputs import collect_videos
    from gazelib.core.media import probe_video
    from gazelib.core.cache import hash_file, hash_obj
    from gazelib.model.train import train_variant

    corpus, params = tiny_corpus
    params = copy.deepcopy(params)
    root = tmp_path_factory.mktemp("predict")
    out = root / "out"
    work = out / "_features"
    videos = [corpus / "videos" / f"demo00{i}.mp4" for i in (0, 1)]
    jobs = collect_videos(inputs=videos)
    for j in jobs:
        j.probe = probe_video(path=j.path, video_id=j.video_id)
        j.media_hash = hash_obj([hash_file(j.path)])
    feature_params = {k: params[k] for k in ("features", "audio", "text", "visual", "align")}
    extract_features(jobs=jobs, params=feature_params, work=work, timings={}, progress=False)
    assert not any(j.error for j in jobs), [j.error for j in jobs]
    gshape = grid_shape(params["visual"])
    files, arrays = [], []
    for j in jobs:
        gaze = pd.concat([read_gaze_csv(path=p, video_id=j.video_id, viewer_id=p.stem, coords="normalized",
                                        time_unit="s", width=j.probe.width, height=j.probe.height,
                                        duration_s=j.probe.duration_s, cfg=params["ingest"])
                          for p in sorted((corpus / "gaze" / j.video_id).glob("*.csv"))], ignore_index=True)
        a = align_video(video_id=j.video_id, duration_s=j.probe.duration_s, feat_dir=work, gaze=gaze,
                        cfg=params["align"], grid_shape=gshape)
        f = root / "train_aligned" / f"{j.video_id}.npz"
        write_npz(f, **a)
        files.append(f)
        arrays.append(read_npz(f))
    stats = fit_norm_stats(videos=arrays)
    index = {"length": {f.stem: int(a["t"].size) for f, a in zip(files, arrays)},
             "viewers": {f.stem: int(a["gaze"].shape[0]) for f, a in zip(files, arrays)}}
    params["train"]["seeds"] = [0]
    models = {}
    for variant, mods in (("content_only", ["audio", "text", "visual"]),
                          ("multimodal", ["track", "audio", "text", "visual"])):
        mdir = root / "models" / variant
        train_variant(variant=variant, modalities=mods, train_files=files, val_files=files[1:], index=index,
                      stats=stats, grid_shape=(len(stats["grid"]["mean"]), *gshape[1:]), fps=params["align"]["fps"],
                      cfg=TRAIN_CFG, model_cfg=MODEL_CFG, out_dir=mdir / "seed0", seed=0)
        # content_only says it was trained on the demo (as the train stage records from corpus.yaml)
        write_bundle(out_dir=mdir, params=params, stats=stats, variant=variant, modalities=mods,
                     synthetic=DEMO_SYNTHETIC if variant == "content_only" else None)
        models[variant] = mdir
    return {"root": root, "out": out, "models": models, "corpus": corpus, "params": params}
