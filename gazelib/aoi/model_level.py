"""The model at the AOI level: predicted probability mass per AOI, and AOI hit rate.

For each aligned step, the AOI *layer* (the face identities and user AOIs of the video; the
speaker AOI is not in it, being one of the faces) partitions the frame: a point belongs to the
smallest AOI containing it, or to ``elsewhere``. The share of each grid cell in each part is
measured on ``sub x sub`` points per cell, so a row's predicted mass in an AOI is
``sum_cells p(cell) * share(cell, AOI)`` (the heatmap is constant within a cell).

Per in-frame sample (viewer, step) of a row:

- ``aoi_hit``: 1 if the part the viewer looks at (an AOI or elsewhere) is the part the row gives
  the most mass, else 0. Its mean is the **AOI hit rate** ("predicts the AOI looked at 71 % of the
  time"). ``elsewhere`` counts as a part, so a row that always bets on the background scores the
  share of gaze on the background.
- ``aoi_mass``: the row's mass in the part the viewer looks at (a likelihood at the AOI level).
- ``aoi_tv``: at the sample's step, half the L1 distance between the row's mass per part (mean
  over the in-frame viewers' maps) and the share of those viewers in each part: 0 when the row
  puts exactly the viewers' shares on the AOIs, 1 at worst (repeated for each sample of a step).

AOIs are measurements of the video made with the whole video (tracks bridge gaps, the speaker
window is centred); they score predictions and never feed a model, so causality is untouched.

Intervals (:func:`aoi_rows`): the project's method (:mod:`gazelib.stats.intervals`), over test videos
and each row's seeds, on the per-sample means above.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from gazelib.aoi.shapes import Aoi, exclusive_labels

AOI_KEYS = ("aoi_hit", "aoi_mass", "aoi_tv")


def layer(aois: list[Aoi]) -> list[Aoi]:
    return [a for a in aois if a.kind in ("face", "user")]


def cell_shares(*, aois: list[Aoi], times: np.ndarray, gh: int, gw: int, sub: int = 4) -> np.ndarray:
    """[T, A + 1, gh * gw]: the share of each cell in each AOI of the layer (last: elsewhere).

    Each AOI's shape is interpolated once per step and the ``sub x sub`` points of every cell are
    tested against it together; the counts per (step, part, cell) are one ``bincount``."""
    times = np.asarray(times, np.float64)
    n_a, n_c = len(aois), gh * gw
    ys = (np.arange(gh * sub) + 0.5) / (gh * sub)
    xs = (np.arange(gw * sub) + 0.5) / (gw * sub)
    py, px = np.meshgrid(ys, xs, indexing="ij")
    cell = ((py * gh).astype(int).clip(0, gh - 1) * gw + (px * gw).astype(int).clip(0, gw - 1)).ravel()
    out = np.zeros((len(times), n_a + 1, n_c))
    px, py = px.ravel()[None, :], py.ravel()[None, :]
    for t0 in range(0, len(times), 64):
        tt = times[t0:t0 + 64]
        lab = exclusive_labels(aois, tt, px, py)                               # [len(tt), points]
        lab = np.where(lab < 0, n_a, lab)
        idx = (np.arange(len(tt))[:, None] * (n_a + 1) + lab) * n_c + cell[None, :]
        out[t0:t0 + len(tt)] = np.bincount(idx.ravel(), minlength=len(tt) * (n_a + 1) * n_c).reshape(
            len(tt), n_a + 1, n_c)
    return out / (sub * sub)


def aoi_mass(*, prob: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """prob [V, T, C] (each map sums to 1), shares [T, A + 1, C] -> mass [V, T, A + 1]."""
    return np.einsum("vtc,tac->vta", np.asarray(prob, np.float64), shares)


def prepare_video(*, aois: list[Aoi] | None, lab: dict, gh: int, gw: int, sub: int = 4) -> dict | None:
    """What every row of one video shares: the cell shares per step and the part each sample looks at."""
    if aois is None:
        return None
    aois = layer(aois)
    t = np.asarray(lab["t"], np.float64)
    v_n, t_n = lab["valid"].shape
    inframe = lab["valid"].astype(bool) & (lab["inout"] > 0)
    gx, gy = lab["gaze"][..., 0].astype(np.float64), lab["gaze"][..., 1].astype(np.float64)
    looked = np.ascontiguousarray(exclusive_labels(aois, t, gx.T, gy.T).T)    # [V, T]: shapes once per step
    looked = np.where(looked < 0, len(aois), looked)
    n_in = inframe.sum(0)
    share = np.zeros((t_n, len(aois) + 1))
    for v in range(v_n):
        np.add.at(share, (np.nonzero(inframe[v])[0], looked[v][inframe[v]]), 1.0)
    share /= np.maximum(n_in, 1)[:, None]
    return {"shares": cell_shares(aois=aois, times=t, gh=gh, gw=gw, sub=sub), "looked": looked, "inframe": inframe,
            "viewer_share": share, "names": [a.name for a in aois] + ["elsewhere"]}


def sample_columns(*, df: pd.DataFrame, prob: np.ndarray, video: dict | None) -> pd.DataFrame:
    """``df`` (one row per valid sample: viewer, step, as :func:`gazelib.eval.evaluate.score_rows`) with the
    :data:`AOI_KEYS` columns (NaN out of frame, or when the video has no AOIs); ``video`` from
    :func:`prepare_video`."""
    cols = {k: np.full(len(df), np.nan) for k in AOI_KEYS}
    if video is None:
        return df.assign(**cols)
    mass = aoi_mass(prob=prob, shares=video["shares"])                          # [V, T, A + 1]
    inframe, looked = video["inframe"], video["looked"]
    n_in = inframe.sum(0)
    pred = np.where(inframe[..., None], mass, 0.0).sum(0) / np.maximum(n_in, 1)[:, None]
    tv = 0.5 * np.abs(pred - video["viewer_share"]).sum(1)                      # [T]
    vv, tt = df["viewer"].to_numpy(), df["step"].to_numpy()
    ok = inframe[vv, tt]
    lk = looked[vv[ok], tt[ok]]
    m = mass[vv[ok], tt[ok]]
    cols["aoi_hit"][ok] = (np.argmax(m, 1) == lk).astype(np.float64)
    cols["aoi_mass"][ok] = m[np.arange(len(lk)), lk]
    cols["aoi_tv"][ok] = tv[tt[ok]]
    return df.assign(**cols)


def load_video_aois(root, video_id: str) -> list[Aoi] | None:
    """The AOIs the aoi stage wrote for ``video_id`` (None when it has none)."""
    from pathlib import Path

    from gazelib.aoi.shapes import aois_from_table
    from gazelib.core.io import read_table
    from gazelib.core.layout import AOI

    p = Path(root) / AOI / f"{video_id}.parquet"
    if not p.exists():
        return None
    return aois_from_table(read_table(p)[0])


def aoi_rows(*, samples: pd.DataFrame, rows: dict[str, str], references: Sequence[str] = (), ci: float = 0.95) -> dict:
    """Every row's AOI hit rate, mass and TV with intervals over test videos and seeds, and each row's
    delta vs ``references`` (:mod:`gazelib.stats.intervals`). Empty dict when no sample has AOI columns."""
    from gazelib.stats.intervals import contrast_interval, leave_one_out_weights, pooled_means, too_few_clusters

    if "aoi_hit" not in samples or not samples["aoi_hit"].notna().any():
        return {}
    videos = sorted(samples["video_id"].unique())
    pos = {v: i for i, v in enumerate(videos)}
    w = leave_one_out_weights(len(videos))
    vals: dict[str, dict[str, np.ndarray]] = {}
    n_samples = {}
    for r in dict.fromkeys(list(rows) + list(references)):
        d = samples[samples["row"] == r]
        if d.empty:
            continue
        per_key = {k: [] for k in AOI_KEYS}
        for s in sorted(d["seed"].unique()):
            ds = d[d["seed"] == s]
            vi = ds["video_id"].map(pos).to_numpy()
            for k in AOI_KEYS:
                x = ds[k].to_numpy(np.float64)
                ok = np.isfinite(x)
                sums = np.bincount(vi[ok], weights=x[ok], minlength=len(videos))
                cnts = np.bincount(vi[ok], minlength=len(videos)).astype(np.float64)
                per_key[k].append(pooled_means(sums=sums[None], counts=cnts[None], weights=w)[:, 0])
        vals[r] = {k: np.stack(v, 1) for k, v in per_key.items()}
        n_samples[r] = int(d["aoi_hit"].notna().sum())
    out: dict = {"method": "AOI layer: face identities + user AOIs + elsewhere (docs/aoi.md); intervals as compare's",
           "n_test_videos": len(videos), "significance_not_assessed": too_few_clusters(len(videos)),
           "rows": {}, "deltas": {}}
    for r, kind in rows.items():
        if r not in vals:
            continue
        ivs = {k: contrast_interval(plus=[vals[r][k]], ci=ci) for k in AOI_KEYS}
        out["rows"][r] = {"kind": kind, "n_samples": n_samples[r], "metrics": {k: ivs[k]["estimate"] for k in AOI_KEYS},
                          "ci95": {k: ivs[k]["ci"] for k in AOI_KEYS}}
        out["deltas"][r] = {}
        for ref in references:
            if ref != r and ref in vals:
                iv = contrast_interval(plus=[vals[r]["aoi_hit"]], minus=[vals[ref]["aoi_hit"]], ci=ci)
                out["deltas"][r][f"vs_{ref}"] = {"aoi_hit": {"delta": iv["estimate"], "ci95": iv["ci"], "p": iv["p"]}}
    return out


def render_aoi_rows(res: dict) -> str:
    """Markdown table of :func:`aoi_rows`."""
    if not res:
        return ""

    def f(e, k):
        v, (lo, hi) = e["metrics"][k], e["ci95"][k]
        if v is None:
            return "–"
        return f"{v:.3f}" + ("" if lo is None else f" [{lo:.3f}, {hi:.3f}]")

    lines = ["| row | kind | AOI hit rate | mass on the AOI looked at | TV(mass, viewers' shares) ↓ |",
             "|---|---|---|---|---|"]
    for r, e in res["rows"].items():
        lines.append(f"| {r} | {e['kind']} | {f(e, 'aoi_hit')} | {f(e, 'aoi_mass')} | {f(e, 'aoi_tv')} |")
    note = (f"\n\n95 % intervals over {res['n_test_videos']} test videos and seeds (compare's method)."
            + (f" {res['significance_not_assessed']}." if res["significance_not_assessed"] else ""))
    return "\n".join(lines) + note
