"""Bias-entropy diagnostic: the entropy code against scipy, the content-free inputs against the
real extractors, the diagnostic and the regulariser's gradient on a real (tiny) model."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import entropy as scipy_entropy

from gazelib.model.bias import (
    BIAS_INPUTS,
    bias_diagnostic,
    bias_files,
    content_free_batch,
    entropy_bits,
    entropy_penalty,
)
from gazelib.pipeline.bias_inputs import content_free_clip, run_bias_inputs
from gazelib.core.io import read_npz
from gazelib.model.net import ModelConfig, build_model


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0, 1e3, allow_nan=False), min_size=1, max_size=200).filter(lambda x: sum(x) > 1e-6))
def test_entropy_matches_scipy(values):
    p = np.array(values)
    assert entropy_bits(p=p) == pytest.approx(scipy_entropy(p, base=2), rel=1e-9, abs=1e-9)


def test_entropy_known_answers_and_bad_maps():
    assert entropy_bits(p=np.ones((9, 16))) == pytest.approx(math.log2(144))
    one_hot = np.zeros(144)
    one_hot[7] = 3.0
    assert entropy_bits(p=one_hot) == 0.0
    assert entropy_bits(p=np.array([1, 1, 0, 0])) == pytest.approx(1.0)
    for bad in (np.array([1.0, -0.1]), np.zeros(4), np.array([np.nan, 1.0])):
        with pytest.raises(ValueError, match="entropy"):
            entropy_bits(p=bad)


@pytest.fixture(scope="module")
def bias_root(tmp_path_factory, base_params):
    params = copy.deepcopy(base_params)
    params["evaluate"]["bias_grey_levels"] = [0.0, 1.0]
    params["train"]["window_s"] = 3.0
    root = tmp_path_factory.mktemp("bias")
    run_bias_inputs(params=params, root=root)
    return root, params


def test_content_free_inputs_come_from_the_extractors(bias_root):
    root, params = bias_root
    files = bias_files(root)
    assert [f.name for f in files] == ["grey_0.00.npz", "grey_1.00.npz"]
    for f, level in zip(files, (0.0, 1.0)):
        a = read_npz(f)
        assert a["t"].size == int(round(3.0 * params["align"]["fps"]))
        # audio and visual are available (silence and grey *are* content-free content); text and track are not
        assert a["mask"].all(0).tolist() == [True, False, True, False]
        assert a["viewers"].tolist() == ["none"] and not a["valid"].any()
        vis = dict(zip(a["visual_columns"].tolist(), a["visual"].T))
        np.testing.assert_allclose(vis["brightness"], level, atol=1 / 255)
        for col in ("motion", "face_count", "mouth_motion", "scene_cut", "contrast"):
            np.testing.assert_allclose(vis[col], 0.0, atol=1e-6)
        aud = dict(zip(a["audio_columns"].tolist(), a["audio"].T))
        assert (aud["rms"] == 0).all() and (aud["is_speaking"] == 0).all()
        assert not np.any(a["text"]) and a["grid"].shape[0] == a["t"].size


def test_content_free_visual_equals_a_direct_extractor_run(bias_root, tmp_path):
    from gazelib.data.align import resample_kind
    from gazelib.features.visual import extract_visual_features, make_image_encoder

    root, params = bias_root
    item = content_free_clip(path=tmp_path / "grey_1.00.mp4", level=1.0, params=params)
    feats = extract_visual_features(video_path=item["video_path"], video_id="grey", cfg=params["visual"],
                                    encoder=make_image_encoder(params["visual"]))
    a = read_npz(root / BIAS_INPUTS / "grey_1.00.npz")
    cols = a["visual_columns"].tolist()
    table_cols = [c for c in feats.table.columns if c != "t"]
    assert set(table_cols) <= set(cols) and len(table_cols) >= 5
    for col in table_cols:  # the stage's aligned values are the extractor's, resampled to the model's steps
        direct = resample_kind(kind="continuous", src_t=feats.table["t"].to_numpy(),
                               src_v=feats.table[col].to_numpy(np.float64), dst_t=a["t"], max_gap_s=1.0)
        np.testing.assert_allclose(a["visual"][:, cols.index(col)], direct.values, atol=1e-6, err_msg=col)
    assert feats.table["face_count"].eq(0).all()


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig(modalities=["track", "audio", "text", "visual"], input_dims={"audio": 3, "text": 4, "visual": 5,
                      "track": 5}, grid_channels=2, grid_h=3, grid_w=4, d_model=16, n_heads=2, n_layers=1, dim_ff=32,
                      dropout=0.0, fusion="gated", cell_dim=8)
    return build_model(cfg)


def _batch(b=3, t=5):
    g = torch.Generator().manual_seed(1)
    return {"audio": torch.randn(b, t, 3, generator=g), "text": torch.zeros(b, t, 4),
            "visual": torch.randn(b, t, 5, generator=g), "track": torch.zeros(b, t, 5),
            "grid": torch.randn(b, t, 12, 2, generator=g), "track_map": torch.zeros(b, t, 12),
            "mask": torch.tensor([1.0, 0.0, 1.0, 0.0]).expand(b, t, 4).clone(),
            "pad": torch.tensor([[False] * t, [False] * t, [False] * (t - 2) + [True] * 2])}


def test_diagnostic_is_the_mean_map_and_its_entropy():
    model = _tiny_model()
    batch = _batch()
    d = bias_diagnostic(model=model, batch=batch, gh=3, gw=4, names=["a", "b", "c"])
    with torch.no_grad():
        prob = torch.softmax(model(batch)["heatmap_logits"], -1).double().numpy()
    keep = ~batch["pad"].numpy()
    per = [prob[i][keep[i]].mean(0) for i in range(3)]
    np.testing.assert_allclose(d["map"].ravel(), np.mean(per, 0), rtol=1e-12)
    assert d["entropy_bits"] == pytest.approx(scipy_entropy(np.mean(per, 0), base=2))
    assert d["entropy_share"] == pytest.approx(d["entropy_bits"] / math.log2(12))
    assert d["per_clip"]["c"]["entropy_bits"] == pytest.approx(scipy_entropy(per[2], base=2))


def test_entropy_penalty_gradient_raises_the_bias_entropy():
    model = _tiny_model(seed=3)
    with torch.no_grad():  # a strongly biased start
        model.cell_bias.bias.fill_(0.0)
        model.cell_pos.mul_(50)
        model.cell_bias.weight.mul_(30)   # the cell scores read the keys through it: a peaked map
    batch = _batch()
    before = bias_diagnostic(model=model, batch=batch, gh=3, gw=4, names=["a", "b", "c"])["entropy_bits"]
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        penalty, h_bits = entropy_penalty(model=model, batch=batch)
        penalty.backward()
        opt.step()
    after = bias_diagnostic(model=model, batch=batch, gh=3, gw=4, names=["a", "b", "c"])["entropy_bits"]
    assert after > before + 0.05, (before, after)
    assert h_bits == pytest.approx(-float(penalty) / math.log(2), rel=1e-6)


def test_missing_inputs_and_bad_levels_fail_clearly(tmp_path, base_params):
    with pytest.raises(FileNotFoundError, match="bias_inputs"):
        bias_files(tmp_path)
    with pytest.raises(ValueError, match="grey level"):
        content_free_clip(path=tmp_path / "x.mp4", level=1.5, params=base_params)
    params = copy.deepcopy(base_params)
    params["evaluate"]["bias_grey_levels"] = []
    with pytest.raises(ValueError, match="bias_grey_levels"):
        run_bias_inputs(params=params, root=tmp_path)


def test_content_free_batch_masks_track_and_text(bias_root):
    from gazelib.core.normalize import NormAccumulator

    root, params = bias_root
    files = bias_files(root)
    acc = NormAccumulator()
    for f in files:
        a = read_npz(f)
        acc.add_video(a)
        acc.add_grid(a["grid"])
    stats = acc.stats()
    cfg = {k: v for k, v in params["train"].items() if k != "seeds"}
    batch = content_free_batch(files=files, stats=stats, cfg=cfg, fps=params["align"]["fps"],
                               grid_hw=(params["visual"]["grid_h"], params["visual"]["grid_w"]))
    assert batch["mask"].shape[0] == 2 and (batch["mask"][..., 1] == 0).all() and (batch["mask"][..., 3] == 0).all()
    assert (batch["track"] == 0).all() and not batch["pad"].any()
