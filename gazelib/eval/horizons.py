"""Forecasting across horizons: how fast the last seen gaze loses its value, and where content takes over.

For each horizon h in ``evaluate.horizons`` (seconds; each at least one align step) on the test split,
scored by the evaluation's own code (:func:`gazelib.eval.evaluate.score_rows`) and with the compare
intervals (:func:`gazelib.stats.intervals.compare_rows`: delete-one-video jackknife + seeds):

- **persistence@h**: the viewer's last gaze seen at t - h, its blur and prior weight refitted on the
  train split *at that horizon* (:func:`gazelib.model.floors.fit_persistence`);
- **track variants@h** (``evaluate.horizon_models: true``): every trained seed of each variant whose
  modalities include the track, with its track input cut at t - h. With ``train.horizons_sampled``
  each model is horizon-conditioned (trained with the track cut at horizons drawn per window; the
  track's age input tells it how old the last seen gaze is); without it the models are trained at
  ``train.horizon_s`` only and scored off their training horizon elsewhere (a lower bound on a model
  trained at h). At ``train.horizon_s`` the row equals the variant's evaluate row. The leak check
  (:func:`gazelib.eval.evaluate.leak_check`: every gaze input after t - h perturbed) runs per horizon;
- **horizon-free rows**: the centre prior, the inter-observer ceiling and each variant without the
  track (content only): nothing in them depends on the horizon, so each is one value, drawn as a
  flat line; their samples come from the evaluate stage's per-sample tables.

``crossover``: per content-only variant and metric, the shortest horizon at which the content row is
better than persistence at that horizon (point estimate), with every horizon's delta and interval.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from gazelib.core.io import read_table, write_json, write_text
from gazelib.core.layout import (
    CURVES,
    DETAILS,
    eval_metrics,
    index_maps, read_index, read_labels, split_files,
)
from gazelib.metrics import LOWER_IS_BETTER, POOLED_KEYS
from gazelib.core.params import check_horizons  # noqa: F401  (re-exported: the check lives with the params schema)

log = logging.getLogger(__name__)

KEYS = ("auc_vat", "l2_vat", "nss", "cc", "ig", "hit1_cell", "inout_ap")   # the curve's metrics
PLOT_KEYS = ("auc_vat", "nss")
# outputs: details go under reports/metrics (docs/metrics.md); the curves' data under reports/curves, one CSV
# per row group (persistence, each variant, each horizon-free row repeated at every horizon) for `dvc plots`
METRICS = DETAILS / "horizons.json"
CURVES_DIR = CURVES / "horizons"


def row_name(name: str, h: float) -> str:
    return f"{name}@{h:g}s"


def crossover(*, rows: dict, persistence: dict[float, str], content: str, keys=KEYS) -> dict:
    """Per metric: the shortest horizon where ``content`` beats persistence@h (point estimate), and each
    horizon's delta (content - persistence@h) with its interval."""
    out = {}
    for k in keys:
        per_h, first = {}, None
        for h, name in sorted(persistence.items()):
            d = rows["deltas"][content].get(f"vs_{name}", {}).get(k)
            if d is None or d["delta"] is None:
                continue
            per_h[f"{h:g}"] = {"delta": d["delta"], "ci95": d["ci95"], "excludes_zero": d["excludes_zero"]}
            if first is None and d["better"]:
                first = h
        out[k] = {"content_better_from_s": first, "delta_content_minus_persistence": per_h}
    return out


def run_horizons(*, params: dict, root: Path = Path(".")) -> dict:
    """Score persistence and the track variants at every horizon; write reports/metrics/horizons.json, the
    report's section (reports/horizons.md, .png) and the curves' data (reports/curves/horizons/)."""
    from gazelib.core.compute import map_jobs
    from gazelib.eval.contrasts import compare_rows
    from gazelib.eval.evaluate import test_context

    # the test split as evaluate scores it (labels, per-video maps, geometry); no AOIs: not on the curve
    c = test_context(params=params, root=root, aois=False)
    index, gh, gw = c["index"], c["gh"], c["gw"]
    labels, per_video, geometry, test_files = c["labels"], c["per_video"], c["geometry"], c["test_files"]
    fps = float(c["meta"]["fps"])
    ecfg, tcfg = params["evaluate"], params["train"]
    horizons = check_horizons(horizons=ecfg["horizons"], fps=fps)
    trained_h = float(tcfg["horizon_s"])
    prior = np.asarray(c["floors"]["prior"], np.float64)
    train = list(read_labels(split_files(root, index, "train")).values())

    variants = params["variants"]
    track_variants = [v for v in variants if "track" in variants[v]["modalities"]]
    content_variants = [v for v in variants if "track" not in variants[v]["modalities"]]
    model_variants = track_variants if ecfg["horizon_models"] else []
    # independent jobs (persistence refitted at each horizon; each track variant's seeds at each horizon), in
    # evaluate.workers processes: the same bytes for any count (gazelib.core.compute.JobPool)
    context = {"root": root, "params": params, "labels": labels, "train": train, "prior": prior,
               "per_video": per_video, "geometry": geometry, "grid_hw": (gh, gw), "fps": fps,
               "test_files": test_files}
    jobs: list[dict] = [{"kind": "persistence", "h": h} for h in horizons]
    jobs += [{"kind": "model", "h": h, "variant": v} for v in model_variants for h in horizons]
    # at train.horizon_s a track variant's row is its evaluate row (the same models, windows, cut and code):
    # taken from the evaluate stage's samples and leak check instead of computed again
    evaluated = {i: _evaluated_row(root=root, variant=j["variant"], h=j["h"]) for i, j in enumerate(jobs)
                 if j["kind"] == "model" and j["h"] == trained_h}
    todo = [j for i, j in enumerate(jobs) if evaluated.get(i) is None]
    # one torch thread per job: the models' outputs were the same bytes with 1, 2 and 3 threads (docs/speed.md)
    computed = iter(map_jobs(fn=_horizon_job, jobs=todo, workers=ecfg["workers"], context=context, threads=1,
                             what="horizons"))
    done = [evaluated[i] if evaluated.get(i) is not None else next(computed) for i in range(len(jobs))]
    columns = list(done[0]["table"].columns)   # a persistence row's: score_rows' columns, row, seed, video_id
    for i, res in evaluated.items():
        if res is not None:
            res["table"] = res["table"][columns]
    tables, kinds, fitted = [], {}, {}
    persistence_rows: dict[float, str] = {}
    leaks, model_rows = {}, {}
    for job, res in zip(jobs, done):
        name = res["row"]
        tables.append(res["table"])
        if job["kind"] == "persistence":
            pf = res["fitted"]
            fitted[f"{job['h']:g}"] = pf
            kinds[name] = "floor"
            persistence_rows[job["h"]] = name
            log.info("horizons: persistence at %g s fitted (sigma %g, w %g) and scored", job["h"], pf["sigma"], pf["w"])
        else:
            leaks[name] = res["leak"]
            kinds[name] = "variant"
            model_rows[name] = name
            log.info("horizons: %s scored (%d seeds); leak check max |dlogit| %.3g", name,
                     len(params["train"]["seeds"]), res["leak"]["max_abs_dlogit"])
    # horizon-free rows, from the evaluate stage's per-sample tables (the same samples, scored by the same code)
    free = {}
    for v in sorted(variants):
        path = root / "reports" / "eval" / v / "samples.parquet"
        if not path.is_file():
            continue
        df, _ = read_table(path)
        if not free:
            for floor in ("centre_prior", "inter_observer"):
                free[floor] = df[df["row"] == floor]
                kinds[floor] = "floor" if floor == "centre_prior" else "ceiling"
        if v in content_variants:
            free[v] = df[df["row"] == v]
            kinds[v] = "variant"
        if not ecfg["horizon_models"] and v in track_variants:
            name = row_name(v, trained_h)
            free[name] = df[df["row"] == v].assign(row=name)
            kinds[name] = "variant"
    tables += [d for d in free.values() if len(d)]
    samples = pd.concat(tables, ignore_index=True)
    samples = samples[samples["video_id"].isin(sorted(labels))]
    keys = tuple(k for k in KEYS if k in samples.columns or k in POOLED_KEYS)
    refs = list(persistence_rows.values())
    rows = compare_rows(samples=samples, rows=kinds, references=refs, keys=keys)
    cross = {c: crossover(rows=rows, persistence=persistence_rows, content=c, keys=keys)
             for c in content_variants if c in kinds}
    out = {"horizons_s": horizons, "trained_horizon_s": trained_h, "keys": list(keys),
           "lower_is_better": sorted(k for k in keys if k in LOWER_IS_BETTER),
           "persistence_fitted": fitted, "intervals": rows["intervals"],
           "rows": {r: {**v, "horizon_s": _horizon_of(r)} for r, v in rows["rows"].items()},
           "crossover": cross, "leak_check": leaks,
           "models_scored_at": _models_note(model_rows=bool(model_rows), tcfg=tcfg),
           "lookahead": params["features"]["lookahead"]}
    write_json(root / METRICS, out)
    write_text(root / "reports" / "horizons.md", horizons_markdown(out))
    horizon_plot(path=root / "reports" / "horizons.png", metrics=out)
    write_curves(folder=root / CURVES_DIR, metrics=out)
    return out


def write_curves(*, folder: Path, metrics: dict) -> None:
    """``<folder>/<row group>.csv``: horizon_s and each metric with its 95 % interval (empty: none); a
    horizon-free row is written at every horizon (a flat line). Files of groups no longer present go."""
    groups: dict[str, list] = {}
    for r, row in metrics["rows"].items():
        groups.setdefault(r.split("@")[0], []).append(row)
    cols = ["horizon_s"] + [f"{k}{s}" for k in metrics["keys"] for s in ("", "_lo", "_hi")]

    def cell(x) -> str:
        return "" if x is None else repr(float(x))

    for g, rows in sorted(groups.items()):
        at = sorted(((row["horizon_s"], row) for row in rows), key=lambda p: p[0]) if rows[0]["horizon_s"] is not None \
            else [(h, rows[0]) for h in metrics["horizons_s"]]
        lines = [",".join(cols)]
        for h, row in at:
            vals = [h] + [v for k in metrics["keys"] for v in (row["metrics"][k], *(row["ci95"][k] or [None, None]))]
            lines.append(",".join(cell(v) for v in vals))
        write_text(folder / f"{g}.csv", "\n".join(lines) + "\n")
    if folder.is_dir():
        for old in folder.glob("*.csv"):
            if old.stem not in groups:
                old.unlink()


def _models_note(*, model_rows: bool, tcfg: dict) -> str:
    if not model_rows:
        return "train.horizon_s only (evaluate.horizon_models: false)"
    if tcfg.get("horizons_sampled"):
        return ("every horizon; one horizon-conditioned model per seed, trained with the track cut at horizons "
                f"drawn from {list(tcfg['horizons_sampled'])} (train.horizons_sampled)")
    return (f"every horizon; the models are trained at train.horizon_s = {tcfg['horizon_s']:g} s only, so at other "
            "horizons they are scored off their training horizon")


def _horizon_of(row: str) -> float | None:
    if "@" in row and row.endswith("s"):
        try:
            return float(row.rsplit("@", 1)[1][:-1])
        except ValueError:
            return None
    return None


def _score(ctx: dict, row: str, seed: int, preds: dict) -> pd.DataFrame:
    from gazelib.eval.evaluate import score_rows

    gh, gw = ctx["grid_hw"]
    ecfg = ctx["params"]["evaluate"]
    return pd.concat([score_rows(prob=preds[v]["prob"], p_in=preds[v]["p_in"], lab=ctx["labels"][v], gh=gh, gw=gw,
                                 fixation_sigma=ecfg["fixation_map_sigma"], geometry=ctx["geometry"], video_id=v,
                                 **ctx["per_video"][v]).assign(row=row, seed=seed, video_id=v) for v in sorted(preds)],
                     ignore_index=True)


def _evaluated_row(*, root: Path, variant: str, h: float) -> dict | None:
    """``variant``'s evaluate samples as the row ``variant@h`` and its evaluate leak check, or None when the
    evaluate stage's outputs for it are missing."""
    samples, metrics = root / "reports" / "eval" / variant / "samples.parquet", root / eval_metrics(variant)
    if not (samples.is_file() and metrics.is_file()):
        return None
    df, _ = read_table(samples)
    name = row_name(variant, h)
    return {"row": name, "table": df[df["row"] == variant].assign(row=name),
            "leak": json.loads(metrics.read_text())["leak_check"]}


def _horizon_job(ctx: dict, *, kind: str, h: float, variant: str = "") -> dict:
    """One row of the horizon curve (run by :class:`gazelib.core.compute.JobPool`): ``persistence`` refitted on
    train at horizon ``h`` and scored; ``model``: every seed of track ``variant`` with its track cut at t - h,
    scored, and the leak check at that horizon."""
    from gazelib.data.dataset import GazeWindows, read_aligned
    from gazelib.eval.evaluate import leak_check
    from gazelib.model.inference import predict
    from gazelib.model.floors import fit_persistence, persistence_prediction
    from gazelib.core.layout import read_norm_stats
    from gazelib.core.normalize import stats_hash
    from gazelib.model.checkpoint import model_from_checkpoint

    params, root, labels = ctx["params"], ctx["root"], ctx["labels"]
    gh, gw = ctx["grid_hw"]
    ecfg = params["evaluate"]
    if kind == "persistence":
        pf = fit_persistence(train=ctx["train"], gh=gh, gw=gw, horizon_s=h, prior=ctx["prior"],
                             sigmas=ecfg["floor_sigmas"], weights=ecfg["floor_weights"], max_samples=20000,
                             rng=np.random.default_rng(params["seed"]))
        preds = {}
        for vid in sorted(labels):
            prob, p_in = persistence_prediction(persistence=pf, prior=ctx["prior"], lab=labels[vid], horizon_s=h,
                                                gh=gh, gw=gw)
            preds[vid] = {"prob": prob, "p_in": p_in}
        name = row_name("persistence", h)
        return {"row": name, "table": _score(ctx, name, -1, preds), "fitted": pf}
    index, _ = read_index(root)
    maps = index_maps(index)
    stats = read_norm_stats(root)
    hcfg = {**{k: v for k, v in params["train"].items() if k != "seeds"}, "horizon_s": h}
    mods = params["variants"][variant]["modalities"]
    ds = GazeWindows(files=ctx["test_files"], stats=stats, cfg=hcfg, grid_hw=(gh, gw), fps=ctx["fps"],
                     lengths=maps["length"], n_viewers=maps["viewers"], stride_s=hcfg["window_s"])
    name = row_name(variant, h)
    tables, first_model = [], None
    for seed in params["train"]["seeds"]:
        model, _ = model_from_checkpoint(root / "models" / variant / f"seed{seed}" / "best.pt", expect={
            "variant": variant, "modalities": list(mods), "norm_stats_hash": stats_hash(stats), "seed": seed})
        first_model = model if first_model is None else first_model
        tables.append(_score(ctx, name, int(seed), predict(model=model, ds=ds)))
    first = sorted(ctx["test_files"], key=lambda p: p.stem)[0]
    leak = leak_check(model=first_model, arrays=read_aligned(path=first, stop=ds.window), video_id=first.stem,
                      stats=stats, cfg=hcfg, fps=ctx["fps"], grid_hw=(gh, gw), seed=params["seed"])
    return {"row": name, "table": pd.concat(tables, ignore_index=True), "leak": leak}


def _fmt(v, ci) -> str:
    if v is None:
        return "n/a"
    if ci and ci[0] is not None:
        return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{v:.3f}"


def horizons_markdown(m: dict) -> str:
    keys = m["keys"]
    lines = ["# Forecasting across horizons", "",
             f"Test split, {m['intervals']['n_test_videos']} test video(s); 95% intervals: {m['intervals']['method']}"
             + (f" ({why})" if (why := m["intervals"]["significance_not_assessed"]) else "")
             + ".",
             f"Track variants scored at: {m['models_scored_at']}. Rows without '@' do not depend on the horizon "
             "(docs/horizons.md).", "",
             "| row | horizon (s) | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    order = sorted(m["rows"], key=lambda r: (m["rows"][r]["horizon_s"] is None, r.split("@")[0],
                                             m["rows"][r]["horizon_s"] or 0))
    for r in order:
        row = m["rows"][r]
        h = row["horizon_s"]
        lines.append(f"| {r.split('@')[0]} | {'any' if h is None else f'{h:g}'} | "
                     + " | ".join(_fmt(row["metrics"][k], row["ci95"][k]) for k in keys) + " |")
    for c, per in m["crossover"].items():
        lines += ["", f"**Where {c} (content, no track) overtakes the last seen gaze** "
                      "(content - persistence@h, 95% interval):", ""]
        for k in keys:
            e = per[k]
            first = e["content_better_from_s"]
            cells = ", ".join(f"{h} s: {d['delta']:+.3f} [{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}]"
                              if d["ci95"][0] is not None else f"{h} s: {d['delta']:+.3f}"
                              for h, d in e["delta_content_minus_persistence"].items())
            where = f"from {first:g} s" if first is not None else "not within the horizons"
            lines.append(f"- {k}: {where}"
                         f" ({cells})")
    if m["leak_check"]:
        worst = max(v["max_abs_dlogit"] for v in m["leak_check"].values())
        lines += ["", f"Leak check at every horizon (gaze after t - h perturbed): max |dlogit| {worst:.3g}."]
    return "\n".join(lines) + "\n"


def horizon_plot(*, path: Path, metrics: dict) -> None:
    """Per metric in :data:`PLOT_KEYS`: value against horizon with 95% intervals; horizon-free rows as lines."""
    from gazelib.viz.plots import _plt, _save

    plt = _plt()
    keys = [k for k in PLOT_KEYS if k in metrics["keys"]]
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), dpi=100, squeeze=False)
    groups: dict[str, list] = {}
    for r, row in metrics["rows"].items():
        groups.setdefault(r.split("@")[0], []).append((row["horizon_s"], row))
    colours = {g: f"C{i % 10}" for i, g in enumerate(sorted(groups))}
    for ax, k in zip(axes[0], keys):
        for g, pts in sorted(groups.items()):
            if pts[0][0] is None:
                v = pts[0][1]["metrics"][k]
                if v is not None:
                    ax.axhline(v, ls="--" if g in ("centre_prior", "inter_observer") else "-", lw=1, label=g,
                               c=colours[g])
                continue
            pts = sorted(pts, key=lambda p: p[0])
            hs = np.array([p[0] for p in pts])
            v = np.array([np.nan if p[1]["metrics"][k] is None else p[1]["metrics"][k] for p in pts], float)
            lo = np.array([np.nan if p[1]["ci95"][k][0] is None else p[1]["ci95"][k][0] for p in pts], float)
            hi = np.array([np.nan if p[1]["ci95"][k][1] is None else p[1]["ci95"][k][1] for p in pts], float)
            ax.errorbar(hs, v, yerr=np.nan_to_num(np.abs([v - lo, hi - v])), marker="o", capsize=3, label=g,
                        c=colours[g])
        ax.axvline(metrics["trained_horizon_s"], c="grey", lw=0.5, ls=":")
        ax.set_xscale("log")
        ax.set_xticks(metrics["horizons_s"])
        ax.set_xticklabels([f"{h:g}" for h in metrics["horizons_s"]])
        ax.minorticks_off()
        ax.set_xlabel("horizon (s)")
        ax.set_ylabel(k + (" (lower is better)" if k in LOWER_IS_BETTER else " (higher is better)"), fontsize=8)
        ax.legend(fontsize=6)
    fig.suptitle("forecasting across horizons (dotted: train.horizon_s)", fontsize=9)
    _save(fig, path)
