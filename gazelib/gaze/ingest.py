"""Read a corpus folder, check it against the contract, write the manifest and gaze tables.

Layout (see docs/corpus.md)::

    <corpus>/videos/<video_id>.(mp4|mkv|mov|avi|webm)
    <corpus>/subtitles/<video_id>.(srt|vtt)        optional
    <corpus>/gaze/<video_id>/<viewer_id>.csv       columns t, x, y, [valid]
    <corpus>/corpus.yaml                           optional: coords, time_unit, splits
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from gazelib.core.cache import hash_file, hash_obj
from gazelib.core.io import write_json, write_table
from gazelib.core.media import VIDEO_EXTS, MediaError, probe_video
from gazelib.core.layout import ID_RE, INTERIM, check_splits

log = logging.getLogger(__name__)

SUB_EXTS = (".srt", ".vtt")
SPLITS = ("train", "val", "test")


class CorpusError(ValueError):
    """Input that does not follow the corpus contract; the message names the file."""


@dataclass
class IngestResult:
    manifest: pd.DataFrame
    gaze: dict[str, pd.DataFrame]
    skipped: list[dict] = field(default_factory=list)
    geometry: dict = field(default_factory=dict)       # corpus.yaml geometry: (degrees), if any
    synthetic: str | None = None                       # corpus.yaml synthetic: what made the data, if not people


def load_corpus_config(corpus: Path) -> dict:
    cfg = {"coords": "normalized", "time_unit": "s", "splits": {}}
    path = corpus / "corpus.yaml"
    if not path.exists():
        return cfg
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise CorpusError(f"{path}: expected a mapping, got {type(loaded).__name__}")
    cfg.update(loaded)
    if cfg["coords"] not in ("normalized", "pixels"):
        raise CorpusError(f"{path}: coords must be 'normalized' or 'pixels', got {cfg['coords']!r}")
    if cfg["time_unit"] not in TIME_UNITS:
        raise CorpusError(f"{path}: time_unit must be one of {list(TIME_UNITS)}, got {cfg['time_unit']!r}")
    offsets = cfg.setdefault("clock_offsets", {}) or {}
    if not isinstance(offsets, dict) or not all(isinstance(v, (int, float)) for v in offsets.values()):
        raise CorpusError(f"{path}: clock_offsets must map '<video_id>' or '<video_id>/<viewer_id>' to the "
                          f"recording's time at the video's start (a number in time_unit)")
    cfg["clock_offsets"] = offsets
    return cfg


TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def clock_offset(cfg: dict, video_id: str, viewer_id: str) -> float:
    """The recording's clock reading at the video's start (corpus.yaml clock_offsets; 0 if absent)."""
    offsets = cfg.get("clock_offsets", {})
    return float(offsets.get(f"{video_id}/{viewer_id}", offsets.get(video_id, 0.0)))


def check_id(value: str, what: str, path: Path) -> None:
    if not ID_RE.match(value):
        raise CorpusError(f"{path}: {what} {value!r} has characters outside [A-Za-z0-9._-] "
                          "or does not start with a letter or digit")


def read_gaze_csv(*, path: Path, video_id: str, viewer_id: str, coords: str, time_unit: str,
                  width: int, height: int, duration_s: float, cfg: dict, t0: float = 0.0) -> pd.DataFrame:
    """Load one viewer's recording into normalised units and seconds from the video start
    (``t0``: the recording's clock at the video start, in ``time_unit``); raises CorpusError
    naming the file. Repeated timestamps follow ``cfg['duplicate_timestamps']`` (first: keep
    the first sample, warn and count them in ``attrs['n_duplicate_t']``; error: refuse)."""
    tag = f"{video_id}: gaze file {path}"
    try:
        raw = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is reported with the file name
        raise CorpusError(f"{tag} cannot be read as CSV: {exc}") from exc
    for col in ("t", "x", "y"):
        if col not in raw.columns:
            raise CorpusError(f"{tag} has no column {col!r} (columns: {list(raw.columns)})")
    if raw.empty:
        raise CorpusError(f"{tag} has no samples")
    cols = ["t", "x", "y"] + (["valid"] if "valid" in raw.columns else [])
    try:
        df = raw[cols].apply(pd.to_numeric, errors="raise").astype(float)
    except (ValueError, TypeError) as exc:
        raise CorpusError(f"{tag} has non-numeric values: {exc}") from exc
    t = df["t"].to_numpy()
    if np.isnan(t).any():
        raise CorpusError(f"{tag} has missing times in column 't' (row {int(np.argmax(np.isnan(t)))})")
    dt = np.diff(t)
    if (dt < 0).any():
        i = int(np.argmax(dt < 0)) + 1
        raise CorpusError(f"{tag}: time goes backwards at row {i} (t={t[i]} after {t[i - 1]})")
    dup = np.r_[False, dt == 0]
    if dup.any():
        i = int(np.argmax(dup))
        if cfg["duplicate_timestamps"] == "error":
            raise CorpusError(f"{tag}: row {i} repeats the timestamp t={t[i]} "
                              "(ingest.duplicate_timestamps: first keeps the first sample)")
        log.warning("%s: %d repeated timestamps (first at row %d, t=%s); kept the first sample of each",
                    tag, int(dup.sum()), i, t[i])
        df, t = df[~dup].reset_index(drop=True), t[~dup]
        dt = np.diff(t)
    t = (t - t0) * TIME_UNITS[time_unit]
    dt = dt * TIME_UNITS[time_unit]
    if time_unit == "s" and len(t) > 1 and t[-1] > 50 * max(duration_s, 1.0):
        raise CorpusError(f"{tag}: times reach {t[-1]:.0f} for a {duration_s:.1f} s video; they look like "
                          "milliseconds or a tracker clock (set time_unit / clock_offsets in corpus.yaml)")
    if t[0] > duration_s + cfg["time_slack_s"] or t[-1] < 0:
        raise CorpusError(f"{tag}: samples span [{t[0]:.3f}, {t[-1]:.3f}] s, outside the {duration_s:.1f} s video; "
                          f"the recording's clock does not start with the video (set clock_offsets in corpus.yaml)")
    hz = 1.0 / float(np.median(dt)) if len(dt) else 0.0
    if not cfg["min_gaze_hz"] <= hz <= cfg["max_gaze_hz"]:
        raise CorpusError(f"{tag}: sample rate {hz:.1f} Hz is outside "
                          f"[{cfg['min_gaze_hz']}, {cfg['max_gaze_hz']}] Hz")
    x, y = df["x"].to_numpy(), df["y"].to_numpy()
    if coords == "pixels":
        x, y = x / width, y / height
    elif np.nanmedian(np.abs(np.r_[x, y])) > cfg["pixel_guess_limit"]:
        raise CorpusError(f"{tag}: coordinates look like pixels (median |x|,|y| > "
                          f"{cfg['pixel_guess_limit']}); set coords: pixels in corpus.yaml")
    valid = np.isfinite(x) & np.isfinite(y)
    if "valid" in df:
        v = df["valid"].to_numpy()
        if not np.isin(v[~np.isnan(v)], (0, 1)).all():
            raise CorpusError(f"{tag}: column 'valid' must hold 0 or 1")
        valid &= v == 1
    keep = t <= duration_s + cfg["time_slack_s"]
    if not keep.all():
        log.warning("%s: dropped %d samples after the video end", tag, int((~keep).sum()))
    inframe = valid & (x >= 0) & (x <= 1) & (y >= 0) & (y <= 1)
    out = pd.DataFrame({"viewer_id": viewer_id, "t": t, "x": np.where(valid, x, np.nan),
                        "y": np.where(valid, y, np.nan), "valid": valid, "inout": inframe.astype(np.int8)})
    out = out[keep].reset_index(drop=True)
    out.attrs["n_duplicate_t"] = int(dup.sum())
    return out


def _split_u(video_id: str) -> float:
    return int(hashlib.sha256(video_id.encode()).hexdigest()[:12], 16) / float(16 ** 12)


def assign_splits(*, video_ids: list[str], ratios: dict, overrides: dict | None = None) -> dict[str, str]:
    """Deterministic split per video from a hash of its id.

    ``u = sha256(video_id) / 2^48`` falls into [0, r_train), [r_train, r_train + r_val) or the
    rest. With three or more videos, an empty split takes the video of the largest split
    whose ``u`` lies closest to the empty split's interval. ``overrides`` (from corpus.yaml)
    map video_id -> split, or split -> [video_id, ...], and win. When they name test and/or val
    videos, every video they do not name is train (logged): a user who lists the held-out videos
    means the rest to be trained on (a split left empty, e.g. val when only test is listed, still
    takes one unlisted video by the rule above).
    """
    total = sum(ratios[s] for s in SPLITS)
    edges = np.cumsum([ratios[s] / total for s in SPLITS])
    u = {v: _split_u(v) for v in video_ids}
    split = {v: SPLITS[int(np.searchsorted(edges, u[v], side="right"))] if u[v] < edges[-1] else "test"
             for v in video_ids}
    fixed = _normalise_overrides(overrides or {})
    unlisted = [v for v in video_ids if v not in fixed]
    if unlisted and {"val", "test"} & set(fixed.values()):
        log.info("corpus.yaml splits name %s videos only: the %d unlisted go to train",
                 "/".join(s for s in SPLITS if s in set(fixed.values())), len(unlisted))
        split.update({v: "train" for v in unlisted})  # not fixed: an empty split may still take one
    split.update({v: s for v, s in fixed.items() if v in split})
    if len(video_ids) >= 3:
        lo = dict(zip(SPLITS, np.r_[0.0, edges[:-1]]))
        hi = dict(zip(SPLITS, edges))
        for s in SPLITS:
            if any(split[v] == s for v in video_ids):
                continue
            counts = {k: sum(split[v] == k for v in video_ids) for k in SPLITS}
            donor = max(SPLITS, key=lambda k: counts[k])
            cands = [v for v in video_ids if split[v] == donor and v not in fixed]
            if not cands:
                continue
            dist = lambda v: max(lo[s] - u[v], u[v] - hi[s], 0.0)  # noqa: E731
            moved = min(sorted(cands), key=dist)
            log.info("split %s would be empty: %s moves there from %s", s, moved, donor)
            split[moved] = s
    return split


def _normalise_overrides(overrides: dict) -> dict[str, str]:
    out = {}
    for k, v in overrides.items():
        if k in SPLITS and isinstance(v, list):
            out.update({vid: k for vid in v})
        elif v in SPLITS:
            out[k] = v
        else:
            raise CorpusError(f"corpus.yaml splits: {k!r}: {v!r} is not one of {SPLITS}")
    return out


def _find_one(folder: Path, stem: str, exts: tuple[str, ...]) -> Path | None:
    for ext in exts:
        p = folder / f"{stem}{ext}"
        if p.exists():
            return p
    return None


def ingest_corpus(*, corpus: str | Path, params: dict, on_error: str = "skip") -> IngestResult:
    """Check every video and gaze file; return the manifest, gaze tables and what was skipped."""
    from tqdm import tqdm

    corpus = Path(corpus)
    if not (corpus / "videos").is_dir():
        raise CorpusError(f"{corpus}: no videos/ folder (see docs/corpus.md for the layout)")
    ccfg = load_corpus_config(corpus)
    geometry = ccfg.get("geometry") or {}
    skipped: list[dict] = []

    def fail(file: Path, video_id: str, exc: Exception) -> None:
        if on_error != "skip":
            raise exc
        log.error("skipped %s: %s", file, exc)
        skipped.append({"file": str(file), "video_id": video_id, "error": str(exc)})

    rows, gaze = [], {}
    videos = sorted(p for p in (corpus / "videos").iterdir() if p.suffix.lower() in VIDEO_EXTS)
    stems: dict[str, list[Path]] = {}
    for v in videos:
        stems.setdefault(v.stem, []).append(v)
    for stem, paths in stems.items():
        if len(paths) > 1:  # a.mp4 and a.mkv would write each other's outputs: neither is used
            for v in paths:
                fail(v, stem, CorpusError(f"{v}: video_id {stem!r} is shared by {[x.name for x in paths]}; "
                                          "keep one file per video_id"))
    videos = [v for v in videos if len(stems[v.stem]) == 1]
    for vpath in tqdm(videos, desc="ingest", leave=False):
        video_id = vpath.stem
        try:
            check_id(video_id, "video_id", vpath)
            probe = probe_video(path=vpath, video_id=video_id,
                                truncation_tol_s=params["truncation_tol_s"])
        except (CorpusError, MediaError) as exc:
            fail(vpath, video_id, exc)
            continue
        sub = _find_one(corpus / "subtitles", video_id, SUB_EXTS)
        tables = []
        gdir = corpus / "gaze" / video_id
        for gpath in sorted(gdir.glob("*.csv")) if gdir.is_dir() else []:
            try:
                check_id(gpath.stem, "viewer_id", gpath)
                tables.append(read_gaze_csv(
                    path=gpath, video_id=video_id, viewer_id=gpath.stem, coords=ccfg["coords"],
                    time_unit=ccfg["time_unit"], width=probe.width, height=probe.height,
                    duration_s=probe.duration_s, cfg=params, t0=clock_offset(ccfg, video_id, gpath.stem)))
            except CorpusError as exc:
                fail(gpath, video_id, exc)
        fix_share = None
        if params["labels"] == "fixations" and tables:
            tables, fix_share = fixation_labels(tables=tables, video_id=video_id, geometry=geometry,
                                                cfg=params["fixations"])
        if not tables:
            log.warning("%s: no usable gaze recordings; features only", video_id)
        g = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(
            {"viewer_id": pd.Series(dtype=str), "t": [], "x": [], "y": [], "valid": pd.Series(dtype=bool),
             "inout": pd.Series(dtype=np.int8)})
        gaze[video_id] = g
        media_files = [vpath] + ([sub] if sub else [])
        media_hash = hash_obj([hash_file(p) for p in media_files])
        rows.append({
            # relative to the corpus root, which the manifest records once (no absolute paths)
            "video_id": video_id, "video_path": vpath.relative_to(corpus).as_posix(),
            "subtitle_path": sub.relative_to(corpus).as_posix() if sub else "",
            **probe.as_dict(), "n_viewers": int(g["viewer_id"].nunique()),
            "gaze_hz": _median_hz(g), "valid_share": float(g["valid"].mean()) if len(g) else 0.0,
            # the hash of what ingest made of the recordings (after units, offsets, duplicates), so
            # a change in corpus.yaml reaches the per-video caches downstream
            "media_hash": media_hash, "gaze_hash": hashlib.sha256(
                pd.util.hash_pandas_object(g, index=False).to_numpy().tobytes()).hexdigest(),
            "n_duplicate_t": int(sum(t.attrs.get("n_duplicate_t", 0) for t in tables)),
            "fixation_share": np.nan if fix_share is None else fix_share,
            # degrees of visual angle per normalised unit along x and y (NaN: geometry unknown)
            **dict(zip(("deg_per_unit_x", "deg_per_unit_y"),
                       (geometry.get("deg_per_unit") or {}).get(video_id, [np.nan, np.nan]))),
            "px_per_deg": float(np.mean(geometry["pixels_per_degree"])) if "pixels_per_degree" in geometry
            else np.nan,
        })
    for orphan in sorted((corpus / "gaze").glob("*")) if (corpus / "gaze").is_dir() else []:
        if orphan.is_dir() and orphan.name not in {v.stem for v in videos}:
            fail(orphan, orphan.name, CorpusError(f"{orphan}: gaze folder has no matching video"))
    manifest = pd.DataFrame(rows)
    if not manifest.empty:
        splits = assign_splits(video_ids=list(manifest["video_id"]), ratios=params["split_ratios"],
                               overrides=ccfg.get("splits") or {})
        manifest["split"] = manifest["video_id"].map(splits)
    synthetic = ccfg.get("synthetic")
    if synthetic is not None and not isinstance(synthetic, str):
        raise CorpusError(f"{corpus}/corpus.yaml: synthetic must be a sentence saying what made the data, "
                          f"got {synthetic!r}")
    return IngestResult(manifest=manifest, gaze=gaze, skipped=skipped, geometry=geometry, synthetic=synthetic)


def fixation_labels(*, tables: list[pd.DataFrame], video_id: str, geometry: dict,
                    cfg: dict) -> tuple[list[pd.DataFrame], float]:
    """Replace each viewer's samples by fixation labels (``ingest.labels: fixations``): a sample in
    a fixation takes the fixation's centroid, a sample outside any fixation (saccade, noise)
    becomes missing. Thresholds in degrees when the corpus geometry gives degrees per unit.

    Column ``t_known``: when the label is complete (the fixation's end, plus the samples the
    detector reads to see it end; :attr:`gazelib.gaze.fixations.FixationResult.known_t`), NaN where
    missing. align carries it into ``gaze_t``, so the track at t sees only fixations known by
    t - horizon; ``t`` stays the sample's own time (the target's)."""
    from gazelib.gaze.fixations import detect_fixations

    dpu = (geometry.get("deg_per_unit") or {}).get(video_id)
    out, n_in, n_valid = [], 0, 0
    for g in tables:
        res = detect_fixations(t=g["t"].to_numpy(), x=g["x"].to_numpy(), y=g["y"].to_numpy(),
                               valid=g["valid"].to_numpy(), method=cfg["method"],
                               velocity_threshold=cfg.get("velocity_threshold"),
                               dispersion_threshold=cfg.get("dispersion_threshold"),
                               min_duration_s=cfg["min_duration_s"], deg_per_unit=dpu)
        inside = res.fixation_id >= 0
        x = np.where(inside, res.centroid_x, np.nan)
        y = np.where(inside, res.centroid_y, np.nan)
        inframe = inside & (x >= 0) & (x <= 1) & (y >= 0) & (y <= 1)
        out.append(g.assign(x=x, y=y, valid=inside, inout=inframe.astype(np.int8),
                            t_known=np.where(inside, res.known_t, np.nan)))
        n_in += int(inside.sum())
        n_valid += int(g["valid"].sum())
        log.info("%s/%s: %d fixations (%s, thresholds in %s), %.0f%% of valid samples", video_id,
                 g["viewer_id"].iloc[0] if len(g) else "?", len(res.fixations), res.method, res.units,
                 100 * inside.sum() / max(int(g["valid"].sum()), 1))
    return out, (n_in / n_valid if n_valid else 0.0)


def _median_hz(g: pd.DataFrame) -> float:
    hz = [1.0 / np.median(np.diff(d["t"].to_numpy())) for _, d in g.groupby("viewer_id") if len(d) > 1]
    return float(np.median(hz)) if hz else 0.0


def write_ingest(*, result: IngestResult, out_dir: str | Path, corpus: str | Path, params: dict | None = None) -> dict:
    """Write manifest, per-video gaze tables and the report (with ``params``, the ingest params, for the
    model bundle: how predict reads a viewer's gaze file); returns the report dict."""
    out_dir = Path(out_dir)
    write_table(out_dir / "manifest.parquet", result.manifest, meta={"corpus": str(corpus),
                                                                    "geometry": result.geometry,
                                                                    "synthetic": result.synthetic})
    keep = set(result.gaze)
    gdir = out_dir / "gaze"
    for old in gdir.glob("*.parquet") if gdir.exists() else []:
        if old.stem not in keep:
            old.unlink()
    for vid, g in result.gaze.items():
        write_table(gdir / f"{vid}.parquet", g, meta={"video_id": vid, "units": "normalized, s"})
    m = result.manifest
    report = {
        "corpus": str(corpus), "n_videos": int(len(m)),
        "n_viewer_recordings": int(m["n_viewers"].sum()) if len(m) else 0,
        "n_duplicate_timestamps": int(m["n_duplicate_t"].sum()) if len(m) else 0,
        "fixation_share": float(np.nanmean(m["fixation_share"])) if len(m) and m["fixation_share"].notna().any()
        else None,
        "splits": {s: sorted(m.loc[m["split"] == s, "video_id"]) for s in SPLITS} if len(m) else {},
        "skipped": result.skipped,
        **({"params": params} if params is not None else {}),
    }
    write_json(out_dir / "ingest_report.json", report)
    return report


# ---------------------------------------------------------------- DVC stage
def run_ingest(*, params: dict, root: Path = Path(".")) -> dict:
    corpus = Path(params["data"]["corpus"])
    corpus = corpus if corpus.is_absolute() else root / corpus
    result = ingest_corpus(corpus=corpus, params=params["ingest"], on_error=params["data"]["on_error"])
    if result.manifest.empty:
        raise ValueError(f"{corpus}: no usable video (skipped: {result.skipped})")
    check_splits(videos=result.manifest.rename(columns={"n_viewers": "viewers"}), where=f"{corpus}: ingest")
    return write_ingest(result=result, out_dir=root / INTERIM, corpus=params["data"]["corpus"], params=params["ingest"])
