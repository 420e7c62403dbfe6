"""Failures that used to pass silently now stop with their reason: a non-finite training or
validation loss (naming epoch and batch), a variant whose modality the corpus lacks."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gazelib.core.io import read_npz, write_npz
from gazelib.model.train import check_modalities_have_data, train_variant
from tests.test_model import MODEL_CFG, TRAIN_CFG, _synthetic_split


def _poison(path, key="audio"):
    arr = read_npz(path)
    arr[key] = arr[key].copy()
    arr[key][20:30] = np.nan
    write_npz(path, **arr)


def _run(tmp_path, train, val, index, stats):
    return train_variant(variant="multimodal", modalities=["track", "audio", "visual"], train_files=train,
                         val_files=val, index=index, stats=stats, grid_shape=(2, 3, 4), fps=10.0,
                         cfg={**TRAIN_CFG, "epochs": 2}, model_cfg=MODEL_CFG, out_dir=tmp_path / "out", seed=0)


def test_a_nan_training_loss_stops_training_naming_epoch_and_batch(tmp_path):
    train, val, index, stats = _synthetic_split(tmp_path)
    _poison(train[1])
    with pytest.raises(FloatingPointError, match=r"multimodal seed 0: training, epoch 0, batch \d+: non-finite loss"):
        _run(tmp_path, train, val, index, stats)
    assert not (tmp_path / "out" / "best.pt").exists()


def test_a_nan_validation_loss_stops_training_instead_of_using_the_training_loss(tmp_path):
    train, val, index, stats = _synthetic_split(tmp_path)
    _poison(val[0])
    with pytest.raises(FloatingPointError, match=r"validation after epoch 0 .*non-finite loss \{'loss': nan"):
        _run(tmp_path, train, val, index, stats)


def test_no_validation_windows_still_trains_on_the_training_loss(tmp_path, caplog):
    train, _, index, stats = _synthetic_split(tmp_path)
    res = _run(tmp_path, train, [], index, stats)
    assert res["epochs_run"] == 2 and np.isfinite(res["best_val_loss"])
    assert "no validation windows: early stopping follows the training loss" in caplog.text


def test_a_variant_whose_modality_the_corpus_lacks_is_refused():
    index = pd.DataFrame({"video_id": ["a", "b", "c"], "split": ["train", "train", "test"],
                          "coverage_audio": [0.0, 0.0, 0.7], "coverage_text": [0.2, 0.0, 0.0],
                          "coverage_visual": [1.0, 1.0, 1.0], "coverage_track": [0.9, 0.9, 0.9]})
    with pytest.raises(ValueError, match=r"variant 'multimodal' uses audio, but no train video has any .*"
                                         r"variants\.multimodal\.modalities"):
        check_modalities_have_data(variant="multimodal", modalities=["track", "audio", "text", "visual"], index=index)
    check_modalities_have_data(variant="content", modalities=["text", "visual"], index=index)
    check_modalities_have_data(variant="baseline", modalities=["track"], index=index)
