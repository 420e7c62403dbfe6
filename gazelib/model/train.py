"""Training: heatmap + in/out loss, AdamW with warm-up and cosine decay, early stopping,
checkpoints with metadata, resume, dvclive curves.

Loss per batch, over non-padded steps:

    L = lambda_heatmap * mean_{valid, in-frame} CE(q_t, softmax(s_t)) + lambda_inout * mean_{valid} BCE(o_t, inout_t)

with q_t the target over the grid cells (``heatmap_target``): ``cell``, the one-hot cell the gaze
falls in (the loss is then the log-likelihood of the gaze cell, what the floors are fitted by and
information gain scores), or ``gaussian``, a Gaussian (``heatmap_sigma``) around the gaze normalised
to sum 1 (the minimiser of CE against a blurred target is the gaze distribution blurred once more by
``heatmap_sigma``, so the map comes out wider than the gaze; docs/model.md).

Under ``torchrun`` the same loop runs data-parallel (``gazelib.model.distributed``): the model in DDP, each
rank a shard of every epoch's order, losses averaged over all ranks' batches so every rank takes the
same early-stopping decision, and rank 0 alone writing checkpoints, metrics and dvclive.

Which epoch is kept (``best.pt``): the one with the lowest validation loss, and for a track variant
that starts at the persistence floor (``model.persistence``, ``train.floor_guard``) that start is a
candidate too, and an epoch replaces it only if on val it is no worse than the start on either
primary metric: heatmap loss (the gaze cell's likelihood, IG's side) and ``auc_vat``
(:func:`val_auc_vat`). Training maximises the likelihood alone, and an epoch can gain likelihood on
val while it ranks the cells worse than the floor (docs/model.md).
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from gazelib import __version__
from gazelib.data.dataset import GazeWindows, block_order, feature_dims, window_major
from gazelib.model.distributed import Dist, current, init_from_env, ordered_mean
from gazelib.core.io import write_json, write_text
from gazelib.core.cells import cell_centres
from gazelib.core.normalize import stats_hash
from gazelib.model.checkpoint import load_checkpoint, save_checkpoint
from gazelib.model.net import ModelConfig, build_model
from gazelib.core.layout import (
    ALIGNED_FEATURE_PARAMS,
    CURVES,
    train_metrics,
    FLOORS,
    RESERVED_ROWS,
    TIMING,
    corpus_synthetic,
    index_grid,
    index_maps,
    read_index,
    read_norm_stats,
    split_files,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    # what torch.use_deterministic_algorithms(True, warn_only=True) sets for eager ops; the public call
    # also imports torch._inductor to set its config flag (torch.compile is not used here), 2-4 s in
    # every training process
    torch._C._set_deterministic_algorithms(True, warn_only=True)
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = False



HEATMAP_TARGETS = ("cell", "gaussian")
# torch's fused AdamW kernel: its square root is the CPU's own (IEEE, the same last bit everywhere); the
# default AdamW takes torch.sqrt, MKL's vector math, whose last bit depends on the CPU vendor
# (gazelib.core.cpu.VENDOR_DEPENDENT_TORCH_OPS): the same run trained other weights on an Intel CPU
OPTIMIZER = "adamw-fused"


def build_optimizer(model: torch.nn.Module, cfg: dict) -> torch.optim.Optimizer:
    """AdamW (``train.lr``, ``train.weight_decay``) through torch's fused kernel (:data:`OPTIMIZER`)."""
    return torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"], fused=True)


def heatmap_targets(gaze: torch.Tensor, centres: torch.Tensor, sigma: float, kind: str = "gaussian") -> torch.Tensor:
    """[B,T,2] gaze -> [B,T,cells] target distribution (sum 1): a Gaussian of width ``sigma``
    around the gaze (``gaussian``), or the one-hot cell it falls in (``cell``, clipped into the frame
    as :func:`gazelib.metrics.gaze_cell`). The torch twin of the numpy Gaussians over the cells
    (:func:`gazelib.core.cells.centre_sq_dists`, :func:`gazelib.core.cells.gaussian_log_kernel`)."""
    d2 = ((gaze.unsqueeze(-2) - centres) ** 2).sum(-1)
    if kind == "cell":   # the nearest centre is the cell the point falls in (clipped outside the frame)
        return F.one_hot(torch.nan_to_num(d2, nan=0.0).argmin(-1), centres.shape[0]).to(gaze.dtype)
    if kind != "gaussian":
        raise ValueError(f"train.heatmap_target {kind!r} unknown; choose one of {HEATMAP_TARGETS}")
    return torch.softmax(-d2 / (2 * sigma ** 2), dim=-1)


def warmup_steps(*, steps: int, frac: float) -> int:
    """Optimiser steps of the linear learning-rate warm-up: ``train.warmup_frac`` of ``steps``, at
    least one (``frac`` 0.05 gives ``steps // 20`` exactly; the 1e-9 absorbs float error)."""
    return max(1, math.floor(steps * frac + 1e-9))


def compute_loss(out: dict, batch: dict, centres: torch.Tensor, cfg: dict) -> tuple[torch.Tensor, dict]:
    keep = (~batch["pad"]) & batch["valid"]
    inframe = keep & (batch["inout"] > 0.5)
    target = heatmap_targets(batch["gaze"], centres, cfg["heatmap_sigma"], cfg["heatmap_target"])
    ce = -(target * F.log_softmax(out["heatmap_logits"], -1)).sum(-1)
    hm = ce[inframe].mean() if inframe.any() else ce.sum() * 0
    bce = F.binary_cross_entropy_with_logits(out["inout_logits"], batch["inout"], reduction="none")
    io = bce[keep].mean() if keep.any() else bce.sum() * 0
    loss = cfg["lambda_heatmap"] * hm + cfg["lambda_inout"] * io
    return loss, {"loss": loss.item(), "heatmap_ce": hm.item(), "inout_bce": io.item()}


def model_inputs(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


def make_model_config(*, variant: str, modalities: list[str], stats: dict, grid_shape: tuple[int, int, int],
                      model_cfg: dict) -> ModelConfig:
    _, gh, gw = grid_shape
    # channel count from the data the stats were fitted on, so params edited after align cannot disagree
    return ModelConfig(modalities=list(modalities), input_dims=feature_dims(stats), grid_channels=len(stats["grid"]["mean"]),
                       grid_h=gh, grid_w=gw, **model_cfg, extra={"variant": variant})



def train_variant(*, variant: str, modalities: list[str], train_files: list[Path], val_files: list[Path],
                  index: dict, stats: dict, grid_shape: tuple[int, int, int], fps: float, cfg: dict,
                  model_cfg: dict, out_dir: Path, seed: int, live=None, max_epochs: int | None = None,
                  dist: Dist | None = None, bias_inputs: list[Path] | None = None,
                  persistence_init: dict | None = None, progress: bool = True) -> dict:
    """Train one variant; writes ``best.pt`` and ``latest.pt`` in ``out_dir``; resumes from latest.

    ``dist``: the process group (default: the one this process joined, else a single process). All
    ranks seed alike and consume the RNG alike (equal batch shapes), so rank 0's saved state is
    every rank's and resume restores it on all of them.

    With ``cfg['lambda_entropy']`` > 0 the content-free clips ``bias_inputs`` (see
    :mod:`gazelib.model.bias`) are one extra batch: every ``entropy_every`` optimiser steps the loss gains
    ``lambda_entropy * -H(bias map)``, pushing the prediction for no content towards uniform.

    ``persistence_init``: the floors fitted on train (``models/floors/floors.json``); a model with the
    persistence path starts at that floor (its width, weight and centre prior), see
    :meth:`gazelib.model.net.GazeTransformer.init_persistence`. ``progress``: a bar per epoch (off when
    seeds train side by side: their bars would interleave; each epoch's losses are logged either way)."""
    from tqdm import tqdm

    d = dist or current()
    if cfg["heatmap_target"] not in HEATMAP_TARGETS:
        raise ValueError(f"{variant}: train.heatmap_target {cfg['heatmap_target']!r} unknown; "
                         f"choose one of {HEATMAP_TARGETS}")
    seed_everything(seed)
    torch.set_num_threads(cfg["num_threads"])
    device = d.device
    gh, gw = grid_shape[1:]
    ds_args = dict(stats=stats, cfg=cfg, grid_hw=(gh, gw), fps=fps, lengths=index["length"],
                   n_viewers=index["viewers"])
    cache = cfg["cache_videos"]
    train_ds = GazeWindows(files=train_files, cache_size=cache, sample_horizons=cfg["horizons_sampled"],
                           horizon_seed=seed, **ds_args)   # sampled horizons: docs/horizons.md
    val_ds = GazeWindows(files=val_files, stride_s=cfg["window_s"], cache_size=cache, **ds_args)
    if len(train_ds) == 0:
        raise ValueError(f"{variant}: no training windows (no train videos with viewers)")
    mcfg = make_model_config(variant=variant, modalities=modalities, stats=stats, grid_shape=grid_shape,
                             model_cfg=model_cfg)
    model = build_model(mcfg)
    if model.use_persistence and persistence_init is not None:
        pf = persistence_init["persistence"]
        model.init_persistence(prior=persistence_init["prior"], sigma=pf["sigma"], weight=pf["w"],
                               p_in=pf.get("p_in_given_last_in_out_none"))
        log.info("%s: persistence path starts at the train floor (sigma %g, prior weight %g)", variant,
                 pf["sigma"], pf["w"])
    model = model.to(device)
    opt = build_optimizer(model, cfg)
    epochs = cfg["epochs"]
    local_bs = d.local_batch(cfg["batch_size"])  # windows per rank and step; batch_size in one process
    n_batches = math.ceil(math.ceil(len(train_ds) / d.world) / local_bs)  # steps per epoch, on every rank
    steps = max(1, epochs * n_batches)
    warm = warmup_steps(steps=steps, frac=cfg["warmup_frac"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    centres = torch.tensor(cell_centres(gh, gw), dtype=torch.float32, device=device)
    meta = {"variant": variant, "modalities": list(modalities), "model_config": asdict(mcfg),
            "norm_stats_hash": stats_hash(stats), "gazelib_version": __version__, "fps": fps,
            "train_cfg": cfg, "seed": seed, "optimizer": OPTIMIZER}
    if d.active:
        meta["world_size"] = d.world
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    start_epoch, best, bad, history = 0, float("inf"), 0, []
    floor_val = None   # the floor start's val heatmap loss and auc_vat, under train.floor_guard
    latest = out_dir / "latest.pt"
    if latest.exists():
        state = load_checkpoint(latest, expect={"variant": variant, "modalities": list(modalities),
                                                "norm_stats_hash": meta["norm_stats_hash"]})
        # the same train params, network and update rule (a model param edited since, or a checkpoint
        # of the unfused AdamW before 0.6.0: start fresh)
        if (state["meta"].get("train_cfg") == cfg and state["meta"].get("model_config") == meta["model_config"]
                and state["meta"].get("optimizer") == OPTIMIZER):
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            if "scaler" in state and scaler.is_enabled():
                scaler.load_state_dict(state["scaler"])
                torch.cuda.set_rng_state(state["rng_cuda"], device)
            torch.set_rng_state(state["rng_torch"])
            ns = json.loads(state["rng_numpy"])
            np.random.set_state((ns[0], np.array(ns[1], dtype=np.uint32), ns[2], ns[3], ns[4]))
            start_epoch, best, bad = state["epoch"] + 1, state["best"], state["bad_epochs"]
            history = json.loads(state["history"])
            floor_val = json.loads(state["floor_val"]) if "floor_val" in state else None
            log.info("%s: resumed from %s at epoch %d (saved by %d process(es), now %d)", variant, latest,
                     start_epoch, state["meta"].get("world_size", 1), d.world)
        else:
            log.info("%s: %s was trained with other train or model params; starting fresh", variant, latest)
    bias_batch = None
    if cfg["lambda_entropy"] > 0:
        from gazelib.model.bias import content_free_batch, entropy_penalty

        if not bias_inputs:
            raise ValueError(f"{variant}: train.lambda_entropy > 0 needs the content-free inputs (stage bias_inputs)")
        bias_batch = model_inputs(content_free_batch(files=bias_inputs, stats=stats, cfg=cfg, fps=fps,
                                                     grid_hw=(gh, gw)), device)
    net = d.wrap(model)  # DDP under torchrun (after resume: it broadcasts rank 0's weights); else model
    if start_epoch == 0 and persistence_init is not None and model.use_persistence:
        # the starting point (the train floor) is a candidate too: an epoch must beat it on val to replace it
        init = validation_loss(model, val_ds, centres, cfg, device, d)
        if np.isfinite(init["loss"]):
            best = init["loss"]
            if cfg["floor_guard"]:   # ... and not lose to it on either primary metric (module docstring)
                floor_val = {"val_heatmap_ce": init["heatmap_ce"], "val_auc_vat": val_auc_vat(model, val_ds, cfg, device)}
            if d.main:
                save_checkpoint(out_dir / "best.pt", model=model, optimizer=opt, scheduler=sched, epoch=-1,
                                best=best, bad_epochs=0, meta=meta, history=history, scaler=scaler,
                                floor_val=floor_val)
            log.info("%s: val loss %.4f at the persistence floor (the start)%s", variant, init["loss"],
                     f", val auc_vat {floor_val['val_auc_vat']:.4f}" if floor_val else "")
            if floor_val and not np.isfinite(floor_val["val_auc_vat"]):
                log.warning("%s: no in-frame gaze on the val videos: train.floor_guard compares the heatmap "
                            "loss only", variant)
    t_start = time.time()
    n_samples: float = 0
    stop_at = epochs if max_epochs is None else min(epochs, max_epochs)
    for epoch in range(start_epoch, stop_at):
        if bad >= cfg["patience"]:
            break
        net.train()
        order = d.shard(block_order(train_ds.index, block=cache, seed=seed, epoch=epoch, group=int(cfg["viewer_group"])))
        tr = []
        for i_batch, batch in enumerate(tqdm(train_ds.batches(order, local_bs), total=n_batches,
                                             desc=f"{variant} seed {seed} epoch {epoch}", leave=False,
                                             disable=not (d.main and progress))):
            batch = model_inputs(batch, device)
            # a second forward in the same step must call `model` (the plain module), not `net`
            with torch.autocast(device_type=device.type, enabled=device.type == "cuda"):
                out = net(batch)
            loss, parts = compute_loss({k: v.float() for k, v in out.items()}, batch, centres, cfg)
            if bias_batch is not None and sched.last_epoch % max(1, int(cfg["entropy_every"])) == 0:
                penalty, parts["bias_entropy_bits"] = entropy_penalty(model=model, batch=bias_batch)
                loss = loss + cfg["lambda_entropy"] * penalty
                parts["loss"] = loss.item()
            check_finite(parts, where=f"{variant} seed {seed}: training, epoch {epoch}, batch {i_batch}"
                                      + (f" of rank {d.rank}" if d.active else ""))
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
            scaler.step(opt)
            scaler.update()
            sched.step()
            tr.append(parts)
            n_samples += batch["pad"].shape[0]
        val = validation_loss(model, val_ds, centres, cfg, device, d)
        row = {"epoch": epoch, "train_loss": ordered_mean(d.gather([p["loss"] for p in tr])),
               **{f"val_{k}": v for k, v in val.items()}}
        if bias_batch is not None:
            row["train_bias_entropy_bits"] = float(np.mean([p["bias_entropy_bits"] for p in tr
                                                            if "bias_entropy_bits" in p]))
        history.append(row)
        if live is not None:
            for k, v in row.items():
                if k != "epoch":
                    live.log_metric(k, v)
            live.next_step()
        if len(val_ds):
            check_finite(val, where=f"{variant} seed {seed}: validation after epoch {epoch} (mean over "
                                    f"{len(val_ds)} windows)")
        elif epoch == start_epoch:
            log.warning("%s: no validation windows: early stopping follows the training loss", variant)
        score = val["loss"] if len(val_ds) else row["train_loss"]
        improved = score < best - 1e-4
        if improved and floor_val is not None:
            ranked = np.isfinite(floor_val["val_auc_vat"])   # NaN: no in-frame val sample to rank
            row["val_auc_vat"] = val_auc_vat(model, val_ds, cfg, device) if ranked else float("nan")
            improved = (val["heatmap_ce"] <= floor_val["val_heatmap_ce"]
                        and (not ranked or row["val_auc_vat"] >= floor_val["val_auc_vat"]))
            if not improved:
                log.info("%s epoch %d: val loss %.4f is lower, but against the floor start val heatmap loss "
                         "%.4f vs %.4f, auc_vat %.4f vs %.4f: the start stays kept", variant, epoch, score,
                         val["heatmap_ce"], floor_val["val_heatmap_ce"], row["val_auc_vat"], floor_val["val_auc_vat"])
        best, bad = (score, 0) if improved else (best, bad + 1)
        if improved and d.main:
            save_checkpoint(out_dir / "best.pt", model=model, optimizer=opt, scheduler=sched, epoch=epoch,
                            best=best, bad_epochs=bad, meta=meta, history=history, scaler=scaler,
                            floor_val=floor_val)
        if d.main:
            save_checkpoint(latest, model=model, optimizer=opt, scheduler=sched, epoch=epoch, best=best,
                            bad_epochs=bad, meta=meta, history=history, scaler=scaler,
                            floor_val=floor_val)
        log.info("%s epoch %d: train %.4f val %.4f%s", variant, epoch, row["train_loss"], val["loss"],
                 " (best)" if improved else "")
    wall = time.time() - t_start
    n_samples = d.total(n_samples) if d.active else n_samples
    if d.main and not (out_dir / "best.pt").exists() and latest.exists():
        (out_dir / "best.pt").write_bytes(latest.read_bytes())
    d.barrier()  # the other ranks return once rank 0's files are complete
    # the epoch best.pt holds (-1: the floor start, no trained epoch beat it on val)
    kept = load_checkpoint(out_dir / "best.pt")["epoch"] if (out_dir / "best.pt").exists() else None
    return {"variant": variant, "epochs_run": len(history), "kept_epoch": kept, "best_val_loss": best,
            "history": history,
            "train_windows": len(train_ds), "val_windows": len(val_ds), "wall_s": wall,
            "samples_per_s": n_samples / wall if wall > 0 else 0.0, "device": device.type,
            "n_params": sum(p.numel() for p in model.parameters()), "world_size": d.world}


def check_finite(parts: dict, *, where: str) -> None:
    """Stop on a non-finite loss (or loss part), naming where it happened: a NaN would otherwise
    train on, or pass for 'no validation data' in early stopping."""
    bad = {k: v for k, v in parts.items() if not np.isfinite(v)}
    if bad:
        raise FloatingPointError(f"{where}: non-finite loss {bad}; training stopped (check the inputs of this "
                                 "batch for NaN/inf and train.lr)")


def check_modalities_have_data(*, variant: str, modalities: list[str], index: pd.DataFrame, split: str = "train") -> None:
    """Refuse a variant that lists a content modality (audio, text, visual) that no video of
    ``split`` has any of (align coverage 0: zero-filled and masked everywhere): the model would
    learn nothing from it and every report would still call the row by its modalities."""
    rows = index[index["split"] == split]
    empty = [m for m in modalities if f"coverage_{m}" in rows and m != "track"
             and not (rows[f"coverage_{m}"] > 0).any()]
    if empty:
        raise ValueError(f"variant {variant!r} uses {', '.join(empty)}, but no {split} video has any "
                         f"({len(rows)} {split} videos, coverage 0 in data/aligned/index.parquet): drop "
                         f"{', '.join(empty)} from variants.{variant}.modalities in params.yaml, or bring a "
                         "corpus with it")


@torch.no_grad()
def batch_losses(model, batches, centres, cfg, device) -> list[dict]:
    model.eval()
    parts = []
    for batch in batches:
        batch = model_inputs(batch, device)
        _, p = compute_loss(model(batch), batch, centres, cfg)
        parts.append(p)
    return parts


def validation_loss(model, val_ds: GazeWindows, centres, cfg, device, d: Dist) -> dict:
    """Mean loss parts over the validation batches (``batch_size`` windows in window-major order,
    :func:`gazelib.data.dataset.window_major`). Under
    torchrun rank r scores batches r, r + W, ... and the parts are gathered, so every rank gets the
    number one process would compute from the same weights."""
    if not d.active:
        return evaluate_loss(model, val_ds.batches(window_major(val_ds.index), cfg["batch_size"]), centres, cfg, device)
    size = cfg["batch_size"]
    order = window_major(val_ds.index)
    chunks = [order[b:b + size] for b in range(0, len(order), size)]
    if not chunks:  # no validation windows: the same on every rank
        return _mean_parts([])
    mine = chunks[d.rank::d.world]
    parts = d.gather(batch_losses(model, (val_ds.batch(c) for c in mine), centres, cfg, device))
    return {k: ordered_mean([[p[k] for p in rank] for rank in parts]) for k in parts[0][0]}


def val_auc_vat(model, val_ds: GazeWindows, cfg, device) -> float:
    """``auc_vat`` on the validation videos exactly as evaluate scores a test row: the maps of
    :func:`gazelib.model.inference.predict` (each step once, as evaluate's windows give it),
    :func:`gazelib.metrics.vat_metrics` on every valid in-frame (viewer, step) sample, videos in
    sorted order, the mean; NaN without any. Every rank of a data-parallel run computes it on all of
    val from the same weights, so they take the same decision."""
    from gazelib.metrics import vat_metrics
    from gazelib.model.inference import predict

    preds = predict(model=model, ds=val_ds)
    aucs = []
    for vid in sorted(preds):
        vt = val_ds.video(vid)
        vv, tt = np.nonzero(vt.valid.astype(bool) & (vt.inout > 0))   # score_rows' samples, in its order
        if vv.size:
            heat = preds[vid]["prob"][vv, tt].astype(np.float64).reshape(-1, *val_ds.grid_hw)
            aucs.append(vat_metrics(heatmaps=heat, gaze=vt.gaze[vv, tt].astype(np.float64))["auc_vat"])
    auc = np.concatenate(aucs) if aucs else np.empty(0)
    return float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan")


def evaluate_loss(model, batches, centres, cfg, device) -> dict:
    return _mean_parts(batch_losses(model, batches, centres, cfg, device))


def _mean_parts(parts: list[dict]) -> dict:
    if not parts:
        return {"loss": float("nan"), "heatmap_ce": float("nan"), "inout_bce": float("nan")}
    return {k: float(np.mean([p[k] for p in parts])) for k in parts[0]}


def write_train_metrics(path: Path, result: dict) -> None:
    write_json(path, {k: v for k, v in result.items() if k != "history"})


# ---------------------------------------------------------------- DVC stage
def run_train(*, params: dict, variant: str, root: Path = Path("."), max_epochs: int | None = None) -> dict:
    """Train ``variant`` once per seed in ``train.seeds`` into ``models/<variant>/seed<k>/``.

    Under torchrun every rank calls this; rank 0 writes checkpoints, dvclive, curves, metrics and the
    bundle and returns the summary, the others return ``{"variant", "rank"}``."""
    from gazelib.model.bias import bias_files
    from gazelib.viz.plots import curves

    if variant not in params["variants"]:
        raise KeyError(f"unknown variant {variant!r}; params.yaml has {list(params['variants'])}")
    if variant in RESERVED_ROWS:
        raise ValueError(f"variant name {variant!r} is reserved for a floor or ceiling row; rename it")
    seeds = list(params["train"]["seeds"])
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"train.seeds must be a non-empty list of distinct seeds, got {seeds}")
    index, meta = read_index(root)
    check_modalities_have_data(variant=variant, modalities=params["variants"][variant]["modalities"], index=index)
    stats = read_norm_stats(root)
    # nproc and seed_workers are how many processes train, not what they learn (a checkpoint records
    # world_size instead; seed_workers leaves every byte as one process would write it)
    cfg = {k: v for k, v in params["train"].items() if k not in ("seeds", "nproc", "seed_workers")}
    d = init_from_env()  # under torchrun: join the process group; else one process
    workers = seed_workers(params["train"]["seed_workers"], n_seeds=len(seeds), distributed=d.active)
    floors = None
    if params["model"]["persistence"] and "track" in params["variants"][variant]["modalities"]:
        if (root / FLOORS).exists():
            floors = json.loads((root / FLOORS).read_text())
        else:
            log.warning("%s: %s missing (stage floors): the persistence path starts at model.persistence_sigma / "
                        "persistence_prior_weight and a uniform prior instead of the train floor", variant, FLOORS)
    results = []
    common = dict(variant=variant, modalities=params["variants"][variant]["modalities"],
                  train_files=split_files(root, index, "train"), val_files=split_files(root, index, "val"),
                  index=index_maps(index), stats=stats, grid_shape=index_grid(meta), fps=meta["fps"], cfg=cfg,
                  model_cfg=params["model"], max_epochs=max_epochs,
                  bias_inputs=bias_files(root) if cfg["lambda_entropy"] > 0 else None,
                  persistence_init=floors)
    for seed in seeds:
        (root / "models" / variant / f"seed{seed}").mkdir(parents=True, exist_ok=True)
    by_seed = _train_seeds_parallel(common=common, root=root, seeds=seeds, workers=workers) if workers > 1 else {}
    for seed in seeds:
        out_dir = root / "models" / variant / f"seed{seed}"
        if seed in by_seed:
            result = by_seed[seed]
        else:
            live = _live(root / "reports" / "train" / variant / f"seed{seed}") if d.main else None
            result = train_variant(**common, out_dir=out_dir, seed=seed, live=live, dist=d)
            end_live(live)
        if not d.main:  # rank 0 writes every file
            continue
        curves(path=root / "reports" / "train" / variant / f"seed{seed}" / "curves.png",
               history=result["history"], title=f"{variant} seed {seed}")
        write_curve_table(path=root / CURVES / "train" / variant / f"seed{seed}.csv", history=result["history"])
        results.append({k: v for k, v in result.items() if k != "history"} | {"seed": seed})
    if not d.main:
        return {"variant": variant, "rank": d.rank}
    timing_keys = ("wall_s", "samples_per_s", "world_size")
    # metrics stay reproducible byte for byte; wall-clock figures go to the (untracked) report folder
    summary = {"variant": variant,
               "seeds": {f"seed{r['seed']}": {k: v for k, v in r.items() if k not in timing_keys} for r in results},
               "epochs_run_mean": float(np.mean([r["epochs_run"] for r in results])),
               "best_val_loss_mean": float(np.mean([r["best_val_loss"] for r in results]))}
    if d.active:  # a data-parallel run says so (one process: the same bytes as ever)
        summary["world_size"] = d.world
    write_train_metrics(root / train_metrics(variant), summary)
    from gazelib.model.bundle import write_bundle

    # the model folder travels: norm stats and feature params beside the seed checkpoints
    # the feature params as the stages recorded them beside the aligned data (gazelib.data.align),
    # not params.yaml's: train does not depend on the feature params (a speed-only key retrains nothing)
    record = json.loads((root / ALIGNED_FEATURE_PARAMS).read_text())
    write_bundle(out_dir=root / "models" / variant, params=params, stats=stats, variant=variant,
                 modalities=params["variants"][variant]["modalities"], synthetic=corpus_synthetic(root), record=record)
    write_json(root / TIMING / f"train_{variant}.json",
               {"wall_s": float(sum(r["wall_s"] for r in results)),
                "seeds": {f"seed{r['seed']}": {k: r[k] for k in timing_keys} for r in results}})
    return summary


CURVE_COLUMNS = ("train_loss", "val_loss", "val_heatmap_ce", "val_inout_bce")


def write_curve_table(*, path: Path, history: list[dict]) -> None:
    """One run's loss curves for `dvc plots show` (dvc.yaml `plots`: reports/curves/train): a row per
    epoch (``step``), the training and validation losses as columns, so one plot draws them together."""
    cols = [c for c in CURVE_COLUMNS if any(c in row for row in history)]
    lines = [",".join(["step", *cols])]
    lines += [",".join([str(row["epoch"]), *(repr(float(row[c])) if c in row else "" for c in cols)]) for row in history]
    write_text(path, "\n".join(lines) + "\n")


def seed_workers(value, *, n_seeds: int, distributed: bool) -> int:
    """Processes that train a variant's seeds side by side (``train.seed_workers``): at most one per
    seed, and 1 under torchrun (the ranks already share every seed's work)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"train.seed_workers must be a positive integer, got {value!r} (params.yaml)")
    return 1 if distributed else min(value, n_seeds)


def _train_one_seed(args: dict) -> dict:
    """One seed in a worker process (:func:`_train_seeds_parallel`): the same call as the serial loop."""
    from gazelib.core.params import setup_logging

    setup_logging(args.pop("log_level"))
    root, seed = args.pop("root"), args["seed"]
    live = _live(root / "reports" / "train" / args["variant"] / f"seed{seed}")
    try:
        return train_variant(**args, out_dir=root / "models" / args["variant"] / f"seed{seed}", live=live)
    finally:
        end_live(live)


def _train_seeds_parallel(*, common: dict, root: Path, seeds: list, workers: int) -> dict:
    """Train the seeds in ``workers`` fresh processes (spawned: each imports gazelib, which pins the
    CPU path, and seeds itself in :func:`train_variant`), each with ``train.num_threads`` torch
    threads as the serial loop has, so every checkpoint and metric is the same bytes as training the
    seeds one after another in this process (tests/test_speed.py). Results come back by seed."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    log.info("%s: training seeds %s in %d processes (train.seed_workers)", common["variant"], seeds, workers)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {seed: pool.submit(_train_one_seed, {**common, "seed": seed, "root": root, "log_level": level,
                                                       "progress": False})
                   for seed in seeds}
        return {seed: fut.result() for seed, fut in futures.items()}


def end_live(live) -> None:
    """Close a dvclive run, tolerating one known race. Under ``dvc exp run`` dvclive's ``Live.end`` ends
    by deleting the VS Code signal file ``.dvc/tmp/exps/run/DVCLIVE_STEP_COMPLETED`` with a check then a
    remove (``dvclive.vscode.cleanup_dvclive_step_completed``); two seed workers ending together both
    pass the check and the second ``remove`` raises FileNotFoundError, failing the stage after training
    finished. The deletion is the last thing ``end`` does, so a missing signal file is ignored; any other
    error is raised."""
    if live is None:
        return
    try:
        live.end()
    except FileNotFoundError as err:
        if Path(str(err.filename or "")).name != "DVCLIVE_STEP_COMPLETED":
            raise
        log.debug("dvclive: %s already removed by another seed worker", err.filename)


def _live(path: Path):
    try:
        from dvclive import Live
    except ImportError:
        return None
    return Live(dir=str(path), dvcyaml=None, save_dvc_exp=False, report=None)
