"""The feature params reach the model bundle through the data, not through train's own params.

The extract stages record their params (speed-only keys left out) in their reports, ingest in its
report, align gathers them into data/aligned/feature_params.json, and train writes that into the
bundle. So train depends on no feature params group, and a speed-only key retrains nothing.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from gazelib.core.params import RUNTIME_KEYS, default, feature_record, load_params
from gazelib.model.bundle import load_bundle, write_bundle

REPO = Path(__file__).resolve().parents[1]


def test_train_depends_on_no_feature_params_group():
    train = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]["do"]
    assert set(map(str, train["params"])) == {"model", "train", "variants.${key}"}
    assert "data/aligned" in train["deps"]     # where the recorded feature params come from


def test_speed_only_keys_are_not_recorded_and_predict_gets_their_defaults(tmp_path):
    params = load_params(REPO / "params.yaml")
    record = {"feature_params": {s: feature_record(params[s], section=s)
                                 for s in ("features", "audio", "text", "visual", "align")},
              "ingest_params": params["ingest"]}
    for section, keys in RUNTIME_KEYS.items():
        assert keys and not keys & set(record["feature_params"][section]), section
        assert set(record["feature_params"][section]) | keys == set(params[section])
    stats = {"grid": {"mean": [0.0] * 3, "std": [1.0] * 3}}
    # params say something else on purpose: the record wins
    other = {**params, "visual": {**params["visual"], "grid_h": 99}}
    write_bundle(out_dir=tmp_path, params=other, stats=stats, variant="v", modalities=["audio"], record=record)
    doc = json.loads((tmp_path / "bundle.json").read_text())
    assert doc["grid"][1] == params["visual"]["grid_h"]
    assert "embed_batch" not in doc["feature_params"]["visual"]
    bundle = load_bundle(tmp_path)
    for section, keys in RUNTIME_KEYS.items():
        for k in keys:
            assert bundle.feature_params[section][k] == default(f"{section}.{k}")
