"""Model: fusion gates and masks, checkpoint type detection, resume and determinism."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gazelib.core.io import write_npz
from gazelib.model.net import CONTENT_CONTEXTS, FUSIONS, ModelConfig, build_model
from gazelib.core.normalize import fit_norm_stats
from gazelib.model.checkpoint import CheckpointError, load_checkpoint
from gazelib.model.train import train_variant

DIMS = {"audio": 3, "text": 4, "visual": 5, "track": 5}


def _cfg(fusion, modalities=("track", "audio", "text", "visual"), content_context="causal", persistence=False,
         track_in_keys=False):
    return ModelConfig(modalities=list(modalities), input_dims=DIMS, grid_channels=2, grid_h=3, grid_w=4,
                       d_model=16, n_heads=2, n_layers=1, dim_ff=32, dropout=0.0, fusion=fusion, cell_dim=8,
                       content_context=content_context, persistence=persistence, track_in_keys=track_in_keys)


def _batch(b=2, t=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"audio": torch.randn(b, t, 3, generator=g), "text": torch.randn(b, t, 4, generator=g),
            "visual": torch.randn(b, t, 5, generator=g), "track": torch.randn(b, t, 5, generator=g),
            "grid": torch.randn(b, t, 12, 2, generator=g), "track_map": torch.rand(b, t, 12, generator=g),
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
    with pytest.raises(ValueError, match="content_context"):
        build_model(_cfg("gated", content_context="centred"))
    model = build_model(_cfg("gated", persistence=True))
    for bad in ({"prior": np.ones(5)}, {"prior": -np.ones(12)}, {"weight": 1.0}, {"sigma": 0.0}):
        with pytest.raises(ValueError, match="init_persistence"):
            model.init_persistence(**{"prior": None, "sigma": 0.05, "weight": 0.5, **bad})
    with pytest.raises(ValueError, match="no persistence path"):
        build_model(_cfg("gated")).init_persistence(prior=None, sigma=0.05, weight=0.5)
    for bad in ({"persistence_sigma": 0.0}, {"persistence_sigma": float("nan")}, {"persistence_prior_weight": 1.0},
                {"persistence_prior_weight": 0.0}, {"persistence": "yes"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            build_model(ModelConfig(**{**_cfg("gated").__dict__, **bad}))


# ------------------------------------------------------------------ the persistence path
@settings(max_examples=25, deadline=None)
@given(xy=st.lists(st.tuples(st.floats(-0.2, 1.2), st.floats(-0.2, 1.2)), min_size=6, max_size=6),
       w0=st.floats(0.05, 0.95), s0=st.floats(0.02, 0.3), flags=st.lists(st.booleans(), min_size=6, max_size=6))
def test_persistence_path_starts_at_the_persistence_mixture(xy, w0, s0, flags):
    """Started at a floor (prior, s0, w0) the map is (1 - w0) N(last gaze, s0) + w0 softmax(head + log prior)
    where the last gaze is known and in frame (the floor's form), and that map alone elsewhere."""
    from gazelib.model.floors import gaussian_cells

    torch.manual_seed(0)
    cfg = _cfg("gated", modalities=("track",), persistence=True)
    model = build_model(cfg).eval()
    prior = np.random.default_rng(0).uniform(0.1, 1.0, 12)
    model.init_persistence(prior=prior, sigma=s0, weight=w0)   # as training does from the train floor
    plain = build_model(_cfg("gated", modalities=("track",)))
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if not k.startswith(("persist_head", "prior_logit", "inout_floor_logit"))})
    plain.eval()
    batch = _batch(b=1, t=6)
    batch["track"][0, :, 0:2] = torch.tensor(xy, dtype=torch.float32)
    on = np.array(flags)
    batch["track"][0, :, 2] = torch.tensor(on, dtype=torch.float32)     # last gaze in frame, or out
    batch["track"][0, :, 4] = 1.0
    with torch.no_grad():
        p = torch.softmax(model(batch)["heatmap_logits"][0], -1).double().numpy()
        head = plain(batch)["heatmap_logits"][0] + torch.log(torch.tensor(prior / prior.sum(), dtype=torch.float32))
        base = torch.softmax(head, -1).double().numpy()
    g = gaussian_cells(xy=np.array(xy), gh=3, gw=4, sigma=s0)
    want = np.where(on[:, None], (1 - w0) * g + w0 * base, base)
    np.testing.assert_allclose(p, want, rtol=1e-4, atol=1e-6)


def test_persistence_path_is_off_without_a_track_and_in_content_variants():
    torch.manual_seed(0)
    model = build_model(_cfg("gated", persistence=True)).eval()
    assert model.use_persistence
    batch = _batch()
    batch["mask"][:, :, 3] = 0     # no track for this viewer: the last point must not matter
    moved = {**batch, "track": batch["track"].clone()}
    moved["track"][..., 0:2] += 0.3
    torch.testing.assert_close(model(batch)["heatmap_logits"], model(moved)["heatmap_logits"])
    assert not build_model(_cfg("gated", modalities=("audio", "visual"), persistence=True)).use_persistence


@settings(max_examples=50, deadline=None)
@given(xy=st.lists(st.tuples(st.floats(-0.5, 1.5), st.floats(-0.5, 1.5)), min_size=1, max_size=20))
def test_cell_target_is_the_one_hot_gaze_cell(xy):
    from gazelib.core.cells import cell_centres, gaze_cell
    from gazelib.model.train import heatmap_targets

    gaze = torch.tensor(xy, dtype=torch.float32)[None]
    centres = torch.tensor(cell_centres(9, 16), dtype=torch.float32)
    q = heatmap_targets(gaze, centres, 0.06, "cell")[0].numpy()
    np.testing.assert_array_equal(q.sum(1), 1.0)
    ok = np.abs(np.array(xy) * [16, 9] - np.round(np.array(xy) * [16, 9])).min(1) > 1e-3   # off cell borders
    np.testing.assert_array_equal(q.argmax(1)[ok], gaze_cell(np.array(xy), 9, 16)[ok])
    with pytest.raises(ValueError, match="heatmap_target"):
        heatmap_targets(gaze, centres, 0.06, "box")


# ------------------------------------------------------------------ no path from the future
GAZE_KEYS = ("track", "track_map")
CONTENT_KEYS = ("audio", "text", "visual", "grid")


def _perturb_after(batch, keys, t, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = {k: v.clone() for k, v in batch.items()}
    for k in keys:
        out[k][:, t + 1:] = torch.randn(out[k][:, t + 1:].shape, generator=g) * 3
    if "track" in keys:
        out["mask"][:, t + 1:, 3] = 1 - out["mask"][:, t + 1:, 3]  # the track's availability is gaze-derived too
    return out


def _assert_unchanged_upto(model, a, b, t):
    oa, ob = model(a), model(b)
    for k in ("heatmap_logits", "inout_logits"):
        assert (oa[k][:, :t + 1] - ob[k][:, :t + 1]).abs().max() <= 1e-6, k


@pytest.mark.parametrize("track_in_keys", [False, True])
@pytest.mark.parametrize("persistence", [False, True])
@pytest.mark.parametrize("content_context", CONTENT_CONTEXTS)
@pytest.mark.parametrize("fusion", FUSIONS)
def test_gaze_inputs_after_t_never_reach_the_output_at_t(fusion, content_context, persistence, track_in_keys):
    """Every fusion and option, with and without the persistence path, content-only cell keys or the
    last gaze's map in them (checkpoints before 0.4.0): the track path is causal."""
    torch.manual_seed(0)
    model = build_model(_cfg(fusion, content_context=content_context, persistence=persistence,
                             track_in_keys=track_in_keys)).eval()
    if persistence:  # random weights on the persistence head too (it starts constant)
        torch.nn.init.normal_(model.persist_head.weight, std=0.3)
    batch = _batch(t=9)
    batch["mask"][:, :, 3] = (torch.rand(2, 9) > 0.3).float()
    for t in (0, 3, 7):
        _assert_unchanged_upto(model, batch, _perturb_after(batch, GAZE_KEYS, t), t)
    # and the perturbation is not a no-op: later outputs do change
    out_a, out_b = model(batch), model(_perturb_after(batch, GAZE_KEYS, 3))
    assert (out_a["heatmap_logits"][:, 4:] - out_b["heatmap_logits"][:, 4:]).abs().max() > 1e-3


@pytest.mark.parametrize("fusion", FUSIONS)
def test_default_model_is_causal_for_content_too(fusion):
    torch.manual_seed(0)
    model = build_model(_cfg(fusion)).eval()
    batch = _batch(t=9)
    for t in (0, 4, 7):
        _assert_unchanged_upto(model, batch, _perturb_after(batch, CONTENT_KEYS, t), t)


def test_bidirectional_content_context_does_read_future_content():
    """The offline option is what it says (so the causal tests above can fail)."""
    torch.manual_seed(0)
    model = build_model(_cfg("gated", content_context="bidirectional")).eval()
    batch = _batch(t=9)
    oa, ob = model(batch), model(_perturb_after(batch, CONTENT_KEYS, 3))
    assert (oa["heatmap_logits"][:, :4] - ob["heatmap_logits"][:, :4]).abs().max() > 1e-4


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
        gaze_t = np.repeat(t[None], 2, 0) + rng.uniform(-0.04, 0.04, (2, n_t))  # labels from nearby samples
        arr = {"t": t, "audio": rng.normal(size=(n_t, 3)).astype(np.float32),
               "audio_columns": np.array(["a", "b", "c"]), "audio_kinds": np.array(["continuous"] * 3),
               "text": np.zeros((n_t, 4), np.float32), "text_columns": np.array([f"e{i}" for i in range(4)]),
               "text_kinds": np.array(["embedding"] * 4),
               "visual": rng.normal(size=(n_t, 3)).astype(np.float32), "visual_columns": np.array(["x", "y", "z"]),
               "visual_kinds": np.array(["continuous"] * 3), "grid": grid, "mask": np.ones((n_t, 4), bool),
               "gaze": gaze, "inout": np.ones((2, n_t), np.int8), "valid": np.ones((2, n_t), bool), "gaze_t": gaze_t,
               "viewers": np.array(["a", "b"])}
        f = root / f"v{v}.npz"
        write_npz(f, **arr)
        files.append((f, arr))
    stats = fit_norm_stats(videos=[a for _, a in files[:3]])
    index = {"length": {f.stem: n_t for f, _ in files}, "viewers": {f.stem: 2 for f, _ in files}}
    return [f for f, _ in files[:3]], [files[3][0]], index, stats


TRAIN_CFG = {"horizon_s": 0.5, "window_s": 3.0, "stride_s": 1.5, "batch_size": 4, "epochs": 3, "lr": 0.003,
             "weight_decay": 0.0, "patience": 10, "heatmap_sigma": 0.1, "lambda_heatmap": 1.0,
             "lambda_inout": 0.5, "num_threads": 1,
             "heatmap_target": "gaussian", "warmup_frac": 0.05, "grad_clip": 1.0,
             "horizons_sampled": None, "cache_videos": 64, "lambda_entropy": 0.0, "entropy_every": 10,
             "viewer_group": 2}
MODEL_CFG = {"d_model": 16, "n_heads": 2, "n_layers": 1, "dim_ff": 32, "dropout": 0.1, "fusion": "gated",
             "cell_dim": 8, "content_context": "causal"}


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
    # byte for byte too (DVC hashes the files): no temp-file name inside the archive
    assert (tmp_path / "a" / "best.pt").read_bytes() == (tmp_path / "b" / "best.pt").read_bytes()


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


def test_a_model_param_edited_since_the_last_run_starts_training_fresh(tmp_path, caplog):
    """latest.pt of another network (here: the last gaze's map in its keys, a 0.3 model) is not
    resumed: the run starts fresh and equals a run from scratch."""
    global MODEL_CFG
    saved = MODEL_CFG
    try:
        MODEL_CFG = {**saved, "track_in_keys": True}
        _train(tmp_path, tmp_path / "m", max_epochs=1)
    finally:
        MODEL_CFG = saved
    with caplog.at_level("INFO"):
        again = _train(tmp_path, tmp_path / "m", max_epochs=1)
    assert "starting fresh" in caplog.text
    fresh = _train(tmp_path, tmp_path / "fresh", max_epochs=1)
    assert [h["val_loss"] for h in again["history"]] == [h["val_loss"] for h in fresh["history"]]
    assert "track_proj" not in load_checkpoint(tmp_path / "m" / "latest.pt")["model"]


def test_a_checkpoint_of_the_unfused_optimizer_is_not_resumed(tmp_path, caplog):
    """latest.pt written before 0.6.0 (AdamW without the fused kernel; no ``optimizer`` in its
    metadata) is not resumed with the fused one: the run starts fresh and equals a run from scratch."""
    from gazelib.model.train import OPTIMIZER

    _train(tmp_path, tmp_path / "m", max_epochs=1)
    latest = tmp_path / "m" / "latest.pt"
    state = torch.load(latest, weights_only=False)
    assert state["meta"]["optimizer"] == OPTIMIZER
    del state["meta"]["optimizer"]
    torch.save(state, latest)
    with caplog.at_level("INFO"):
        again = _train(tmp_path, tmp_path / "m", max_epochs=1)
    assert "starting fresh" in caplog.text
    fresh = _train(tmp_path, tmp_path / "fresh", max_epochs=1)
    assert [h["val_loss"] for h in again["history"]] == [h["val_loss"] for h in fresh["history"]]


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


@pytest.mark.parametrize("fusion", FUSIONS)
def test_trained_checkpoint_is_leak_proof_through_the_data_path(tmp_path, fusion):
    """A trained checkpoint, loaded the way evaluate loads it, and the raw gaze after t - horizon
    replaced through prepare_arrays: the outputs at <= t do not move (evaluate's leak check)."""
    from gazelib.eval.evaluate import leak_check
    from gazelib.core.io import read_npz
    from gazelib.model.checkpoint import model_from_checkpoint

    train, val, index, stats = _synthetic_split(tmp_path)
    out = tmp_path / f"m_{fusion}"
    out.mkdir()
    train_variant(variant="multimodal", modalities=["track", "audio", "text", "visual"], train_files=train,
                  val_files=val, index=index, stats=stats, grid_shape=(2, 3, 4), fps=10.0, cfg=TRAIN_CFG,
                  model_cfg={**MODEL_CFG, "fusion": fusion}, out_dir=out, seed=0)
    model, _ = model_from_checkpoint(out / "best.pt")
    arrays = read_npz(val[0])
    res = leak_check(model=model, arrays=arrays, video_id="v3", stats=stats, cfg=TRAIN_CFG, fps=10.0,
                     grid_hw=(3, 4), n_positions=5)
    assert res["max_abs_dlogit"] <= 1e-6 and res["max_prob_mass_moved"] <= 1e-6, res


def test_leak_check_detects_a_leaky_model(tmp_path, monkeypatch):
    """The check has teeth: without the causal mask the same perturbation moves the output."""
    from gazelib.eval.evaluate import leak_check
    from gazelib.core.io import read_npz

    train, val, index, stats = _synthetic_split(tmp_path)
    model = build_model(ModelConfig(modalities=["track", "audio"], input_dims={"audio": 3, "text": 4, "visual": 7,
                                                                              "track": 5},
                                    grid_channels=2, grid_h=3, grid_w=4, d_model=16, n_heads=2, n_layers=1,
                                    dim_ff=32, dropout=0.0, cell_dim=8)).eval()
    orig = torch.nn.TransformerEncoder.forward
    monkeypatch.setattr(torch.nn.TransformerEncoder, "forward",
                        lambda self, src, mask=None, **kw: orig(self, src, mask=None, **kw))
    res = leak_check(model=model, arrays=read_npz(val[0]), video_id="v3", stats=stats, cfg=TRAIN_CFG, fps=10.0,
                     grid_hw=(3, 4))
    assert res["max_abs_dlogit"] > 1e-4


def test_horizon_under_one_step_is_refused():
    from gazelib.data.dataset import check_horizon

    assert check_horizon(horizon_s=1.0, fps=10.0) == 10
    assert check_horizon(horizon_s=0.15, fps=10.0) == 2   # rounds up: never less than the horizon
    for bad in (0.0, 0.04, -1.0):
        with pytest.raises(ValueError, match="less than one step"):
            check_horizon(horizon_s=bad, fps=10.0)


def test_entropy_regulariser_raises_the_bias_entropy(tmp_path):
    """lambda_entropy > 0 trains the map for content-free input towards uniform; 0 leaves training alone."""
    from gazelib.model.bias import content_free_batch, bias_diagnostic
    from gazelib.model.checkpoint import model_from_checkpoint

    from gazelib.core.io import read_npz

    train, val, index, stats = _synthetic_split(tmp_path)
    for f in train + val:  # viewers who mostly look at one place: a strong learnt bias
        a = read_npz(f)
        a["gaze"][:, : a["t"].size * 3 // 4] = np.float32([0.15, 0.2])
        write_npz(f, **a)
    # content-free clips in the synthetic data's own feature space: flat features, no track

    blank = read_npz(train[0])
    n_t = blank["t"].size
    blank.update({"audio": np.zeros_like(blank["audio"]), "visual": np.zeros_like(blank["visual"]),
                  "grid": np.zeros_like(blank["grid"]), "mask": np.tile([True, False, True, False], (n_t, 1)),
                  "viewers": np.array(["none"]), "gaze": blank["gaze"][:1], "inout": blank["inout"][:1],
                  "valid": np.zeros((1, n_t), bool), "gaze_t": blank["gaze_t"][:1]})
    write_npz(tmp_path / "grey.npz", **blank)
    entropies = {}
    for lam in (0.0, 1.0):
        out = tmp_path / f"lam{lam}"
        out.mkdir()
        cfg = {**TRAIN_CFG, "epochs": 12, "lr": 0.01, "lambda_entropy": lam, "entropy_every": 1}
        res = train_variant(variant="multimodal", modalities=["track", "audio", "visual"], train_files=train,
                            val_files=val, index=index, stats=stats, grid_shape=(2, 3, 4), fps=10.0, cfg=cfg,
                            model_cfg=MODEL_CFG, out_dir=out, seed=0, bias_inputs=[tmp_path / "grey.npz"])
        assert ("train_bias_entropy_bits" in res["history"][-1]) == (lam > 0)
        model, _ = model_from_checkpoint(out / "latest.pt")
        batch = content_free_batch(files=[tmp_path / "grey.npz"], stats=stats, cfg=cfg, fps=10.0, grid_hw=(3, 4))
        entropies[lam] = bias_diagnostic(model=model, batch=batch, gh=3, gw=4, names=["grey"])["entropy_bits"]
    assert entropies[1.0] > entropies[0.0] + 0.05, entropies
    with pytest.raises(ValueError, match="bias_inputs"):
        train_variant(variant="multimodal", modalities=["track", "audio", "visual"], train_files=train,
                      val_files=val, index=index, stats=stats, grid_shape=(2, 3, 4), fps=10.0,
                      cfg={**TRAIN_CFG, "lambda_entropy": 1.0, "entropy_every": 1}, model_cfg=MODEL_CFG,
                      out_dir=tmp_path / "none", seed=0)


def test_persistence_path_exports_to_onnx_with_parity(tmp_path):
    """The path is plain tensor algebra: the ONNX export of a track model with it agrees with PyTorch."""
    from gazelib.model.onnx_export import OnnxGazeModel, export_model, parity, random_windows

    torch.manual_seed(0)
    cfg = _cfg("gated", modalities=("track", "audio"), persistence=True)
    model = build_model(cfg).eval()
    model.init_persistence(prior=np.linspace(1, 2, 12), sigma=0.08, weight=0.3)
    torch.nn.init.normal_(model.persist_head.weight, std=0.3)
    export_model(model=model, out_path=tmp_path / "m.onnx", metadata={"variant": "v", "seed": 0}, window=20,
                 check=False)
    conf = {"modalities": ["track", "audio"], "input_dims": DIMS, "grid_channels": 2, "grid_h": 3, "grid_w": 4}
    batches = [random_windows(config=conf, batch=b, steps=t, seed=s) for b, t, s in ((1, 3, 5), (3, 37, 6))]
    for b in batches:   # known, in-frame last points on most steps, so the path is exercised
        b["track"][..., 0:2] = torch.rand(b["track"][..., 0:2].shape)
        b["track"][..., 2] = (torch.rand(b["track"].shape[:2]) > 0.2).float()
        b["track"][..., 4] = 1.0
    p = parity(model=model, onnx_model=OnnxGazeModel(tmp_path / "m.onnx", threads=1), batches=batches)
    assert p["max_abs_dprob"] <= 1e-4 and p["max_abs_dp_in"] <= 1e-4, p


def test_the_floor_start_gives_the_floors_in_frame_probability_by_the_last_gaze_state():
    """init_persistence with the floor's p(in | last gaze in, out, none): before any training the flag is
    the floor's, whatever the content; the in/out head then learns on top of it."""
    torch.manual_seed(3)
    model = build_model(_cfg("gated", persistence=True)).eval()
    p_in = [0.97, 0.4, 0.8]
    model.init_persistence(prior=None, sigma=0.1, weight=0.5, p_in=p_in)
    batch = _batch(b=3, t=5)
    batch["track"][0, :, 2], batch["track"][0, :, 4] = 1.0, 1.0     # last gaze known, in frame
    batch["track"][1, :, 2], batch["track"][1, :, 4] = 0.0, 1.0     # known, out of frame
    batch["track"][2, :, 4] = 0.0                                   # none
    batch["mask"][2, :, 3] = 0.0
    got = torch.sigmoid(model(batch)["inout_logits"])
    for row, want in enumerate(p_in):
        torch.testing.assert_close(got[row], torch.full((5,), want), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="3 probabilities"):
        model.init_persistence(prior=None, sigma=0.1, weight=0.5, p_in=[0.5, 1.0, 0.5])


def test_a_persistence_checkpoint_without_the_inout_floor_loads_as_it_predicted(tmp_path):
    """A track model saved before 0.7.0 has no in/out floor term: it loads with that term at zero, so its
    flag is what its own head gave."""
    from gazelib.model.checkpoint import CHECKPOINT_TYPE, model_from_checkpoint
    from dataclasses import asdict

    torch.manual_seed(4)
    model = build_model(_cfg("gated", persistence=True)).eval()
    weights = {k: v for k, v in model.state_dict().items() if k != "inout_floor_logit"}
    torch.save({"type": CHECKPOINT_TYPE, "meta": {"model_config": asdict(model.cfg)}, "model": weights},
               tmp_path / "old.pt")
    loaded, _ = model_from_checkpoint(tmp_path / "old.pt")
    batch = _batch()
    assert torch.equal(loaded.inout_floor_logit, torch.zeros(3))
    torch.testing.assert_close(loaded(batch)["inout_logits"], model(batch)["inout_logits"])
