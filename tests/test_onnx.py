"""ONNX export: parity with PyTorch for every fusion, dynamic batch and time axes, the export verb on a
model folder, and refusal of a file exported from another model."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gazelib.model.net import FUSIONS, ModelConfig, build_model
from gazelib.model.onnx_export import (
    OnnxExportError,
    OnnxGazeModel,
    export_model,
    input_names,
    parity,
    random_windows,
)

DIMS = {"audio": 3, "text": 4, "visual": 5, "track": 5}
TOL = 1e-4


def _model(fusion: str, content_context: str = "causal", modalities=("track", "audio", "text", "visual")):
    torch.manual_seed(0)
    return build_model(ModelConfig(modalities=list(modalities), input_dims=DIMS, grid_channels=2, grid_h=3, grid_w=4,
                                   d_model=16, n_heads=2, n_layers=1, dim_ff=32, dropout=0.1, fusion=fusion,
                                   cell_dim=8, content_context=content_context)).eval()


@pytest.mark.parametrize("fusion,context", [("gated", "causal"), ("concat", "bidirectional"), ("add", "causal"),
                                            ("cross_attention", "causal")])
def test_export_matches_pytorch_for_every_fusion(tmp_path, fusion, context):
    """Every fusion (and the offline bidirectional content context) exports with dynamic batch and
    time axes and agrees with PyTorch on windows of other lengths and batch sizes than the export's."""
    import onnx

    assert {f for f in FUSIONS} == {"gated", "concat", "add", "cross_attention"}
    model = _model(fusion, context)
    export_model(model=model, out_path=tmp_path / "m.onnx", metadata={"variant": "v", "seed": 0}, window=20,
                 check=False)
    g = onnx.load(str(tmp_path / "m.onnx")).graph
    assert [i.name for i in g.input] == input_names(["track", "audio", "text", "visual"])
    assert all(i.type.tensor_type.shape.dim[0].dim_param and i.type.tensor_type.shape.dim[1].dim_param
               for i in g.input), "batch and time axes must be symbolic"
    om = OnnxGazeModel(tmp_path / "m.onnx", threads=1)
    cfg = {"modalities": ["track", "audio", "text", "visual"], "input_dims": DIMS, "grid_channels": 2, "grid_h": 3,
           "grid_w": 4}
    batches = [random_windows(config=cfg, batch=b, steps=t, seed=s) for b, t, s in ((1, 3, 5), (5, 137, 6), (2, 20, 7))]
    p = parity(model=model, onnx_model=om, batches=batches)
    assert p["max_abs_dprob"] <= TOL and p["max_abs_dp_in"] <= TOL, p
    # a model that is really different is caught by the same measure (the check has teeth)
    other = _model(fusion, context)
    with torch.no_grad():
        other.inout_head.bias += 1.0
    assert parity(model=other, onnx_model=om, batches=batches[:1])["max_abs_dp_in"] > 1e-2


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    """A trained model folder (checkpoint + bundle) and an aligned test video, from test_model's synthetic data."""
    from gazelib.model.bundle import write_bundle
    from gazelib.model.train import train_variant
    from tests.test_model import MODEL_CFG, TRAIN_CFG, _synthetic_split

    root = tmp_path_factory.mktemp("onnx_models")
    train, val, index, stats = _synthetic_split(root)
    params = {"features": {"lookahead": "none"}, "audio": {"hop_s": 0.01}, "text": {"hop_s": 0.04},
              "visual": {"grid_h": 3, "grid_w": 4},
              "align": {"fps": 10.0}, "train": {"seeds": [0]}, "ingest": {}}
    out = {}
    for variant, mods in (("content", ["audio", "text", "visual"]), ("tracked", ["track", "audio", "visual"])):
        mdir = root / "models" / variant
        train_variant(variant=variant, modalities=mods, train_files=train, val_files=val, index=index, stats=stats,
                      grid_shape=(2, 3, 4), fps=10.0, cfg=TRAIN_CFG, model_cfg=MODEL_CFG, out_dir=mdir / "seed0",
                      seed=0)
        write_bundle(out_dir=mdir, params=params, stats=stats, variant=variant, modalities=mods)
        out[variant] = mdir
    return out, val[0], stats


def test_export_verb_onnx_runtime_on_test_windows_and_refusal(model_folder, tmp_path):
    """`gazelib export` on a model folder writes a graph with only the inputs the variant reads; the
    ONNX model run by predict's path (evaluate's windows) on a held-out video agrees with PyTorch
    within 1e-4; the file is refused for another model folder."""
    import onnx

    from gazelib.model.bundle import load_bundle
    from gazelib.cli import main
    from gazelib.serve.runtime import load_runtime_model, predict_aligned

    models, video, stats = model_folder
    res = CliRunner().invoke(main, ["export", str(models["tracked"]), "--onnx", str(tmp_path / "t.onnx")])
    assert res.exit_code == 0, res.output
    assert "parity with PyTorch: max |dprob|" in res.output
    assert [i.name for i in onnx.load(str(tmp_path / "t.onnx")).graph.input] == [
        "track", "audio", "visual", "grid", "track_map", "mask", "pad"]
    bundle = load_bundle(models["tracked"])
    preds = {}
    for runtime in ("torch", "onnx"):
        model, meta = load_runtime_model(bundle=bundle, checkpoint=bundle.checkpoint(), runtime=runtime,
                                         onnx_path=tmp_path / "t.onnx" if runtime == "onnx" else None, work=tmp_path,
                                         threads=1)
        preds[runtime] = predict_aligned(model=model, aligned_path=video, stats=stats, meta=meta)
    assert preds["onnx"]["prob"].shape == (80, 12)
    assert np.abs(preds["torch"]["prob"] - preds["onnx"]["prob"]).max() <= TOL
    assert np.abs(preds["torch"]["p_in"] - preds["onnx"]["p_in"]).max() <= TOL

    assert json.loads(OnnxGazeModel(tmp_path / "t.onnx").metadata["modalities"]) == ["track", "audio", "visual"]
    other = load_bundle(models["content"])
    with pytest.raises(OnnxExportError, match="ONNX model variant is 'tracked', expected 'content'"):
        load_runtime_model(bundle=other, checkpoint=other.checkpoint(), runtime="onnx", onnx_path=tmp_path / "t.onnx",
                           work=tmp_path, threads=1)
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(OnnxExportError, match="not a loadable ONNX model"):
        OnnxGazeModel(tmp_path / "junk.onnx")


def test_a_model_with_the_track_map_in_its_keys_exports_it_and_agrees(tmp_path):
    """A checkpoint from before 0.4.0 (``track_in_keys``: the track_map in the cell keys) exports and
    agrees with PyTorch."""
    import onnx

    torch.manual_seed(0)
    model = build_model(ModelConfig(modalities=["track", "audio", "text", "visual"], input_dims=DIMS, grid_channels=2,
                                    grid_h=3, grid_w=4, d_model=16, n_heads=2, n_layers=1, dim_ff=32, cell_dim=8,
                                    track_in_keys=True)).eval()
    export_model(model=model, out_path=tmp_path / "m.onnx", metadata={"variant": "v", "seed": 0}, window=20,
                 check=False)
    names = [i.name for i in onnx.load(str(tmp_path / "m.onnx")).graph.input]
    assert names == input_names(["track", "audio", "text", "visual"])
    cfg = {"modalities": ["track", "audio", "text", "visual"], "input_dims": DIMS, "grid_channels": 2, "grid_h": 3,
           "grid_w": 4}
    batches = [random_windows(config=cfg, batch=b, steps=t, seed=s) for b, t, s in ((1, 3, 5), (3, 41, 6))]
    p = parity(model=model, onnx_model=OnnxGazeModel(tmp_path / "m.onnx", threads=1), batches=batches)
    assert p["max_abs_dprob"] <= TOL and p["max_abs_dp_in"] <= TOL, p
