"""Checkpoints: what a training run saves (weights, optimiser, schedule, RNG states, metadata) and
the one loader every consumer (evaluate, horizons, report, predict, export) goes through."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from gazelib.core.io import atomic_path
from gazelib.model.net import ModelConfig, build_model


CHECKPOINT_TYPE = "gazelib.gaze_transformer"


class CheckpointError(ValueError):
    pass


def save_checkpoint(path: Path, *, model, optimizer, scheduler, epoch: int, best: float, bad_epochs: int,
                    meta: dict, history: list, scaler=None, floor_val: dict | None = None) -> None:
    """``model`` is the plain module (never the DDP wrapper), so checkpoints load the same anywhere.
    ``floor_val``: the floor start's validation figures an epoch must not lose to (``train.floor_guard``),
    kept for a resumed run."""
    state = {"type": CHECKPOINT_TYPE, "meta": meta, "model": model.state_dict(),
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch,
             "best": best, "bad_epochs": bad_epochs, "history": json.dumps(history),
             "rng_torch": torch.get_rng_state(), "rng_numpy": json.dumps(_np_state())}
    if floor_val is not None:
        state["floor_val"] = json.dumps(floor_val)
    if scaler is not None and scaler.is_enabled():  # AMP on CUDA only: CPU checkpoints keep their bytes
        state["scaler"] = scaler.state_dict()
        state["rng_cuda"] = torch.cuda.get_rng_state()  # dropout on the GPU draws from its own generator
    # through a file object: given a path, torch names the archive's root folder after the (random)
    # temp file, so equal checkpoints would differ byte for byte
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(state, fh)


def _np_state() -> list:
    s = np.random.get_state()
    return [s[0], s[1].tolist(), int(s[2]), int(s[3]), float(s[4])]


def load_checkpoint(path: str | Path, *, expect: dict | None = None) -> dict:
    """Load with ``weights_only=True``; refuse a file that is not a gazelib checkpoint or whose
    metadata disagrees with ``expect`` (variant, modalities, dims, norm-stats hash)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not ours"
        raise CheckpointError(f"{path}: not a loadable checkpoint: {exc}") from exc
    if not isinstance(state, dict) or state.get("type") != CHECKPOINT_TYPE:
        raise CheckpointError(f"{path}: not a {CHECKPOINT_TYPE} checkpoint "
                              f"(type {state.get('type') if isinstance(state, dict) else type(state).__name__!r})")
    for key, want in (expect or {}).items():
        have = state["meta"].get(key)
        if have != want:
            raise CheckpointError(f"{path}: checkpoint {key} is {have!r}, expected {want!r}")
    return state


def model_from_checkpoint(path: str | Path, expect: dict | None = None):
    state = load_checkpoint(path, expect=expect)
    # a checkpoint from before 0.4.0 has no track_in_keys: its keys held the last gaze's map
    model = build_model(ModelConfig(**{"track_in_keys": True, **state["meta"]["model_config"]}))
    weights = dict(state["model"])
    if "inout_floor_logit" in model.state_dict() and "inout_floor_logit" not in weights:
        # a persistence model from before 0.7.0: no floor term in its in/out logits
        weights["inout_floor_logit"] = torch.zeros(3)
    model.load_state_dict(weights)
    return model.eval(), state

