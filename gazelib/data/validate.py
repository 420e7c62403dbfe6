"""Checks on features and aligned data; a violated hard check fails with video and check named.

Checks per video: monotonic feature timestamps, NaN/inf, feature dimensions against the
schema (same columns in every video, grid shape from params), coverage of each modality
on the timeline, feature gaps longer than ``max_gap_s``, and label coverage (share of steps
with at least one valid viewer).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gazelib.data.align import find_gaps
from gazelib.core.io import read_npz, read_table
from gazelib.core.io import write_json, write_text
from gazelib.core.layout import ALIGNED, FEATURES, VALIDATION, check_splits

log = logging.getLogger(__name__)
MODS = ("audio", "text", "visual", "track")


class ValidationError(ValueError):
    pass


@dataclass
class Finding:
    video_id: str
    check: str
    message: str
    hard: bool


@dataclass
class ValidationResult:
    per_video: dict = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.hard]

    @property
    def excluded(self) -> list[str]:
        """Videos with a hard failure: left out of training and evaluation (skip-and-report)."""
        return sorted({f.video_id for f in self.failures})


def coverage(mask: np.ndarray) -> dict[str, float]:
    """Share of timeline steps at which each modality is available."""
    return {m: float(mask[:, i].mean()) if mask.size else 0.0 for i, m in enumerate(MODS)}


def check_feature_file(*, path: Path, video_id: str) -> list[Finding]:
    out = []
    df, meta = read_table(path)
    t = df["t"].to_numpy(np.float64) if "t" in df.columns else None
    if t is None:
        return [Finding(video_id, "schema", f"{path} has no column 't'", True)]
    if t.size > 1 and (np.diff(t) <= 0).any():
        i = int(np.argmax(np.diff(t) <= 0)) + 1
        out.append(Finding(video_id, "non_monotonic", f"{path}: time not increasing at row {i} (t={t[i]})", True))
    num = df.select_dtypes(include=[np.number])
    if not np.isfinite(num.to_numpy(np.float64)).all():
        out.append(Finding(video_id, "nan_inf", f"{path} has NaN or inf values", True))
    npz = path.with_suffix(".npz")
    if npz.exists():
        arrs = read_npz(npz)
        for k, v in arrs.items():
            if v.dtype.kind == "f" and not np.isfinite(v).all():
                out.append(Finding(video_id, "nan_inf", f"{npz}: array {k} has NaN or inf", True))
        nt = arrs["t"]
        if nt.size > 1 and (np.diff(nt) <= 0).any():
            out.append(Finding(video_id, "non_monotonic", f"{npz}: time not increasing", True))
    return out


def validate_corpus(*, feat_dir: Path, aligned_dir: Path, video_ids: list[str], grid_shape: tuple[int, int, int],
                    cfg: dict) -> ValidationResult:
    from collections import Counter

    res = ValidationResult()
    hard = set(cfg["fail_on"])
    # the schema most videos share is the reference, so one odd video is the one flagged
    keys = tuple(f"{m}_columns" for m in ("audio", "text", "visual"))
    cols_of = {vid: read_npz(aligned_dir / f"{vid}.npz", keys=keys) for vid in video_ids}
    schema = {}
    for m in ("audio", "text", "visual"):
        counts = Counter(tuple(c[f"{m}_columns"]) for c in cols_of.values() if len(c[f"{m}_columns"]))
        if counts:
            schema[m] = max(counts, key=lambda k: (counts[k], k))
    for vid in video_ids:
        for m in ("audio", "text", "visual"):
            p = feat_dir / m / f"{vid}.parquet"
            if p.exists():
                for f in check_feature_file(path=p, video_id=vid):
                    f.hard = f.check in hard
                    res.findings.append(f)
        a = read_npz(aligned_dir / f"{vid}.npz")
        cov = coverage(a["mask"])
        label_cov = float(a["valid"].any(0).mean()) if a["valid"].size else 0.0
        for m in ("audio", "text", "visual"):
            cols = tuple(a[f"{m}_columns"])
            if not cols:
                continue
            if schema[m] != cols:
                res.findings.append(Finding(vid, "dimension", f"{m} has {len(cols)} columns {list(cols)[:5]}..., "
                                            f"most videos have {len(schema[m])}", "dimension" in hard))
        if tuple(a["grid"].shape[1:]) != tuple(grid_shape):
            res.findings.append(Finding(vid, "dimension", f"grid shape {a['grid'].shape[1:]} != {grid_shape}",
                                        "dimension" in hard))
        for k in ("audio", "text", "visual", "grid", "gaze"):
            if not np.isfinite(a[k]).all():
                res.findings.append(Finding(vid, "nan_inf", f"aligned {k} has NaN or inf", "nan_inf" in hard))
        t = a["t"]
        if t.size > 1 and (np.diff(t) <= 0).any():
            res.findings.append(Finding(vid, "non_monotonic", "aligned timeline not increasing", True))
        gaps = {}
        for i, m in enumerate(MODS):
            on_t = t[a["mask"][:, i]]
            g = find_gaps(src_t=np.r_[t[0] - 1 / max(len(t), 1), on_t, t[-1] + 1e-9] if on_t.size else t[[0, -1]],
                          min_gap_s=cfg["max_gap_s"]) if t.size else []
            gaps[m] = [(round(a0, 2), round(b0, 2)) for a0, b0 in g]
            if cov[m] < cfg["min_coverage"][m]:
                res.findings.append(Finding(vid, "coverage", f"{m} covers {cov[m]:.0%} of the timeline "
                                            f"(< {cfg['min_coverage'][m]:.0%})", "coverage" in hard))
        if label_cov < cfg["min_label_coverage"]:
            res.findings.append(Finding(vid, "label_coverage", f"gaze labels cover {label_cov:.0%} of the video",
                                        "label_coverage" in hard))
        res.per_video[vid] = {"coverage": cov, "label_coverage": label_cov, "n_steps": int(t.size),
                              "gaps_over_max": {m: len(v) for m, v in gaps.items()}, "gaps": gaps}
    return res


def render_report(res: ValidationResult, cfg: dict) -> tuple[dict, str]:
    vids = sorted(res.per_video)
    mean_cov = {m: float(np.mean([res.per_video[v]["coverage"][m] for v in vids])) if vids else 0.0 for m in MODS}
    excluded = {v: sorted({f.check for f in res.failures if f.video_id == v}) for v in res.excluded}
    metrics = {"n_videos": len(vids), "n_failures": len(res.failures), "excluded": excluded,
               "n_excluded": len(excluded),
               "n_warnings": len(res.findings) - len(res.failures), "coverage": mean_cov,
               "label_coverage": float(np.mean([res.per_video[v]["label_coverage"] for v in vids])) if vids else 0.0,
               "passed": not res.failures}
    lines = ["# Validation report", "", f"Videos: {len(vids)}; hard failures: {len(res.failures)}; "
             f"warnings: {metrics['n_warnings']}; excluded from training and evaluation: "
             f"{', '.join(excluded) or 'none'}.", "", "## Coverage per video (share of timeline steps)", "",
             "| video | audio | text | visual | track | labels | gaps > %.1f s |" % cfg["max_gap_s"],
             "|---|---|---|---|---|---|---|"]
    for v in vids:
        r = res.per_video[v]
        c = r["coverage"]
        gaps = ", ".join(f"{m}: {n}" for m, n in r["gaps_over_max"].items() if n) or "none"
        lines.append(f"| {v} | {c['audio']:.0%} | {c['text']:.0%} | {c['visual']:.0%} | {c['track']:.0%} | "
                     f"{r['label_coverage']:.0%} | {gaps} |")
    lines += ["", "## Findings", ""]
    lines += [f"- **{'FAIL' if f.hard else 'warn'}** `{f.video_id}` {f.check}: {f.message}" for f in res.findings] \
        or ["- none"]
    return metrics, "\n".join(lines) + "\n"


# ---------------------------------------------------------------- DVC stage
def run_validate(*, params: dict, root: Path = Path(".")) -> dict:
    from gazelib.features.grid import grid_shape

    index = read_table(root / ALIGNED / "index.parquet")[0]
    res = validate_corpus(feat_dir=root / FEATURES, aligned_dir=root / ALIGNED, video_ids=list(index["video_id"]),
                          grid_shape=grid_shape(params["visual"]), cfg=params["validate"])
    metrics, md = render_report(res, params["validate"])
    failed = "\n".join(f"  {f.video_id}: {f.check}: {f.message}" for f in res.failures)
    if res.failures and params["data"]["on_error"] == "raise":
        raise ValidationError("validation failed (data.on_error: raise):\n" + failed)
    write_json(root / VALIDATION, metrics)
    write_text(root / "reports" / "validation.md", md)
    if res.failures:
        log.error("validation: excluding %s from training and evaluation:\n%s", res.excluded, failed)
    kept = index[~index["video_id"].isin(res.excluded)]
    # early stopping falls back to the training loss without val videos; train and test are needed
    check_splits(videos=kept, where="validate (after excluding failed videos)", required=("train", "test"))
    return metrics
    return metrics
