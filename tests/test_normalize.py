"""Normalisation: train-only fit, per-column independence, round trip, kinds respected."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from gazelib.features.audio import run_extract_audio
from gazelib.features.text import run_extract_text
from gazelib.features.visual import run_extract_visual
from gazelib.core.normalize import denormalise, fit_norm_stats, normalise, normalise_grid


def _video(rng, n=50, shift=0.0, scale=1.0):
    audio = np.c_[rng.normal(shift, scale, n), rng.integers(0, 2, n)].astype(np.float32)
    text = rng.normal(size=(n, 4)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    return {"audio": audio, "audio_columns": np.array(["rms", "is_speaking"]),
            "audio_kinds": np.array(["continuous", "binary"]),
            "text": text, "text_columns": np.array([f"e{i}" for i in range(4)]),
            "text_kinds": np.array(["embedding"] * 4),
            "visual": rng.normal(shift, scale, (n, 2)).astype(np.float32), "visual_columns": np.array(["m", "b"]),
            "visual_kinds": np.array(["continuous", "continuous"]),
            "grid": rng.normal(shift, scale, (n, 3, 2, 2)).astype(np.float32),
            "mask": np.ones((n, 4), bool)}


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(-5, 5), st.floats(0.1, 10))
def test_round_trip_and_standardisation(seed, shift, scale):
    rng = np.random.default_rng(seed)
    vids = [_video(rng, shift=shift, scale=scale) for _ in range(3)]
    stats = fit_norm_stats(videos=vids)
    x = np.concatenate([v["audio"] for v in vids])
    z = normalise(x=x, stats=stats["audio"])
    assert abs(z[:, 0].mean()) < 1e-3 and abs(z[:, 0].std() - 1) < 1e-3
    np.testing.assert_array_equal(z[:, 1], x[:, 1])  # binary untouched
    np.testing.assert_allclose(denormalise(z=z, stats=stats["audio"]), x, rtol=1e-4, atol=1e-4 * scale)
    t = normalise(x=vids[0]["text"] * 3.0, stats=stats["text"])
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, rtol=1e-5)
    g = normalise_grid(grid=np.concatenate([v["grid"] for v in vids]), stats=stats["grid"])
    assert np.allclose(g.mean(axis=(0, 2, 3)), 0, atol=1e-3)


STAGE_RUNS = {"extract_audio": run_extract_audio, "extract_text": run_extract_text,
              "extract_visual": run_extract_visual}


def test_columns_are_normalised_independently():
    rng = np.random.default_rng(1)
    v = _video(rng)
    stats = fit_norm_stats(videos=[v])
    v2 = {**v, "visual": v["visual"].copy()}
    v2["visual"][:, 1] *= 100
    stats2 = fit_norm_stats(videos=[v2])
    assert stats2["visual"]["mean"][0] == stats["visual"]["mean"][0]
    assert stats2["visual"]["std"][0] == stats["visual"]["std"][0]
    assert stats2["visual"]["std"][1] != stats["visual"]["std"][1]


def test_masked_steps_do_not_enter_the_stats_and_stay_zero():
    rng = np.random.default_rng(2)
    v = _video(rng)
    v["mask"][:10, 0] = False
    v["audio"][:10] = 1e6
    stats = fit_norm_stats(videos=[v])
    assert abs(stats["audio"]["mean"][0]) < 1
    z = normalise(x=v["audio"], stats=stats["audio"], is_valid=v["mask"][:, 0])
    assert (z[:10] == 0).all()


def test_fit_uses_train_videos_only(tmp_path, tiny_corpus):
    """Changing val/test data leaves norm_stats.json unchanged (pipeline level)."""
    import json
    import shutil

    from gazelib.core.layout import load_manifest
    from gazelib.data.align import run_align
    from gazelib.gaze.ingest import run_ingest

    src, params = tiny_corpus
    root = tmp_path / "repo"
    shutil.copytree(src, root / "data/raw/demo")
    run_ingest(params=params, root=root)
    for stage in ("extract_audio", "extract_visual"):
        STAGE_RUNS[stage](params=params, root=root)
    run_align(params=params, root=root)
    stats = json.loads((root / "data/aligned/norm_stats.json").read_text())
    manifest = load_manifest(root)
    other = manifest.loc[manifest["split"] != "train", "video_id"].iloc[0]
    # perturb a non-train video's audio features and re-align
    from gazelib.core.io import read_table, write_table

    p = root / "data/features/audio" / f"{other}.parquet"
    df, meta = read_table(p)
    df["rms"] = df["rms"] * 50 + 3
    write_table(p, df, meta=meta)
    run_align(params=params, root=root)
    stats2 = json.loads((root / "data/aligned/norm_stats.json").read_text())
    assert stats2 == stats
    assert stats["fit_on"] == sorted(manifest.loc[manifest["split"] == "train", "video_id"])
