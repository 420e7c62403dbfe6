"""Figures that need no network: overlays of predictions on frames, training and compare plots (PNG)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from gazelib.core.io import atomic_path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def overlay(*, path: Path, frame: np.ndarray, prob: np.ndarray, gh: int, gw: int, gaze: np.ndarray,
            title: str) -> None:
    """Frame with the predicted heatmap, true gaze (circles) and predicted point (cross)."""
    plt = _plt()
    h, w = frame.shape[:2]
    fig, ax = plt.subplots(figsize=(6.4, 3.6 + 0.4), dpi=100)
    ax.imshow(frame)
    ax.imshow(prob.reshape(gh, gw), extent=(0, w, h, 0), alpha=0.45, cmap="inferno", interpolation="bilinear")
    pts = gaze[np.isfinite(gaze).all(1)] if len(gaze) else gaze
    if len(pts):
        ax.scatter(pts[:, 0] * w, pts[:, 1] * h, s=80, facecolors="none", edgecolors="cyan", linewidths=2, label="true gaze")
    k = int(np.argmax(prob))
    ax.scatter([(k % gw + 0.5) / gw * w], [(k // gw + 0.5) / gh * h], marker="x", s=120, c="lime", linewidths=3,
               label="predicted")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    ax.legend(loc="lower right", fontsize=7)
    _save(fig, path)


def bar_compare(*, path: Path, names: list[str], values: list[float], lo: list[float], hi: list[float],
                floor: float, ceiling: float, metric: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    x = np.arange(len(names))
    err = np.array([np.array(values) - np.array(lo), np.array(hi) - np.array(values)])
    ax.bar(x, values, yerr=np.nan_to_num(err), capsize=4, color="#4c72b0")
    ax.axhline(floor, ls="--", c="grey", label="persistence (floor)")
    ax.axhline(ceiling, ls=":", c="green", label="inter-observer (ceiling)")
    ax.set_xticks(x, names)
    ax.set_ylabel(f"{metric} (bars: 95% CI of the delta vs baseline)", fontsize=7)
    ax.tick_params(axis="x", labelsize=7, rotation=20)
    ax.legend(fontsize=7)
    _save(fig, path)


def curves(*, path: Path, history: list[dict], title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    ep = [h["epoch"] for h in history]
    for k in ("train_loss", "val_loss"):
        ax.plot(ep, [h.get(k, np.nan) for h in history], marker="o", label=k)
    ax.set_xlabel("epoch")
    ax.set_title(title)
    ax.legend()
    _save(fig, path)


def calibration_plot(*, path: Path, ks: list[float], rows: list[dict], title: str, note: str = "") -> None:
    """auc_vat and l2_vat against calibration seconds K with 95% intervals (each K on its own samples,
    t >= K + horizon), and the uncalibrated model on those same samples (``row["K0_same_samples"]``,
    dashed) where a row has it; ``note`` under the title. With no row the figure only says ``note``
    (why nothing could be scored)."""
    import textwrap

    plt = _plt()
    if not rows:
        fig, ax = plt.subplots(figsize=(7, 3), dpi=100)
        ax.text(0.5, 0.5, textwrap.fill(note or "not applicable", 80), ha="center", va="center",
                transform=ax.transAxes, fontsize=8)
        ax.axis("off")
        ax.set_title(title, fontsize=9)
        _save(fig, path)
        return
    fig, axes = plt.subplots(1, 2, figsize=(7, 3), dpi=100)
    for ax, key in zip(axes, ("auc_vat", "l2_vat")):
        v = np.array([np.nan if r[key] is None else r[key] for r in rows], float)
        lo = np.array([np.nan if r["ci95"][key][0] is None else r["ci95"][key][0] for r in rows], float)
        hi = np.array([np.nan if r["ci95"][key][1] is None else r["ci95"][key][1] for r in rows], float)
        ax.errorbar(ks, v, yerr=np.nan_to_num([v - lo, hi - v]), marker="o", capsize=4, label="calibrated on K s")
        same = [(k, r["K0_same_samples"][key]) for k, r in zip(ks, rows) if r.get("K0_same_samples")]
        if same:
            ax.plot(*zip(*same), ls="--", marker="x", c="grey", label="K=0 on the same samples")
            ax.legend(fontsize=6)
        ax.set_xlabel("calibration seconds K")
        ax.set_ylabel(key + (" (higher is better)" if key == "auc_vat" else " (lower is better)"), fontsize=8)
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=9)
    _save(fig, path)


def bias_map_plot(*, path: Path, bias_map: np.ndarray, title: str) -> None:
    """The mean predicted heatmap on content-free input, on the frame grid (share of mass per cell)."""
    plt = _plt()
    gh, gw = bias_map.shape
    fig, ax = plt.subplots(figsize=(5, 5 * gh / gw + 0.6), dpi=100)
    im = ax.imshow(bias_map, extent=(0, 1, 1, 0), cmap="inferno", vmin=0)
    fig.colorbar(im, ax=ax, fraction=0.03)
    ax.axhline(0.5, c="white", lw=0.5, ls=":")
    ax.axvline(0.5, c="white", lw=0.5, ls=":")
    ax.set_title(title, fontsize=8)
    _save(fig, path)


def _save(fig, path: Path) -> None:
    plt = _plt()
    path = Path(path)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def ceiling_plot(*, path: Path, ceiling: dict, fit) -> None:
    """Inter-observer agreement against the number of observers k, the fitted curve
    ``fit(k, s_inf, b, c)`` and its limit s_inf with the 95 % interval, per family and metric."""
    plt = _plt()
    panels = [(fam, key, m) for fam in ("benchmark", "per_viewer")
              for key, m in sorted((ceiling.get(fam) or {}).get("metrics", {}).items())
              if m.get("s_inf") is not None]
    cols = 4
    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), dpi=100, squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    for ax, (fam, key, m) in zip(axes.ravel(), panels):
        k = np.arange(1, len(m["curve"]) + 1)
        ax.plot(k, [np.nan if v is None else v for v in m["curve"]], "o", c="#4c72b0", label="measured")
        kk = np.geomspace(1, 64, 60)
        ax.plot(kk, fit(kk, m["s_inf"], m["b"], m["c"]), "-", c="#4c72b0", lw=1, label="fit")
        ax.axhline(m["s_inf"], ls=":", c="green", label="k → ∞")
        lo, hi = m["ci95"]
        if lo is not None:
            ax.axhspan(lo, hi, color="green", alpha=0.12)
        ax.set_xscale("log")
        ax.set_title(f"{key} ({fam.replace('_', '-')}){'' if m.get('improves_with_k', True) else ' †'}", fontsize=8)
        ax.tick_params(labelsize=7)
    if panels:
        axes.ravel()[0].legend(fontsize=6)
        for ax in axes[-1]:
            ax.set_xlabel("observers k", fontsize=7)
    _save(fig, path)
