"""ONNX export of a trained gaze model, and an onnxruntime model that predict can run.

The graph takes the inputs the variant reads, batch-first with a **dynamic batch and time axis**:
each modality's features ``[B, T, D]`` (``track``, ``audio``, ``text``, ``visual`` as in the
variant), ``grid [B, T, cells, C]`` (visual variants), ``track_map [B, T, cells]`` (track
variants), ``mask [B, T, 4]`` and ``pad [B, T]`` (bool); it returns ``heatmap_logits [B, T, cells]``
and ``inout_logits [B, T]``. Export goes through ``torch.onnx.export(dynamo=True)`` (onnxscript).

torch's transformer encoder checks whether the attention mask it gets *is* the causal mask
by comparing values, a data-dependent branch ``torch.export`` cannot trace; during export that
check is answered "not known causal", so the graph applies the explicit causal mask (the same
attention, without the fast-path hint). Every export is checked against PyTorch on random windows
of two lengths (one unlike the export's) with padding and missing modalities: the largest
|Δ probability| (heatmap softmax and sigmoid in/out) must stay within ``tolerance`` (1e-4).

The file carries metadata (``gazelib_type``, variant, modalities, seed, norm-stats hash,
checkpoint hash, window) so a model file cannot be used with the wrong model folder.
"""
from __future__ import annotations

import contextlib
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np
import torch
from torch import nn

from gazelib.core.io import atomic_path

log = logging.getLogger(__name__)

ONNX_TYPE = "gazelib.gaze_transformer.onnx"
OUTPUTS = ("heatmap_logits", "inout_logits")
PARITY_TOLERANCE = 1e-4


class OnnxExportError(RuntimeError):
    pass


def input_names(modalities: list[str]) -> list[str]:
    """The graph's inputs for a variant, in order."""
    names = list(modalities)
    if "visual" in modalities:
        names.append("grid")
    if "track" in modalities:
        names.append("track_map")
    return names + ["mask", "pad"]


class _Positional(nn.Module):
    """The model with positional inputs (the exporter's calling convention)."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, *inputs: torch.Tensor):
        out = self.model(dict(zip(self.names, inputs)))
        return out["heatmap_logits"], out["inout_logits"]


@contextlib.contextmanager
def _explicit_causal_mask():
    """Make torch's encoder apply the mask it is given instead of testing it for causality (a
    data-dependent comparison torch.export cannot trace); restored on exit."""
    import torch.nn.modules.transformer as tr

    orig = tr._detect_is_causal_mask
    tr._detect_is_causal_mask = lambda mask, is_causal=None, size=None: is_causal is True
    try:
        yield
    finally:
        tr._detect_is_causal_mask = orig


def random_windows(*, config: dict, batch: int, steps: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Model inputs shaped like real windows: z-scored features, some steps padded at the end, some
    modalities missing (mask 0) at random steps."""
    g = torch.Generator().manual_seed(seed)
    cells = config["grid_h"] * config["grid_w"]
    dims = config["input_dims"]
    x = {m: torch.randn(batch, steps, dims[m], generator=g) for m in ("audio", "text", "visual", "track")}
    x["grid"] = torch.randn(batch, steps, cells, config["grid_channels"], generator=g)
    x["track_map"] = torch.rand(batch, steps, cells, generator=g)
    x["mask"] = (torch.rand(batch, steps, 4, generator=g) > 0.2).float()
    pad = torch.zeros(batch, steps, dtype=torch.bool)
    for b in range(1, batch):
        pad[b, steps - (b * steps) // (2 * batch):] = True
    x["pad"] = pad
    return x


def probabilities(out: dict) -> tuple[np.ndarray, np.ndarray]:
    return (torch.softmax(torch.as_tensor(out["heatmap_logits"]).float(), -1).numpy(),
            torch.sigmoid(torch.as_tensor(out["inout_logits"]).float()).numpy())


def parity(*, model: nn.Module, onnx_model: "OnnxGazeModel", batches: list[dict]) -> dict:
    """Largest |Δ| of heatmap probabilities, P(in) and logits between PyTorch and ONNX Runtime,
    over non-padded steps of ``batches``."""
    d_prob = d_in = d_logit = 0.0
    with torch.no_grad():
        for b in batches:
            ref, got = model(b), onnx_model(b)
            keep = ~b["pad"].numpy()
            (pr, ir), (pg, ig) = probabilities(ref), probabilities(got)
            d_prob = max(d_prob, float(np.abs(pr - pg)[keep].max(initial=0.0)))
            d_in = max(d_in, float(np.abs(ir - ig)[keep].max(initial=0.0)))
            d_logit = max(d_logit, float(np.abs(ref["heatmap_logits"].numpy() - got["heatmap_logits"].numpy())[keep]
                                         .max(initial=0.0)))
    return {"max_abs_dprob": d_prob, "max_abs_dp_in": d_in, "max_abs_dlogit": d_logit}


@dataclass
class ExportResult:
    path: Path
    seed: int | None
    variant: str
    inputs: list[str]
    opset: int
    parity: dict = field(default_factory=dict)
    seconds: float = 0.0


def export_model(*, model: nn.Module, out_path: str | Path, metadata: dict | None = None, window: int = 60,
                 opset: int = 18, check: bool = True, tolerance: float = PARITY_TOLERANCE) -> ExportResult:
    """Export a :class:`gazelib.model.net.GazeTransformer` (eval mode) to ``out_path``; checks parity."""
    import time

    import onnx

    t0 = time.perf_counter()
    out_path = Path(out_path)
    model = model.eval()
    cfg = _config_dict(model)
    names = input_names(cfg["modalities"])
    example = random_windows(config=cfg, batch=2, steps=max(window, 4), seed=0)
    b_dim = torch.export.Dim("batch", min=1, max=4096)
    t_dim = torch.export.Dim("time", min=2, max=int(cfg["max_len"]))
    shapes = tuple({0: b_dim, 1: t_dim} for _ in names)
    with _explicit_causal_mask(), warnings.catch_warnings(), _quiet_torch_logs():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(_Positional(model, names), tuple(example[n] for n in names),
                                        input_names=names, output_names=list(OUTPUTS), dynamic_shapes=(shapes,),
                                        dynamo=True, opset_version=opset, verbose=False)
        except Exception as exc:  # noqa: BLE001 - the exporter's errors are long; keep the summary
            raise OnnxExportError(f"ONNX export to {out_path} failed: {str(exc).splitlines()[0]}") from exc
    proto = program.model_proto
    meta = {"gazelib_type": ONNX_TYPE, "inputs": json.dumps(names), "model_config": json.dumps(cfg, sort_keys=True),
            "window": str(window), **{k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}}
    del proto.metadata_props[:]
    for k, v in sorted(meta.items()):
        proto.metadata_props.add(key=k, value=v)
    with atomic_path(out_path) as tmp:
        onnx.save_model(proto, str(tmp))
    result = ExportResult(path=out_path, seed=(metadata or {}).get("seed"), variant=str((metadata or {}).get("variant", "")),
                          inputs=names, opset=opset)
    if check:
        om = OnnxGazeModel(out_path)
        batches = [random_windows(config=cfg, batch=4, steps=max(window, 4), seed=1),
                   random_windows(config=cfg, batch=3, steps=max(window // 2 + 7, 3), seed=2)]
        result.parity = parity(model=model, onnx_model=om, batches=batches)
        if result.parity["max_abs_dprob"] > tolerance or result.parity["max_abs_dp_in"] > tolerance:
            out_path.unlink(missing_ok=True)
            raise OnnxExportError(f"{out_path}: ONNX Runtime disagrees with PyTorch by {result.parity} "
                                  f"(tolerance {tolerance}); file removed")
    result.seconds = time.perf_counter() - t0
    return result


def export_checkpoint(*, checkpoint: str | Path, out_path: str | Path, expect: dict | None = None, opset: int = 18,
                      check: bool = True) -> ExportResult:
    """Export one seed's ``best.pt`` with its metadata (variant, modalities, seed, norm-stats hash)."""
    from gazelib.core.cache import hash_file
    from gazelib.model.checkpoint import model_from_checkpoint

    model, state = model_from_checkpoint(checkpoint, expect=expect)
    m = state["meta"]
    window = max(1, int(round(m["train_cfg"]["window_s"] * m["fps"])))
    meta = {"variant": m["variant"], "modalities": m["modalities"], "seed": m.get("seed"),
            "norm_stats_hash": m["norm_stats_hash"], "fps": m["fps"], "gazelib_version": m.get("gazelib_version", ""),
            "checkpoint_sha256": hash_file(checkpoint)}
    return export_model(model=model, out_path=out_path, metadata=meta, window=window, opset=opset, check=check)


def export_bundle(*, model_dir: str | Path, out_path: str | Path, seed: int | None = None, opset: int = 18,
                  check: bool = True) -> ExportResult:
    """``gazelib export``: one seed (default the first) of a model folder to ``out_path``."""
    from gazelib.model.bundle import load_bundle

    bundle = load_bundle(model_dir)
    ck = bundle.checkpoint(seed)
    return export_checkpoint(checkpoint=ck, out_path=out_path, opset=opset, check=check,
                             expect={"variant": bundle.variant, "modalities": bundle.modalities,
                                     "norm_stats_hash": bundle.stats_hash})


class OnnxGazeModel:
    """An exported model run by ONNX Runtime, called like the PyTorch model: ``model(batch)`` ->
    ``{"heatmap_logits", "inout_logits"}`` as torch tensors (so :func:`gazelib.eval.evaluate.predict` runs it)."""

    def __init__(self, path: str | Path, *, threads: int = 2, expect: dict | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"ONNX model {self.path} not found")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # idle worker threads sleep instead of spinning: predict runs torch and ORT models in turn
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises several types for a bad file
            raise OnnxExportError(f"{self.path}: not a loadable ONNX model: {exc}") from exc
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        if self.metadata.get("gazelib_type") != ONNX_TYPE:
            raise OnnxExportError(f"{self.path}: not a gazelib ONNX export (no {ONNX_TYPE} tag)")
        for key, want in (expect or {}).items():
            raw = self.metadata.get(key)
            have = raw if key not in ("modalities", "seed") or raw is None else json.loads(raw)
            if have != want:
                raise OnnxExportError(f"{self.path}: ONNX model {key} is {have!r}, expected {want!r} "
                                      "(exported from another model; re-export with `gazelib export`)")
        self.inputs = [i.name for i in self.session.get_inputs()]

    def eval(self) -> "OnnxGazeModel":
        return self

    def __call__(self, batch: dict) -> dict[str, torch.Tensor]:
        feeds = {}
        for name in self.inputs:
            x = batch[name]
            x = x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
            feeds[name] = x.astype(bool if name == "pad" else np.float32, copy=False)
        hm, io = self.session.run(list(OUTPUTS), feeds)
        return {"heatmap_logits": torch.from_numpy(hm), "inout_logits": torch.from_numpy(io)}


def _config_dict(model: nn.Module) -> dict:
    from dataclasses import asdict

    return asdict(model.cfg)


@contextlib.contextmanager
def _quiet_torch_logs():
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._export", "torch.export", "onnxscript",
                                             "torch.fx.experimental.symbolic_shapes")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


# ---------------------------------------------------------------- command line
EPILOG = """\b
Examples:
  gazelib export models/content_only --onnx content_only.onnx
  gazelib export models/multimodal --seed 1 --onnx multimodal_seed1.onnx
  gazelib predict clip.mp4 --model models/content_only --runtime onnx --onnx content_only.onnx --out pred/

\b
The graph's inputs are the variant's feature windows (batch and time axes dynamic); its
metadata names the variant, seed and norm-stats hash, and predict refuses a file exported from
another model. See docs/predict.md.
"""


@click.command("export", epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"],
                                                          "max_content_width": 100})
@click.argument("model_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--onnx", "onnx_path", required=True, type=click.Path(dir_okay=False),
              help="Where to write the ONNX model.")
@click.option("--seed", type=int, default=None, help="Which training seed's checkpoint (default: the first).")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset version.")
@click.option("--no-check", is_flag=True, help="Skip the parity check against PyTorch.")
def export_cmd(model_dir, onnx_path, seed, opset, no_check) -> None:
    """Export one seed of the model folder MODEL_DIR to ONNX, checked against PyTorch.

    The exported file runs under ONNX Runtime (`gazelib predict --runtime onnx`), with any batch
    size and window length; the check compares heatmap and in/out probabilities on random windows
    (max |difference| must stay within 1e-4).
    """
    from gazelib.model.bundle import BundleError
    from gazelib.core.params import setup_logging

    setup_logging("WARNING")
    try:
        res = export_bundle(model_dir=model_dir, out_path=onnx_path, seed=seed, opset=opset, check=not no_check)
    except (BundleError, OnnxExportError) as exc:
        raise click.ClickException(str(exc)) from exc
    msg = f"wrote {res.path} ({res.variant} seed {res.seed}, opset {res.opset}, inputs {', '.join(res.inputs)})"
    if res.parity:
        msg += (f"; parity with PyTorch: max |dprob| {res.parity['max_abs_dprob']:.2e}, "
                f"max |dP(in)| {res.parity['max_abs_dp_in']:.2e}")
    click.echo(msg)
