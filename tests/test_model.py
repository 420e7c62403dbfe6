"""Model: fusion gates and masks, checkpoint type detection, resume and determinism."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gazelib.io import write_npz
from gazelib.model import FUSIONS, ModelConfig, build_model
from gazelib.normalize import fit_norm_stats
from gazelib.train import CheckpointError, load_checkpoint, train_variant

DIMS = {"audio": 3, "text": 4, "visual": 5, "track": 5}


def _cfg(fusion, modalities=("track", "audio", "text", "visual")):
    return ModelConfig(modalities=list(modalities), input_dims=DIMS, grid_channels=2, grid_h=3, grid_w=4,
                       d_model=16, n_heads=2, n_layers=1, dim_ff=32, dropout=0.0, fusion=fusion)


def _batch(b=2, t=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(b, t, 3, generator=g), "text": torch.randn(b, t, 4, generator=g),
            "visual": torch.randn(b, t, 5, generator=g), "track": torch.randn(b, t, 5, generator=g),
            "grid": torch.randn(b, t, 2, 3, 4, generator=g), "track_map": torch.rand(b, t, 12, generator=g),
            "mask": torch.ones(b, t, 4), "pad": torch.zeros(b, t, dtype=torch.bool)}


@pytest.mark.parametrize("fusion", FUSIONS)
def test_masked_modality_changes_nothing(fusion):
    torch.manual_seed(0)
    model = build_model(_cfg(fusion)).eval()
    for m_i, m in enumerate(("audio", "text", "visual")):
        batch = _batch()
        batch["mask"][:, :, m_i] = 0
        out1 = model(batch)
        batch2 = dict(batch)
        batch2[m] = batch[m] * 100 + 5
        if m == "visual":
            batch2["grid"] = batch["grid"] * -3
        out2 = model(batch2)
        torch.testing.assert_close(out1["heatmap_logits"], out2["heatmap_logits"])
        torch.testing.assert_close(out1["inout_logits"], out2["inout_logits"])
        batch3 = dict(batch2)
        batch3["mask"] = torch.ones_like(batch["mask"])
        assert not torch.allclose(model(batch3)["heatmap_logits"], out1["heatmap_logits"])


def test_padding_does_not_leak_and_shapes():
    model = build_model(_cfg("gated")).eval()
    batch = _batch(t=6)
    batch["pad"][:, 4:] = True
    out = model(batch)
    assert out["heatmap_logits"].shape == (2, 6, 12) and out["inout_logits"].shape == (2, 6)
    batch2 = dict(batch)
    batch2["audio"] = batch["audio"].clone()
    batch2["audio"][:, 4:] = 1e3
    torch.testing.assert_close(model(batch2)["heatmap_logits"][:, :4], out["heatmap_logits"][:, :4])


def test_gated_fusion_gates_are_in_unit_interval():
    model = build_model(_cfg("gated")).eval()
    e = torch.randn(2, 3, 16)
    gates = [torch.sigmoid(g(e)) for g in model.fusion.gates]
    assert all(((x > 0) & (x < 1)).all() for x in gates)


def test_build_model_rejects_bad_config():
    with pytest.raises(ValueError, match="fusion"):
        build_model(_cfg("median"))
    with pytest.raises(ValueError, match="modalities"):
        build_model(_cfg("gated", modalities=("smell",)))


# ------------------------------------------------------------------ training on synthetic data
def _synthetic_split(root, n_videos=4, n_t=80, seed=0):
    """Aligned videos where gaze follows a bright grid cell that audio announces."""
    rng = np.random.default_rng(seed)
    files = []
    for v in range(n_videos):
        t = np.arange(n_t) / 10
        cell = rng.integers(0, 12, n_t // 10).repeat(10)
        grid = rng.normal(0, 0.1, (n_t, 2, 3, 4)).astype(np.float32)
        grid[np.arange(n_t), 0, cell // 4, cell % 4] += 2
        xy = np.stack([(cell % 4 + 0.5) / 4, (cell // 4 + 0.5) / 3], 1)
        gaze = np.repeat(xy[None], 2, 0).astype(np.float32) + rng.normal(0, 0.02, (2, n_t, 2)).astype(np.float32)
        arr = {"t": t, "audio": rng.normal(size=(n_t, 3)).astype(np.float32),
               "audio_columns": np.array(["a", "b", "c"]), "audio_kinds": np.array(["continuous"] * 3),
               "text": np.zeros((n_t, 4), np.float32), "text_columns": np.array([f"e{i}" for i in range(4)]),
               "text_kinds": np.array(["embedding"] * 4),
               "visual": rng.normal(size=(n_t, 3)).astype(np.float32), "visual_columns": np.array(["x", "y", "z"]),
               "visual_kinds": np.array(["continuous"] * 3), "grid": grid, "mask": np.ones((n_t, 4), bool),
               "gaze": gaze, "inout": np.ones((2, n_t), np.int8), "valid": np.ones((2, n_t), bool),
               "viewers": np.array(["a", "b"])}
        f = root / f"v{v}.npz"
        write_npz(f, **arr)
        files.append((f, arr))
    stats = fit_norm_stats(videos=[a for _, a in files[:3]])
    index = {"length": {f.stem: n_t for f, _ in files}, "viewers": {f.stem: 2 for f, _ in files}}
    return [f for f, _ in files[:3]], [files[3][0]], index, stats


TRAIN_CFG = {"horizon_s": 0.5, "window_s": 3.0, "stride_s": 1.5, "batch_size": 4, "epochs": 3, "lr": 0.003,
             "weight_decay": 0.0, "patience": 10, "heatmap_sigma": 0.1, "lambda_heatmap": 1.0,
             "lambda_inout": 0.5, "num_threads": 1}
MODEL_CFG = {"d_model": 16, "n_heads": 2, "n_layers": 1, "dim_ff": 32, "dropout": 0.1, "fusion": "gated",
             "causal": False}


def _train(tmp_path, out, max_epochs=None, seed=0, variant="multimodal", modalities=("track", "audio", "visual")):
    train, val, index, stats = _synthetic_split(tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return train_variant(variant=variant, modalities=list(modalities), train_files=train, val_files=val,
                         index=index, stats=stats, grid_shape=(2, 3, 4), fps=10.0, cfg=TRAIN_CFG,
                         model_cfg=MODEL_CFG, out_dir=out, seed=seed, max_epochs=max_epochs)


def test_training_learns_and_is_deterministic(tmp_path):
    a = _train(tmp_path, tmp_path / "a")
    b = _train(tmp_path, tmp_path / "b")
    assert [h["val_loss"] for h in a["history"]] == [h["val_loss"] for h in b["history"]]
    assert a["history"][-1]["train_loss"] < a["history"][0]["train_loss"]
    sa = load_checkpoint(tmp_path / "a" / "best.pt")["model"]
    sb = load_checkpoint(tmp_path / "b" / "best.pt")["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_equals_uninterrupted_run(tmp_path):
    full = _train(tmp_path, tmp_path / "full")
    part = _train(tmp_path, tmp_path / "resumed", max_epochs=1)
    assert part["epochs_run"] == 1
    rest = _train(tmp_path, tmp_path / "resumed")
    assert rest["epochs_run"] == full["epochs_run"]
    assert [h["val_loss"] for h in rest["history"]] == pytest.approx([h["val_loss"] for h in full["history"]],
                                                                      rel=1e-6)
    sf = load_checkpoint(tmp_path / "full" / "latest.pt")["model"]
    sr = load_checkpoint(tmp_path / "resumed" / "latest.pt")["model"]
    assert all(torch.allclose(sf[k], sr[k], atol=1e-6) for k in sf)


def test_checkpoint_type_detection(tmp_path):
    _train(tmp_path, tmp_path / "m")
    ck = tmp_path / "m" / "best.pt"
    state = load_checkpoint(ck, expect={"variant": "multimodal"})
    assert state["meta"]["modalities"] == ["track", "audio", "visual"]
    assert state["meta"]["model_config"]["input_dims"]["audio"] == 3
    with pytest.raises(CheckpointError, match="variant is 'multimodal', expected 'baseline'"):
        load_checkpoint(ck, expect={"variant": "baseline"})
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a gazelib.gaze_transformer checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    json.dumps(state["meta"])  # metadata is plain data
