"""A window's content is computed once for all its viewers in a batch (``content_index``): the model
gives each item the numbers it gives the same item with the content repeated, the batch order groups
viewers of a window, and checkpoints from before 0.4.0 (the last gaze's map in the keys) still load
and predict as they did."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gazelib.data.dataset import CONTENT_KEYS, block_order, window_batch, window_major
from gazelib.model.net import ModelConfig, build_model
from tests.test_dataset import _corpus, _windows

VARIANTS = [("track",), ("track", "visual"), ("track", "audio", "text", "visual"), ("audio", "text", "visual"),
            ("audio", "text")]


def _model_for(ds, modalities, **kw):
    from gazelib.data.dataset import feature_dims

    torch.manual_seed(0)
    cfg = ModelConfig(modalities=list(modalities), input_dims=feature_dims(ds.stats), grid_channels=4, grid_h=3,
                      grid_w=5, d_model=16, n_heads=2, dim_ff=32, cell_dim=8, persistence=True, **kw)
    return build_model(cfg).eval()


def _repeated(batch: dict) -> dict:
    """The same batch with every item's content row repeated (no content_index)."""
    ci = batch["content_index"]
    out = {k: v for k, v in batch.items() if k != "content_index"}
    for k in CONTENT_KEYS:
        out[k] = batch[k].index_select(0, ci)
    return out


@pytest.mark.parametrize("modalities", VARIANTS)
@pytest.mark.parametrize("track_in_keys", [False, True])
def test_shared_content_gives_each_item_the_numbers_of_its_repeated_content(tmp_path, modalities, track_in_keys):
    vids, stats = _corpus(tmp_path)
    ds = _windows(sorted(tmp_path.glob("*.npz")), vids, stats)
    model = _model_for(ds, modalities, track_in_keys=track_in_keys)
    orders = {"window-major (rectangular)": window_major(ds.index)[:12],    # v0: 4 windows x 3 viewers
              "grouped, uneven": block_order(ds.index, block=3, seed=1, epoch=0, group=2)[:11]}
    for name, idx in orders.items():
        batch = ds.batch(idx)
        assert "content_index" in batch, name
        u = int(batch["content_index"].max()) + 1
        assert all(batch[k].shape[0] == u < len(idx) for k in CONTENT_KEYS), name
        with torch.no_grad():
            shared, plain = model(batch), model(_repeated(batch))
        for k in shared:
            torch.testing.assert_close(shared[k], plain[k], rtol=1e-5, atol=1e-5,
                                       msg=lambda m, name=name, k=k: f"{name}: {k}: {m}")
    # training mode: the gradients agree too (the embeddings' dropout off, so that both see the same
    # numbers; the attention's dropout draws the same masks from the same seed)
    model.train()
    for mod in model.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
    batch = ds.batch(window_major(ds.index)[:12])
    grads = []
    for b in (batch, _repeated(batch)):
        model.zero_grad()
        torch.manual_seed(1)
        out = model(b)
        (out["heatmap_logits"].logsumexp(-1).mean() + out["heatmap_logits"][..., 3].mean()
         + out["inout_logits"].mean()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n in grads[0]:
        scale = float(grads[1][n].abs().max())
        torch.testing.assert_close(grads[0][n], grads[1][n], rtol=1e-4, atol=1e-5 * max(scale, 1e-3),
                                   msg=lambda m, n=n: f"{n}: {m}")


def test_batches_of_distinct_windows_carry_no_content_index(tmp_path):
    vids, stats = _corpus(tmp_path)
    ds = _windows(sorted(tmp_path.glob("*.npz")), vids, stats)
    first_viewer = [i for i, (_, v, _) in enumerate(ds.index) if v == 0][:6]
    assert "content_index" not in ds.batch(first_viewer)


def test_the_track_map_enters_the_cell_scores_through_a_gain_that_starts_at_zero(tmp_path):
    """Content-only keys (the default): the last gaze's map adds a_t m_{t,c} to the cell scores, a_t
    starting at 0 (the model starts at the persistence floor); a trained gain makes the map count."""
    vids, stats = _corpus(tmp_path)
    ds = _windows(sorted(tmp_path.glob("*.npz")), vids, stats)
    batch = ds.batch(window_major(ds.index)[:12])
    other = dict(batch, track_map=torch.rand_like(batch["track_map"]))
    model = _model_for(ds, ("track", "visual"))
    assert model.track_proj is None and model.track_gain is not None
    with torch.no_grad():
        assert torch.equal(model(batch)["heatmap_logits"], model(other)["heatmap_logits"])
        torch.nn.init.normal_(model.track_gain.weight, std=0.5)
        assert not torch.allclose(model(batch)["heatmap_logits"], model(other)["heatmap_logits"])


def test_a_checkpoint_without_track_in_keys_loads_as_the_model_it_was(tmp_path):
    """A 0.3 checkpoint (its model_config has no track_in_keys, its weights a track_proj) loads with
    the last gaze's map in its keys, and predicts exactly as the model it was saved from."""
    from dataclasses import asdict

    from gazelib.model.checkpoint import model_from_checkpoint, save_checkpoint

    vids, stats = _corpus(tmp_path)
    ds = _windows(sorted(tmp_path.glob("*.npz")), vids, stats)
    old = _model_for(ds, ("track", "visual"), track_in_keys=True)
    assert old.track_proj is not None
    cfg = asdict(old.cfg)
    del cfg["track_in_keys"]
    opt = torch.optim.AdamW(old.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    save_checkpoint(tmp_path / "old.pt", model=old, optimizer=opt, scheduler=sched, epoch=0, best=1.0, bad_epochs=0,
                    meta={"variant": "v", "modalities": ["track", "visual"], "model_config": cfg}, history=[])
    loaded, _ = model_from_checkpoint(tmp_path / "old.pt")
    assert loaded.cfg.track_in_keys is True
    batch = ds.batch(list(range(10)))
    with torch.no_grad():
        assert torch.equal(loaded.eval()(batch)["heatmap_logits"], old(batch)["heatmap_logits"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 6), st.integers(1, 5)), min_size=1, max_size=5),
       st.integers(1, 5), st.integers(1, 4), st.integers(0, 1000))
def test_block_order_visits_every_window_once_with_its_viewers_in_groups(videos, group, block, seed):
    """Every (video, viewer, start) exactly once per epoch; with group > 1 the items come in runs of at
    most ``group`` viewers of one window, and a window's viewers fill whole groups before a partial
    one; group 1 is the order before 0.4.0."""
    index = [(f"v{k}", v, s * 10) for k, (_, n_win, n_view) in enumerate(videos)
             for v in range(n_view) for s in range(n_win)]
    order = block_order(index, block=block, seed=seed, epoch=2, group=group)
    assert sorted(order) == list(range(len(index)))
    if group == 1:
        return
    runs, k = [], 0
    while k < len(order):   # split into runs of one window
        key = index[order[k]][::2]
        j = k
        while j < len(order) and index[order[j]][::2] == key and j - k < group:
            j += 1
        runs.append((key, j - k))
        k = j
    sizes: dict = {}
    for key, n in runs:
        sizes.setdefault(key, []).append(n)
    n_view = {f"v{k}": nv for k, (_, _, nv) in enumerate(videos)}
    for (vid, _), ns in sizes.items():
        assert sum(ns) == n_view[vid]
        assert sorted(ns, reverse=True) == [min(group, n_view[vid] - group * i) for i in range(len(ns))]


def test_block_order_rejects_a_group_below_one():
    with pytest.raises(ValueError, match="viewer_group"):
        block_order([("v", 0, 0)], block=1, seed=0, epoch=0, group=0)


def test_window_major_puts_a_windows_viewers_side_by_side():
    index = [(vid, v, s) for vid in ("a", "b") for v in range(3) for s in (0, 5, 10)]
    order = window_major(index)
    assert [index[i] for i in order[:3]] == [("a", 0, 0), ("a", 1, 0), ("a", 2, 0)]
    assert sorted(order) == list(range(len(index)))


def test_window_batch_stacks_each_window_once():
    from gazelib.data.dataset import VideoTensors

    n, cells = 12, 6
    rng = np.random.default_rng(0)
    vt = VideoTensors(video_id="v", t=np.arange(n) / 10, audio=rng.normal(size=(n, 2)).astype(np.float32),
                      text=rng.normal(size=(n, 3)).astype(np.float32), visual=rng.normal(size=(n, 4)).astype(np.float32),
                      grid=rng.normal(size=(n, cells, 2)).astype(np.float32), mask=np.ones((n, 4), bool),
                      gaze=rng.uniform(size=(3, n, 2)).astype(np.float32), inout=np.ones((3, n), np.int8),
                      valid=np.ones((3, n), bool), track=rng.uniform(size=(3, n, 5)).astype(np.float32),
                      track_map=rng.uniform(size=(3, n, cells)).astype(np.float32), track_src=np.zeros((3, n), int),
                      viewers=["a", "b", "c"])
    items = [(vt, 0, 0), (vt, 1, 0), (vt, 2, 4), (vt, 0, 4), (vt, 2, 0)]
    b = window_batch(items, 6)
    assert b["content_index"].tolist() == [0, 0, 1, 1, 0]
    assert b["grid"].shape[0] == b["audio"].shape[0] == 2
    np.testing.assert_array_equal(b["audio"][1].numpy(), vt.audio[4:10])
    np.testing.assert_array_equal(b["track"][4].numpy(), vt.track[2, 0:6])
