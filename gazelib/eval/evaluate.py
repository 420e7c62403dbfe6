"""Evaluation of a trained variant (every seed) on the test split, with floors and a ceiling.

One protocol for every row (model seeds, centre prior, persistence, inter-observer): each
row gives, per video, ``prob`` [V, T, Gh*Gw] and ``p_in`` [V, T]; :func:`score_rows` turns
every valid (viewer, step) sample into one table row with

- in-frame samples: ``auc_vat``, ``l2_vat`` (VideoAttentionTarget protocol on the heatmap
  resized to 64x64), ``hit1_cell`` / ``hit5_cell`` (grid-cell variants), and the saliency
  family (``nss``, ``cc``, ``sim``, ``kl``, ``auc_judd``, ``sauc``, ``ig``) of the map that row
  predicts for that viewer and frame, resized bilinearly to an evaluation map of
  ``saliency_width`` columns (rows from the frame's aspect), scored against that viewer's
  fixation (pysaliency definitions, per fixation; see :mod:`gazelib.metrics`);
- every valid sample: ``p_in`` and the label, for the pooled ``inout_ap`` / ``out_ap``.

Predictions come from non-overlapping windows of ``window_s`` covering every step.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from gazelib.data.dataset import GazeWindows, max_track_age, prepare_arrays, read_aligned, window_batch
from gazelib.model.inference import predict
from gazelib.metrics import (
    MEAN_KEYS,
    cell_hits,
    inout_metrics,
    l2_diag,
    resize_bilinear,
    saliency_metrics,
    vat_metrics,
)
import json
from pathlib import Path
from gazelib.core.io import write_json, write_table, write_text
from gazelib.core.layout import (
    CURVES,
    eval_metrics,
    FLOORS,
    FLOOR_SCORES,
    corpus_geometry,
    index_grid,
    index_maps,
    load_manifest,
    read_index,
    read_labels,
    read_norm_stats,
    split_files,
)

log = logging.getLogger(__name__)



def eval_map_shape(*, width: int, height: int, saliency_width: int) -> tuple[int, int]:
    """Evaluation map (rows, cols): ``saliency_width`` columns, rows from the frame's aspect."""
    return max(1, int(round(saliency_width * height / width))), saliency_width


def score_rows(*, prob: np.ndarray, p_in: np.ndarray, lab: dict, gh: int, gw: int, eval_hw: tuple[int, int],
               prior_eval: np.ndarray, other_xy: np.ndarray, fixation_sigma: float, geometry: dict | None = None,
               video_id: str = "", frame_wh: tuple[int, int] = (1, 1), chunk: int = 4000) -> pd.DataFrame:
    """One row per valid (viewer, step) sample; metric columns NaN where the gaze is out of frame.

    ``l2_vat_deg``: the visual angle (degrees) between the point ``l2_vat`` is measured from and
    the gaze, when the corpus geometry (screen size and viewing distance) is known; NaN otherwise.
    ``l2_diag``: the same error in frame pixels over the frame diagonal (``frame_wh``)."""
    in_degrees = bool(geometry) and {"screen_cm", "distance_cm"} <= set(geometry)
    valid = lab["valid"].astype(bool)
    inframe = valid & (lab["inout"] > 0)
    vv, tt = np.nonzero(valid)
    df = pd.DataFrame({"viewer": vv.astype(np.int32), "step": tt.astype(np.int32),
                       "inout": lab["inout"][vv, tt].astype(np.int8), "p_in": p_in[vv, tt].astype(np.float64)})
    rows = np.nonzero(inframe[vv, tt])[0]
    cols = {k: np.full(len(df), np.nan) for k in MEAN_KEYS}
    for c0 in range(0, rows.size, chunk):  # chunks keep the resized maps' memory flat in video length
        r = rows[c0:c0 + chunk]
        heat = prob[vv[r], tt[r]].astype(np.float64)
        gaze = lab["gaze"][vv[r], tt[r]].astype(np.float64)
        res = {**vat_metrics(heatmaps=heat.reshape(-1, gh, gw), gaze=gaze),
               **cell_hits(heatmaps=heat, gaze=gaze, gh=gh, gw=gw),
               **saliency_metrics(maps=resize_bilinear(maps=heat.reshape(-1, gh, gw), out_hw=eval_hw), fix_xy=gaze,
                                  prior=prior_eval, other_xy=other_xy, fixation_sigma=fixation_sigma)}
        res["l2_diag"] = l2_diag(pred_xy=res["pred_xy"], gaze=gaze, width=frame_wh[0], height=frame_wh[1])
        if in_degrees:
            from gazelib.gaze.geometry import angular_distance_deg

            res["l2_vat_deg"] = angular_distance_deg(x0=res["pred_xy"][:, 0], y0=res["pred_xy"][:, 1],
                                                     x1=gaze[:, 0], y1=gaze[:, 1], geometry=geometry,
                                                     video_id=video_id)
        else:
            res["l2_vat_deg"] = np.full(len(r), np.nan)
        for k in MEAN_KEYS:
            cols[k][r] = np.asarray(res[k], np.float64)
    return df.assign(**cols)


def _evaluate_job(ctx: dict, *, kind: str, seed: int, preds: dict, row: str = "", lambdas: list | None = None,
                  on: str = "labels"):
    """One independent piece of evaluate's scoring (run by :class:`gazelib.core.compute.JobPool`): ``score``, every
    sample of one row (a model seed, a control, a floor) on the test videos; ``calibration``, the few-shot
    calibration samples of one seed's predictions for each penalty of ``lambdas`` (on the ``on`` labels)."""
    from gazelib.aoi.model_level import sample_columns
    from gazelib.eval.calibration import calibration_samples_by_lambda

    if kind == "calibration":
        by_lam = calibration_samples_by_lambda(preds=preds, labels=ctx[on], lambdas=lambdas, **ctx["calib"])
        return {lam: df.assign(seed=seed) for lam, df in by_lam.items()}
    frames = []
    for vid in sorted(preds):
        df = score_rows(prob=preds[vid]["prob"], p_in=preds[vid]["p_in"], lab=ctx["labels"][vid], gh=ctx["gh"],
                        gw=ctx["gw"], fixation_sigma=ctx["fixation_sigma"], geometry=ctx["geometry"], video_id=vid,
                        **ctx["per_video"][vid])
        df = sample_columns(df=df, prob=preds[vid]["prob"], video=ctx["aoi_videos"].get(vid))
        frames.append(df.assign(row=row, seed=seed, video_id=vid))
    return pd.concat(frames, ignore_index=True)


def summarise(df: pd.DataFrame) -> dict:
    """Pooled means over in-frame samples and pooled APs over valid samples (one seed or row)."""
    out = {k: float(df[k].mean()) if df[k].notna().any() else float("nan") for k in MEAN_KEYS}
    out.update(inout_metrics(prob_in=df["p_in"].to_numpy(), is_in=df["inout"].to_numpy()))
    out["n_samples"] = int(df["auc_vat"].notna().sum())
    out["n_valid"] = int(len(df))
    return out


def sauc_negatives(*, labels: dict, video_id: str, max_n: int, seed: int) -> np.ndarray:
    """In-frame fixations of the *other* test videos (this video's own if it is the only one),
    subsampled deterministically to ``max_n``: the shuffled-AUC negatives."""
    def fixations(lab):
        ok = lab["valid"] & (lab["inout"] > 0)
        return lab["gaze"][ok]

    others = [fixations(labels[k]) for k in sorted(labels) if k != video_id] or [fixations(labels[video_id])]
    xy = np.concatenate(others).astype(np.float64)
    if len(xy) > max_n:
        xy = xy[np.sort(np.random.default_rng(seed).choice(len(xy), max_n, replace=False))]
    return xy


@torch.no_grad()
def leak_check(*, model, arrays: dict, video_id: str, stats: dict, cfg: dict, fps: float, grid_hw: tuple[int, int],
               viewer: int = 0, n_positions: int = 4, seed: int = 0) -> dict:
    """Perturb every gaze-derived input after t - horizon and measure the change of the outputs at <= t.

    Through the real data path: the aligned labels of ``viewer`` whose raw gaze sample lies
    after ``t - horizon`` (and every missing label after it) are replaced by random
    in/out-of-frame gaze sampled after the cut, the inputs are rebuilt (:func:`prepare_arrays`) and the model
    is run again. Returns the largest |change| of any heatmap or in/out logit at steps <= t,
    and the largest probability mass moved (half the L1 distance of the heatmaps).
    """
    model.eval()
    rng = np.random.default_rng(seed)
    window = max(1, int(round(cfg["window_s"] * fps)))
    n_t = arrays["t"].size
    base = prepare_arrays(arrays=arrays, video_id=video_id, stats=stats, fps=fps, horizon_s=cfg["horizon_s"],
                          sigma=cfg["heatmap_sigma"], grid_hw=grid_hw, max_age_s=max_track_age(cfg))
    max_logit, max_mass = 0.0, 0.0
    positions = np.linspace(1, max(1, min(n_t, window) - 2), n_positions).astype(int)
    start = 0
    for k in positions:
        t_idx = start + int(k)
        cut = arrays["t"][t_idx] - cfg["horizon_s"]
        pert = {key: np.array(val, copy=True) for key, val in arrays.items()}
        # every label whose raw sample came after the cut, and every missing label after it
        after = np.nan_to_num(pert["gaze_t"][viewer], nan=-np.inf) > cut + 1e-9
        after |= ~pert["valid"][viewer] & (pert["t"] > cut + 1e-9)
        n = int(after.sum())
        pert["gaze"][viewer, after] = rng.uniform(-0.3, 1.3, (n, 2)).astype(pert["gaze"].dtype)
        pert["valid"][viewer, after] = True
        pert["inout"][viewer, after] = ((pert["gaze"][viewer, after] >= 0) & (pert["gaze"][viewer, after] <= 1)).all(1)
        pert["gaze_t"][viewer, after] = np.maximum(pert["t"][after], cut + 1e-6)
        other = prepare_arrays(arrays=pert, video_id=video_id, stats=stats, fps=fps, horizon_s=cfg["horizon_s"],
                               sigma=cfg["heatmap_sigma"], grid_hw=grid_hw, max_age_s=max_track_age(cfg))
        a = model(window_batch([(base, viewer, start)], window))
        b = model(window_batch([(other, viewer, start)], window))
        upto = slice(0, int(k) + 1)
        d_logit = max(float((a["heatmap_logits"][0, upto] - b["heatmap_logits"][0, upto]).abs().max()),
                      float((a["inout_logits"][0, upto] - b["inout_logits"][0, upto]).abs().max()))
        pa, pb = torch.softmax(a["heatmap_logits"][0, upto], -1), torch.softmax(b["heatmap_logits"][0, upto], -1)
        max_logit = max(max_logit, d_logit)
        max_mass = max(max_mass, float(0.5 * (pa - pb).abs().sum(-1).max()))
    return {"max_abs_dlogit": max_logit, "max_prob_mass_moved": max_mass, "n_positions": int(len(positions)),
            "video_id": video_id, "viewer": viewer}


# ---------------------------------------------------------------- DVC stages
def test_context(*, params: dict, root: Path, aois: bool = True) -> dict:
    """What every row scored on the test split shares (the floors' stage, each variant's and the
    horizons'): the test videos' labels, per-video evaluation maps (size, resized centre prior, sAUC
    negatives), AOIs per sample (``aois``; the horizons score no AOI metric, so they skip them and get
    ``None``), the corpus geometry and the output grid."""
    from gazelib.aoi.model_level import load_video_aois, prepare_video
    from gazelib.metrics import resize_bilinear

    index, meta = read_index(root)
    floors = json.loads((root / FLOORS).read_text())
    ecfg = params["evaluate"]
    _, gh, gw = index_grid(meta)
    test_files = split_files(root, index, "test")
    if not test_files:
        raise ValueError("no test video with gaze recordings; check the split ratios")
    labels = read_labels(test_files)
    manifest = load_manifest(root).set_index("video_id")
    geometry = corpus_geometry(root)
    prior = np.asarray(floors["prior"], np.float64).reshape(1, gh, gw)
    per_video = {}
    for vid in sorted(labels):
        hw = eval_map_shape(width=int(manifest.loc[vid, "width"]), height=int(manifest.loc[vid, "height"]),
                            saliency_width=ecfg["saliency_width"])
        per_video[vid] = {"eval_hw": hw, "prior_eval": resize_bilinear(maps=prior, out_hw=hw)[0],
                          "frame_wh": (int(manifest.loc[vid, "width"]), int(manifest.loc[vid, "height"])),
                          "other_xy": sauc_negatives(labels=labels, video_id=vid, max_n=ecfg["sauc_negatives"],
                                                     seed=params["seed"])}
    # AOI hit rate / mass per sample (stage aoi's data/aoi; NaN columns for a video without AOIs)
    aoi_videos = ({vid: prepare_video(aois=load_video_aois(root, vid), lab=labels[vid], gh=gh, gw=gw) for vid in labels}
                  if aois else None)
    return {"index": index, "meta": meta, "floors": floors, "gh": gh, "gw": gw, "test_files": test_files,
            "labels": labels, "manifest": manifest, "geometry": geometry, "per_video": per_video,
            "aoi_videos": aoi_videos,
            # what the score jobs read (_evaluate_job)
            "jobs": {"labels": labels, "per_video": per_video, "aoi_videos": aoi_videos, "gh": gh, "gw": gw,
                     "fixation_sigma": ecfg["fixation_map_sigma"], "geometry": geometry}}


def run_score_floors(*, params: dict, root: Path = Path(".")) -> dict:
    """DVC stage ``score_floors``: the floors (centre prior, persistence, inter-observer) scored once on
    the test split, by the protocol every variant's rows are scored with (``reports/eval/floors``:
    per-viewer samples and benchmark-protocol frames); each ``evaluate@<variant>`` appends them to its
    own rows, as if it had scored them itself."""
    from gazelib.core.compute import JobPool
    from gazelib.eval import benchmark as bm
    from gazelib.model.floors import floor_predictions

    c = test_context(params=params, root=root)
    gh, gw = c["gh"], c["gw"]
    floor_preds: dict[str, dict] = {}
    for vid in sorted(c["labels"]):
        for name, (prob, p_in) in floor_predictions(floors=c["floors"], lab=c["labels"][vid], gh=gh, gw=gw).items():
            floor_preds.setdefault(name, {})[vid] = {"prob": prob, "p_in": p_in}
    jobs = [{"kind": "score", "row": name, "seed": -1, "preds": preds} for name, preds in floor_preds.items()]
    with JobPool(fn=_evaluate_job, workers=int(params["evaluate"]["workers"]), context=c["jobs"],
                 what="score_floors") as pool:
        samples = pd.concat(pool.map(jobs), ignore_index=True)
    pv = _benchmark_targets(params=params, labels=c["labels"], per_video=c["per_video"], geometry=c["geometry"])
    frames = pd.concat([bm.score_row(row=name, seed=-1, probs={v: p["prob"] for v, p in floor_preds[name].items()},
                                     per_video=pv, gh=gh, gw=gw)
                        for name in ("centre_prior", "persistence") if name in floor_preds], ignore_index=True)
    out = root / FLOOR_SCORES
    write_table(out / "samples.parquet", samples)
    write_table(out / "benchmark_frames.parquet", frames)
    log.info("score_floors: %s on %d test videos (%d samples)", list(floor_preds), len(c["labels"]), len(samples))
    return {"rows": list(floor_preds), "n_samples": int(len(samples))}


def run_evaluate(*, params: dict, variant: str, root: Path = Path(".")) -> dict:
    """Score every seed of ``variant`` on the test split, beside the floors (scored once by
    :func:`run_score_floors`) and the ceiling, by one protocol."""
    from gazelib.core.io import read_table
    from gazelib.core.normalize import stats_hash
    from gazelib.model.checkpoint import model_from_checkpoint

    tc = test_context(params=params, root=root)   # (`c` names a control below)
    index, meta, floors = tc["index"], tc["meta"], tc["floors"]
    stats = read_norm_stats(root)
    modalities = params["variants"][variant]["modalities"]
    ecfg, cfg, fps = params["evaluate"], params["train"], meta["fps"]
    gh, gw, test_files, labels = tc["gh"], tc["gw"], tc["test_files"], tc["labels"]
    manifest, geometry, per_video = tc["manifest"], tc["geometry"], tc["per_video"]
    maps = index_maps(index)
    train_cfg = {k: v for k, v in cfg.items() if k != "seeds"}
    ds = GazeWindows(files=test_files, stats=stats, cfg=train_cfg, grid_hw=(gh, gw), fps=fps,
                     lengths=maps["length"], n_viewers=maps["viewers"], stride_s=cfg["window_s"])
    floor_samples = read_table(root / FLOOR_SCORES / "samples.parquet")[0]
    floor_rows = list(dict.fromkeys(floor_samples["row"]))   # in the order they were scored

    from gazelib.core.compute import JobPool
    from gazelib.model.bias import bias_diagnostic, bias_files, content_free_batch

    val_files = split_files(root, index, "val")
    val_ds = GazeWindows(files=val_files, stats=stats, cfg=train_cfg, grid_hw=(gh, gw), fps=fps,
                         lengths=maps["length"], n_viewers=maps["viewers"], stride_s=cfg["window_s"])
    val_labels = read_labels(val_files)
    frame_wh = {vid: (int(r["width"]), int(r["height"])) for vid, r in manifest.iterrows()}
    lambdas = [float(x) for x in ecfg["calibration_lambdas"]]
    calib_val: dict[float, list] = {lam: [] for lam in lambdas}
    test_probs: dict[int, dict] = {}  # per seed, for the calibration with the penalty chosen on val
    b_files = bias_files(root)
    b_batch = content_free_batch(files=b_files, stats=stats, cfg=train_cfg, fps=fps, grid_hw=(gh, gw))
    bias_per_seed = {}

    # attribution controls on the full variant: its moved modalities shifted / swapped (gazelib.eval.attribution)
    acfg = params["attribution"]
    controls, control_dir = {}, None
    if variant == acfg["full"] and acfg["controls"]:
        import tempfile

        from gazelib.eval.attribution import control_row, write_control_files

        control_dir = tempfile.TemporaryDirectory(prefix="gazelib-controls-")
        for c in acfg["controls"]:
            controls[c] = write_control_files(files=test_files, control=c, move=list(acfg["move"]), fps=fps,
                                              min_shift_s=acfg["min_shift_s"], out_dir=Path(control_dir.name) / c)

    # the models run here; the scoring (every row's metrics, the calibration fits) runs as independent jobs,
    # in evaluate.workers processes (the same bytes for any count: gazelib.core.compute.JobPool)
    calib = {"ks": list(ecfg["calibration_s"]), "sigma": cfg["heatmap_sigma"], "gh": gh, "gw": gw,
             "frame_wh": frame_wh, "horizon_s": cfg["horizon_s"]}
    context = {**tc["jobs"], "val_labels": val_labels, "calib": calib}
    score_jobs, val_jobs, first_model, first_preds = [], [], None, None
    for seed in cfg["seeds"]:
        model, _ = model_from_checkpoint(root / "models" / variant / f"seed{seed}" / "best.pt", expect={
            "variant": variant, "modalities": list(modalities), "norm_stats_hash": stats_hash(stats), "seed": seed})
        preds = predict(model=model, ds=ds)
        if first_model is None:  # the leak check and the overlays use the first seed
            first_model, first_preds = model, preds
        score_jobs.append({"kind": "score", "row": variant, "seed": seed, "preds": preds})
        for c, made in controls.items():
            if made["files"]:
                cds = GazeWindows(files=made["files"], stats=stats, cfg=train_cfg, grid_hw=(gh, gw), fps=fps,
                                  lengths=maps["length"], n_viewers=maps["viewers"], stride_s=cfg["window_s"])
                score_jobs.append({"kind": "score", "row": control_row(variant, c), "seed": seed,
                                   "preds": predict(model=model, ds=cds)})
        # every penalty on val, to choose one
        val_jobs.append({"kind": "calibration", "seed": seed, "preds": predict(model=model, ds=val_ds),
                         "lambdas": lambdas, "on": "val_labels"})
        test_probs[int(seed)] = {vid: {"prob": p["prob"]} for vid, p in preds.items()}
        bias_per_seed[int(seed)] = bias_diagnostic(model=model, batch=b_batch, gh=gh, gw=gw,
                                                   names=[f.stem for f in b_files])
    pool = JobPool(fn=_evaluate_job, workers=int(ecfg["workers"]), context=context, what=f"evaluate@{variant}")
    done = pool.map(score_jobs + val_jobs)
    tables = done[:len(score_jobs)]
    calib_val = {lam: [by_lam[lam] for by_lam in done[len(score_jobs):]] for lam in lambdas}
    samples = pd.concat(tables + [floor_samples], ignore_index=True)
    if control_dir is not None:
        control_dir.cleanup()
    first = sorted(labels)[0]
    leak = leak_check(model=first_model, arrays=read_aligned(path=ds.files[first], stop=ds.window), video_id=first,
                      stats=stats,
                      cfg=train_cfg, fps=fps, grid_hw=(gh, gw), seed=params["seed"])
    log.info("%s: leak check on %s: max |dlogit| %.3g, mass moved %.3g", variant, first,
             leak["max_abs_dlogit"], leak["max_prob_mass_moved"])
    per_seed = {int(s): summarise(samples[(samples["row"] == variant) & (samples["seed"] == s)]) for s in cfg["seeds"]}
    model_mean = {k: seed_mean([p[k] for p in per_seed.values()]) for k in per_seed[cfg["seeds"][0]]}
    metrics = {"model": model_mean, "model_per_seed": {f"seed{s}": v for s, v in per_seed.items()},
               **{name: summarise(samples[samples["row"] == name]) for name in floor_rows},
               "leak_check": leak, "variant": variant, "modalities": modalities, "seeds": list(cfg["seeds"]),
               "n_test_videos": len(test_files), "test_videos": sorted(labels), "protocol": PROTOCOL,
               "lookahead": params["features"]["lookahead"]}
    if controls:
        metrics["controls"] = {c: {"moved": list(acfg["move"]), "applied": made["applied"], "skipped": made["skipped"],
                                   **({"why": "; ".join(sorted(set(made["skipped"].values())))} if not made["files"]
                                      else {})} for c, made in controls.items()}
    with pool:  # the test calibration, with the penalty chosen on val, reuses the workers
        metrics["calibration"] = calibration_summary(
            test=lambda lam: pd.concat([by_lam[float(lam)] for by_lam in pool.map(
                [{"kind": "calibration", "seed": s, "preds": p, "lambdas": [lam], "on": "labels"}
                 for s, p in test_probs.items()])], ignore_index=True),
            val={lam: pd.concat(v, ignore_index=True) for lam, v in calib_val.items()},
            model_samples=samples[samples["row"] == variant], ks=list(ecfg["calibration_s"]), horizon_s=cfg["horizon_s"],
            out=root / "reports" / "calibration", curve=root / CURVES / "calibration" / f"{variant}.csv", variant=variant,
            longest_s=max(float(lab["t"][-1]) if lab["t"].size else 0.0 for lab in labels.values()))
    metrics["bias"] = bias_summary(per_seed=bias_per_seed, out=root / "reports" / "bias", variant=variant,
                                   levels=[f.stem for f in b_files])
    metrics["benchmark"] = _benchmark(params=params, variant=variant, labels=labels, per_video=per_video, gh=gh, gw=gw,
                                      geometry=geometry, floors=floors, test_probs=test_probs,
                                      floor_frames=read_table(root / FLOOR_SCORES / "benchmark_frames.parquet")[0],
                                      out=root / "reports" / "eval" / variant / "benchmark_frames.parquet")
    write_json(root / eval_metrics(variant), metrics)
    rep = root / "reports" / "eval" / variant
    write_table(rep / "samples.parquet", samples)
    table = samples.groupby(["video_id", "row"], sort=True)[list(MEAN_KEYS)].mean().reset_index()
    write_text(rep / "per_video.md", f"# {variant}: per-video means (model rows averaged over seeds)\n\n"
               + table.round(4).to_markdown(index=False) + "\n")
    _overlays(root=root, params=params, variant=variant, preds=first_preds, labels=labels, gh=gh, gw=gw, fps=fps)
    return metrics


def calibration_summary(*, test, val: dict, model_samples: pd.DataFrame, ks: list, horizon_s: float,
                        out: Path, curve: Path, variant: str, longest_s: float) -> dict:
    """Choose the ridge penalty on val (``val``: lambda -> samples; ``test``: lambda -> samples),
    report auc_vat / l2_vat / l2_diag per K on test, each K on its own samples (t >= K + horizon),
    with intervals over test videos x seeds (gazelib.stats.intervals) and the paired delta vs K = 0 on those
    same samples, check that K = 0 equals the uncalibrated model's own scores, and write
    ``<out>/<variant>.md`` and ``.png``, and the curve's data to ``curve`` (CSV, for dvc plots). A K the videos (longest ``longest_s`` s) are too short for is
    listed under ``not_scored`` with the reason; when no K can be scored the outputs say so
    (``applicable`` False) and nothing fails."""
    from gazelib.eval.calibration import choose_lambda, unscorable_ks
    from gazelib.eval.contrasts import compare_rows
    from gazelib.viz.plots import calibration_plot

    choice = choose_lambda(val_samples=val)
    df = test(choice["lambda"])  # test is scored once, with the penalty chosen on val
    name = {float(k): f"K={float(k):g}s" for k in ks}
    not_scored = unscorable_ks(samples=df, ks=ks, horizon_s=horizon_s, longest_s=longest_s)
    scored_ks = [float(k) for k in ks if name[float(k)] not in not_scored]
    lam_note = ("val videos: mean auc_vat over K > 0" if choice["chosen_on_val"] else
                "no val sample scored for any K > 0 (val videos too short): the largest penalty, the smallest change")
    res = {"applicable": bool(scored_ks), "lambda": choice["lambda"], "lambda_chosen_on": lam_note,
           "val_auc_vat_by_lambda": {f"{k:g}": v for k, v in choice["val_auc_vat"].items()},
           "val_auc_vat_uncalibrated": choice["val_auc_vat_uncalibrated"],
           "scored": f"per K: valid in-frame samples with t >= K + {horizon_s:g} s (train.horizon_s); each K's delta "
                     "vs K=0 on that K's own samples (paired)",
           "not_scored": not_scored, "rows": {}}
    title = f"# {variant}: few-shot viewer calibration (ridge lambda {choice['lambda']:g}, {lam_note})"
    plot_title = f"{variant}: viewer calibration"
    if not scored_ks:
        why = "; ".join(f"{k}: {v}" for k, v in not_scored.items())
        log.warning("%s: viewer calibration not applicable (%s); its report says so", variant, why)
        res["skipped"] = why
        write_text(out / f"{variant}.md", f"{title}\n\n**Not applicable on this corpus**: no K in "
                   "evaluate.calibration_s can be scored.\n\n" + "".join(f"- {k}: {v}\n" for k, v in not_scored.items()))
        calibration_plot(path=out / f"{variant}.png", ks=[], rows=[], title=plot_title,
                         note="not applicable: " + why)
        write_calibration_curve(path=curve, ks=[], rows=[])
        return res
    if not_scored:
        log.warning("%s: viewer calibration: %s not scored (%s)", variant, ", ".join(not_scored),
                    "; ".join(not_scored.values()))
    keys = ("auc_vat", "l2_vat", "l2_diag")
    k0 = name.get(0.0)
    base = df[df["k_s"] == 0.0] if k0 else None
    table, boot = {}, None
    for k in scored_ks:
        rows = df[df["k_s"] == k].assign(row=name[k])
        paired = k0 is not None and k != 0.0
        if paired:  # K = 0 on exactly this K's samples (t >= K + horizon)
            rows = pd.concat([rows, base[base["t"] >= k + horizon_s].assign(row=k0)], ignore_index=True)
        cmp = compare_rows(samples=rows.assign(inout=1, p_in=1.0),
                           rows={name[k]: "calibration", **({k0: "calibration"} if paired else {})},
                           references=[k0] if paired else [], keys=keys)
        boot = boot or cmp["intervals"]
        r = cmp["rows"][name[k]]
        table[name[k]] = {**r["metrics"], "ci95": r["ci95"], "n_samples": int((rows["row"] == name[k]).sum()),
                          "scored_from_s": k + horizon_s}
        if paired:
            table[name[k]]["K0_same_samples"] = {**cmp["rows"][k0]["metrics"], "ci95": cmp["rows"][k0]["ci95"]}
            table[name[k]]["vs_K0"] = cmp["deltas"][name[k]][f"vs_{k0}"]
    # K = 0 must be the uncalibrated model itself: same samples, same values, bit for bit
    k0_diff = None
    if k0 is not None and len(base):
        m = base.merge(model_samples[["seed", "video_id", "viewer", "step", *keys]],
                       on=["seed", "video_id", "viewer", "step"], suffixes=("", "_model"))
        k0_diff = float(max(np.nanmax(np.abs(m[k] - m[f"{k}_model"]).to_numpy(), initial=0.0) for k in keys)) \
            if len(m) else None
    res.update({"rows": table, "n_samples_per_k": {r: v["n_samples"] for r, v in table.items()},
                "k0_max_abs_diff_vs_uncalibrated": k0_diff, "intervals": boot,
                "fit_failures": calibration_fit_failures(test=df, val=val)})

    def ci(d):
        return f"[{d[0]:.4f}, {d[1]:.4f}]" if None not in d else "-"

    def delta(r, key):
        d = r.get("vs_K0", {}).get(key)
        if not d or d["delta"] is None:
            return "-"
        # one test video: an estimate but no interval
        return f"{d['delta']:+.4f} " + (f"[{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]" if None not in d["ci95"] else "[no interval]")

    def num(x):
        return f"{x:.4f}" if x is not None else "-"

    lines = [title, "", f"Scored {res['scored']}; 95% intervals resample test videos x seeds. "
             "`K=0 same` is the uncalibrated model on that K's samples.", "",
             "| K (s) | scored from t (s) | samples | auc_vat | 95% CI | K=0 same | Δ vs K=0 | l2_vat | 95% CI "
             "| K=0 same | Δ vs K=0 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for k in scored_ks:
        r = table[name[k]]
        same = r.get("K0_same_samples", {})
        lines.append(f"| {k:g} | {r['scored_from_s']:g} | {r['n_samples']} | {num(r['auc_vat'])} | "
                     f"{ci(r['ci95']['auc_vat'])} | {num(same.get('auc_vat'))} | {delta(r, 'auc_vat')} | "
                     f"{num(r['l2_vat'])} | {ci(r['ci95']['l2_vat'])} | {num(same.get('l2_vat'))} | "
                     f"{delta(r, 'l2_vat')} |")
    fails = res["fit_failures"]
    lines += ["", f"Fits the optimiser (L-BFGS-B) stopped before it converged: test {fails['test']} of "
              f"{fails['test_fits']}, val {fails['val']} of {fails['val_fits']} (a fit: seed x video x viewer x K, "
              "on val also x penalty). Each keeps its last finite correction; the log names the first few."]
    if not_scored:
        lines += ["", "Not scored (the clips are too short for these K):", ""]
        lines += [f"- {k}: {v}" for k, v in not_scored.items()]
    write_text(out / f"{variant}.md", "\n".join(lines) + "\n")
    calibration_plot(path=out / f"{variant}.png", ks=scored_ks, rows=[table[name[k]] for k in scored_ks],
                     title=plot_title, note=("not scored: " + ", ".join(not_scored)) if not_scored else "")
    write_calibration_curve(path=curve, ks=scored_ks, rows=[table[name[k]] for k in scored_ks])
    return res


CURVE_KEYS = ("auc_vat", "l2_vat")


def write_calibration_curve(*, path: Path, ks: list[float], rows: list[dict]) -> None:
    """The calibration curve as DVC plots it (dvc.yaml `plots`): one line per scored K with each
    metric and its 95 % interval (empty cells where there is none); only the header when no K was
    scored."""
    cols = ["k_s"] + [f"{k}{s}" for k in CURVE_KEYS for s in ("", "_lo", "_hi")]

    def cell(x) -> str:
        return "" if x is None else repr(float(x))

    lines = [",".join(cols)]
    for k, r in zip(ks, rows):
        vals = [k] + [v for m in CURVE_KEYS for v in (r.get(m), *(r["ci95"].get(m) or [None, None]))]
        lines.append(",".join(cell(v) for v in vals))
    write_text(path, "\n".join(lines) + "\n")


def seed_mean(values: list[float]) -> float:
    """The mean over seeds of a metric, NaN seeds left out; NaN when no seed has it (``l2_vat_deg`` without
    the corpus's screen geometry), without numpy's empty-slice warning."""
    arr = np.asarray(values, np.float64)
    return float("nan") if np.isnan(arr).all() else float(np.nanmean(arr))


def calibration_fit_failures(*, test: pd.DataFrame, val: dict) -> dict:
    """How many per-recording calibration fits (seed x video x viewer x K, and lambda on val) the
    optimiser did not finish (``test``, ``val``; each is logged with its message) of how many fits
    (``test_fits``, ``val_fits``: K > 0 with calibration samples)."""
    def count(df: pd.DataFrame) -> tuple[int, int]:
        if df.empty or "fit_failed" not in df:
            return 0, 0
        fits = df[(df["k_s"] > 0) & (df["n_calibration"] > 0)].drop_duplicates(["seed", "video_id", "viewer", "k_s"])
        return int(fits["fit_failed"].sum()), len(fits)
    on_val = [count(v) for v in val.values()]
    n_test, fits_test = count(test)
    return {"test": n_test, "val": int(sum(n for n, _ in on_val)), "test_fits": fits_test,
            "val_fits": int(sum(f for _, f in on_val))}


def bias_summary(*, per_seed: dict, out: Path, variant: str, levels: list[str]) -> dict:
    """Bias entropy over seeds (mean and per seed) and the seed-averaged bias map as an image."""
    from gazelib.model.bias import entropy_bits
    from gazelib.viz.plots import bias_map_plot

    mean_map = np.mean([d["map"] for d in per_seed.values()], 0)
    h_max = next(iter(per_seed.values()))["max_entropy_bits"]
    bias_map_plot(path=out / f"{variant}.png", bias_map=mean_map,
                  title=f"{variant}: mean prediction on content-free input ({entropy_bits(p=mean_map):.2f} of "
                        f"{h_max:.2f} bits)")
    strip = lambda d: {k: v for k, v in d.items() if k != "map"}  # noqa: E731
    return {"entropy_bits": float(np.mean([d["entropy_bits"] for d in per_seed.values()])),
            "entropy_share": float(np.mean([d["entropy_share"] for d in per_seed.values()])),
            "max_entropy_bits": h_max, "entropy_bits_of_mean_map": entropy_bits(p=mean_map),
            "inputs": levels, "per_seed": {f"seed{s}": strip(d) for s, d in per_seed.items()}}


PROTOCOL = ("Protocol (every row alike: model seeds, centre prior, persistence, inter-observer ceiling): each row "
            "predicts a distribution over the grid cells per viewer and step. auc_vat / l2_vat follow the "
            "VideoAttentionTarget evaluation code (heatmap resized to 64x64, 19x19 positive patch, argmax on the "
            "64x64 map), on valid in-frame samples; l2_diag is that error in frame pixels over the frame diagonal "
            "(aspect-true); l2_vat_deg is the same error as a visual angle when the corpus "
            "gives its screen geometry; hit1_cell / hit5_cell on the grid itself. The saliency family "
            "(NSS, CC, SIM, KL, AUC-Judd, sAUC, IG over the train centre prior) follows pysaliency, per fixation: "
            "the map a row predicts for one viewer at one frame, resized bilinearly to a 64-column evaluation map, "
            "against that viewer's fixation. inout_ap (in-frame positive, as published) and out_ap pool all valid "
            "samples.")


def _overlays(*, root: Path, params: dict, variant: str, preds: dict, labels: dict, gh: int, gw: int,
              fps: float) -> None:
    from gazelib.core.media import iter_frames
    from gazelib.viz.plots import overlay

    manifest = load_manifest(root).set_index("video_id")
    out = root / "reports" / "viz" / variant
    for old in out.glob("viz_*.png") if out.exists() else []:
        old.unlink()
    n = params["evaluate"]["viz_frames"]
    for vid in sorted(preds)[:2]:
        lab = labels[vid]
        cand = np.nonzero((lab["valid"] & (lab["inout"] > 0)).sum(0) >= 2)[0]
        if cand.size == 0:
            continue
        steps = cand[np.linspace(0, cand.size - 1, n).astype(int)]
        times = {float(lab["t"][s]): int(s) for s in steps}
        row = manifest.loc[vid]
        for t, frame in iter_frames(path=row["video_path"], sample_fps=fps,
                                    width=int(row["width"]), height=int(row["height"]), video_id=vid):
            s = next((times[k] for k in times if abs(k - t) < 0.5 / fps), None)
            if s is None:
                continue
            ok = lab["valid"][:, s] & (lab["inout"][:, s] > 0)
            overlay(path=out / f"viz_{vid}_{s:05d}.png", frame=frame, prob=preds[vid]["prob"][:, s].mean(0),
                    gh=gh, gw=gw, gaze=lab["gaze"][ok, s], title=f"{variant} {vid} t={t:.1f}s")


def _benchmark_targets(*, params: dict, labels: dict, per_video: dict, geometry: dict) -> dict:
    """Per test video: the all-observer fixation maps of the benchmark protocol beside its evaluation maps."""
    from gazelib.core.params import check_benchmark_params
    from gazelib.eval import benchmark as bm

    cfg = check_benchmark_params(params["evaluate"].get("benchmark"))
    return {vid: {**per_video[vid], **bm.video_targets(lab=labels[vid], video_id=vid, hw=per_video[vid]["eval_hw"],
                                                       other_xy=per_video[vid]["other_xy"], cfg=cfg, geometry=geometry)}
            for vid in sorted(labels)}


def _benchmark(*, params: dict, variant: str, labels: dict, per_video: dict, gh: int, gw: int, geometry: dict,
               floors: dict, test_probs: dict, floor_frames: pd.DataFrame, out: Path) -> dict:
    """Benchmark-protocol block (gazelib.eval.benchmark): the variant's seeds per frame beside the centre
    prior and persistence (``floor_frames``, scored once by :func:`run_score_floors`) (table at ``out``),
    and on the compare baseline's evaluation the infinite-observer ceiling (gazelib.eval.ceiling)."""
    import time

    from gazelib.core.params import check_benchmark_params
    from gazelib.eval import benchmark as bm
    from gazelib.eval.ceiling import ceiling_block

    cfg = check_benchmark_params(params["evaluate"].get("benchmark"))
    t0 = time.perf_counter()
    pv = _benchmark_targets(params=params, labels=labels, per_video=per_video, geometry=geometry)
    frames = [bm.score_row(row=variant, seed=s, probs={v: p["prob"] for v, p in probs.items()}, per_video=pv, gh=gh,
                           gw=gw) for s, probs in test_probs.items()]
    table = pd.concat(frames + [floor_frames], ignore_index=True)
    write_table(out, table)
    sig = sorted({pv[v]["from"] for v in pv})
    block = {"protocol": bm.PROTOCOL.format(sigma="; ".join(sig)),
             "sigma_px": {v: [round(float(x), 4) for x in pv[v]["sigma_px"]] for v in pv},
             "sigma_from": sig, "map_average": "rows that predict per viewer: mean over the video's viewers",
             "rows": bm.summary(table), "frames_table": out.name}
    t1 = time.perf_counter()
    log.info("%s: benchmark protocol scored %d frame rows in %.2f s", variant, len(table), t1 - t0)
    if variant == params["compare"]["baseline"]:
        def score_video(vid):
            return lambda prob, p_in, lab: score_rows(prob=prob, p_in=p_in, lab=lab, gh=gh, gw=gw, geometry=geometry,
                                                      fixation_sigma=params["evaluate"]["fixation_map_sigma"],
                                                      video_id=vid, **per_video[vid])
        block["ceiling"] = ceiling_block(labels=labels, per_video=pv, floors=floors, gh=gh, gw=gw,
                                         cfg={"splits": cfg["ceiling_splits"], "k_points": cfg["ceiling_k_points"]}, seed=params["seed"],
                                         score_video=score_video)
        log.info("%s: infinite-observer ceiling in %.2f s", variant, time.perf_counter() - t1)
    else:
        block["ceiling"] = f"computed once, in reports/metrics/eval/{params['compare']['baseline']}.json (compare.baseline)"
    return block
