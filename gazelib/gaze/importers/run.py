"""``run_import``: vendor recordings -> a gazelib corpus (``gaze/<video>/<viewer>.csv`` + corpus.yaml).

Steps per input file: the format's reader gives recordings (tracker clock, gaze per eye,
messages, display); the eyes are combined (``eye``); scene-camera gaze is mapped to the display
(``scene``); clock sync (``sync``) cuts each recording into one piece per video, with time 0 at
the video's start; geometry (``geometry``) maps display pixels to video-normalised coordinates.
See docs/importing.md for the config and a worked example per vendor.
"""
from __future__ import annotations

import copy
import filecmp
import glob
import importlib
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from gazelib.gaze.importers.base import ImportFormatError, Recording, combine_eyes, numeric_column, read_table
from gazelib.gaze.geometry import (
    RECT_RULES, Rect, apply_homography, display_to_video, geometry_block, homography_from_points, video_rect,
)
from gazelib.gaze.importers.sync import Segment, find_segments, load_sync_table
from gazelib.core.io import atomic_path, write_json, write_text
from gazelib.core.layout import ID_RE
from gazelib.core.media import VIDEO_EXTS

log = logging.getLogger(__name__)

FORMATS = {
    "eyelink": "gazelib.gaze.importers.eyelink",
    "tobii": "gazelib.gaze.importers.tobii",
    "pupil_core": "gazelib.gaze.importers.pupil_core",
    "neon": "gazelib.gaze.importers.neon",
    "smi": "gazelib.gaze.importers.smi",
    "csv": "gazelib.gaze.importers.generic",
    "diem": "gazelib.gaze.importers.diem",
    "gazecom": "gazelib.gaze.importers.gazecom",
    "fixmap": "gazelib.gaze.importers.fixmap",
}
TOP_KEYS = {"format", "inputs", "eye", "viewer_id", "videos", "copy_videos", "sync", "geometry", "scene",
            "reader", "splits", "float_format", "on_error", "base_dir", "out"}
SYNC_KEYS = {"method", "start", "end", "video_id", "table", "table_unit", "durations", "t0_s"}
GEOMETRY_KEYS = {"display_px", "video_px", "rect", "screen_cm", "distance_cm"}
SCENE_KEYS = {"camera_px", "homography", "corners", "rect", "surface_positions", "max_gap_s"}
REPORT = "import_report.json"


@dataclass
class Piece:
    """One written gaze file: a segment of one recording, in video-normalised units."""

    video_id: str
    viewer_id: str
    source: str
    sync: str
    frame: pd.DataFrame


def load_config(path: str | Path) -> dict:
    """An import config from YAML: a plain mapping, or a params file with an ``import:`` group.

    Relative paths in it are taken from the config file's folder (``base_dir``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ImportFormatError(f"{path}: cannot read the import config: {exc}") from exc
    if not isinstance(data, dict):
        raise ImportFormatError(f"{path}: expected a mapping, got {type(data).__name__}")
    cfg = data["import"] if isinstance(data.get("import"), dict) else data
    cfg = copy.deepcopy(cfg)
    cfg.setdefault("base_dir", str(path.parent))
    return cfg


def _check_keys(section: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise ImportFormatError(f"import config: unknown key(s) {unknown} in {where} (allowed: {sorted(allowed)})")


def normalise_config(cfg: dict) -> dict:
    """Defaults filled in and keys checked (a typo is an error, not a silent default)."""
    cfg = copy.deepcopy(cfg or {})
    _check_keys(cfg, TOP_KEYS, "import")
    fmt = cfg.get("format")
    if fmt not in FORMATS:
        raise ImportFormatError(f"import config: format must be one of {sorted(FORMATS)}, got {fmt!r}")
    inputs = cfg.get("inputs")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not inputs:
        raise ImportFormatError("import config: inputs lists no files (give files, folders or globs)")
    cfg["inputs"] = [str(i) for i in inputs]
    cfg.setdefault("eye", "mean")
    cfg.setdefault("on_error", "skip")
    cfg.setdefault("float_format", "%.6f")
    cfg.setdefault("copy_videos", True)
    if cfg["on_error"] not in ("skip", "raise"):
        raise ImportFormatError(f"import config: on_error must be skip or raise, got {cfg['on_error']!r}")
    sync = dict(cfg.get("sync") or {})
    _check_keys(sync, SYNC_KEYS, "import.sync")
    module = importlib.import_module(FORMATS[fmt])
    sync.setdefault("method", "message")
    if sync["method"] == "message" and not sync.get("start"):
        for k, v in getattr(module, "DEFAULT_SYNC", {}).items():
            sync.setdefault(k, v)
    sync["durations"] = {str(k): float(v) for k, v in (sync.get("durations") or {}).items()}
    cfg["sync"] = sync
    geo = dict(cfg.get("geometry") or {})
    _check_keys(geo, GEOMETRY_KEYS, "import.geometry")
    for k, v in getattr(module, "DEFAULT_GEOMETRY", {}).items():  # a public dataset's own setup (e.g. DIEM)
        geo.setdefault(k, v)
    geo.setdefault("rect", "fit")
    if (geo.get("screen_cm") is None) != (geo.get("distance_cm") is None):
        raise ImportFormatError("import config: geometry.screen_cm and geometry.distance_cm go together")
    cfg["geometry"] = geo
    scene = dict(cfg.get("scene") or {})
    _check_keys(scene, SCENE_KEYS, "import.scene")
    cfg["scene"] = scene
    base = Path(cfg.get("base_dir") or ".")
    cfg["base_dir"] = str(base)

    def rel(p):
        return str(p) if p is None or Path(p).is_absolute() else str(base / p)

    if cfg.get("videos"):
        cfg["videos"] = rel(cfg["videos"])
    if sync.get("table"):
        sync["table"] = rel(sync["table"])
    if scene.get("surface_positions"):
        scene["surface_positions"] = rel(scene["surface_positions"])
    reader = dict(cfg.get("reader") or {})
    for key in ("annotations", "events", "messages"):
        if reader.get(key):
            reader[key] = rel(reader[key])
    cfg["reader"] = reader
    return cfg


def resolve_inputs(cfg: dict) -> list[Path]:
    """Input files/folders: each entry a path or a glob, relative to ``base_dir``; sorted, unique."""
    base = Path(cfg["base_dir"])
    out: list[Path] = []
    for entry in cfg["inputs"]:
        pattern = entry if Path(entry).is_absolute() else str(base / entry)
        hits = sorted(glob.glob(pattern, recursive=True))
        if not hits:
            raise ImportFormatError(f"import config: input {entry!r} matches no file (looked in {base})")
        out += [Path(h) for h in hits]
    seen, unique = set(), []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def clean_id(raw: str, what: str, where: str) -> str:
    """A valid corpus id (``[A-Za-z0-9][A-Za-z0-9._-]*``): other characters become ``_``."""
    if ID_RE.match(raw):
        return raw
    fixed = re.sub(r"[^A-Za-z0-9._-]", "_", raw.strip()).lstrip("._-") or "x"
    log.warning("%s: %s %r is not a valid corpus id; using %r", where, what, raw, fixed)
    return fixed


def probe_videos(folder: str | None) -> dict[str, dict]:
    """``video_id -> {path, duration_s, size}`` for every video in ``folder``."""
    if not folder:
        return {}
    from gazelib.core.media import MediaError, probe_video

    root = Path(folder)
    if not root.is_dir():
        raise ImportFormatError(f"import config: videos {folder!r} is not a folder")
    out = {}
    for p in sorted(root.iterdir()):
        if p.suffix.lower() not in VIDEO_EXTS:
            continue
        try:
            pr = probe_video(path=p, video_id=p.stem)
        except MediaError as exc:
            raise ImportFormatError(str(exc)) from exc
        out[p.stem] = {"path": p, "duration_s": pr.duration_s, "size": (pr.width, pr.height)}
    log.info("videos: %d in %s", len(out), root)
    return out


def _video_size(cfg: dict, videos: dict, video_id: str) -> tuple[int, int] | None:
    vp = cfg["geometry"].get("video_px")
    if isinstance(vp, dict):
        vp = vp.get(video_id)
    if vp is not None:
        return int(vp[0]), int(vp[1])
    return videos[video_id]["size"] if video_id in videos else None


def _rect_rule(cfg: dict, video_id: str):
    rule = cfg["geometry"]["rect"]
    if isinstance(rule, dict):
        rule = rule.get(video_id, rule.get("default", "fit"))
    return rule


class SceneMapper:
    """Scene-camera pixels -> display pixels, from ``scene:`` (fixed or per-frame homography)."""

    def __init__(self, *, scene: dict, display_px: tuple[int, int]):
        dw, dh = display_px
        screen = [[0, 0], [dw, 0], [dw, dh], [0, dh]]
        self.frames: tuple[np.ndarray, np.ndarray] | None = None
        if scene.get("homography") is not None:
            self.h = np.asarray(scene["homography"], dtype=float)
            if self.h.shape != (3, 3):
                raise ImportFormatError(f"import config: scene.homography must be 3x3, got shape {self.h.shape}")
        elif scene.get("corners") is not None:
            self.h = homography_from_points(src=scene["corners"], dst=screen)
        elif scene.get("rect") is not None:
            x0, y0, x1, y1 = (float(v) for v in scene["rect"])
            self.h = homography_from_points(src=[[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dst=screen)
        elif scene.get("surface_positions"):
            self.h = None
            self._load_frames(Path(scene["surface_positions"]), screen)
        else:
            raise ImportFormatError("gaze is in scene-camera coordinates: set scene.homography, scene.corners, "
                                    "scene.rect or scene.surface_positions (see docs/importing.md)")
        self.max_gap_s = float(scene.get("max_gap_s", 0.1))

    def _load_frames(self, path: Path, screen) -> None:
        df = read_table(path=path, separator=",")
        cols = list(df.columns)
        need = ["timestamp [ns]"] + [f"{c} {a} [px]" for c in ("tl", "tr", "br", "bl") for a in ("x", "y")]
        missing = [c for c in need if c not in cols]
        if missing:
            raise ImportFormatError(f"{path}:1: surface positions need columns {missing} (Marker Mapper v2 export)")
        ts = numeric_column(df=df, column="timestamp [ns]", path=path, integer=True)
        pts = np.stack([numeric_column(df=df, column=c, path=path) for c in need[1:]], axis=1)
        hs = np.full((len(ts), 3, 3), np.nan)
        for i, row in enumerate(pts):
            if np.isfinite(row).all():
                hs[i] = homography_from_points(src=row.reshape(4, 2), dst=screen)
        order = np.argsort(ts, kind="stable")
        self.frames = (ts[order], hs[order])
        log.info("%s: %d scene frames, %d with the surface located", path, len(ts), int(np.isfinite(pts).all(1).sum()))

    def map(self, *, rec: Recording, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.h is not None:
            return apply_homography(h=self.h, x=x, y=y)
        ts, hs = self.frames
        native = rec.clock_origin + rec.t * rec.native_per_s
        k = np.clip(np.searchsorted(ts, native), 1, max(len(ts) - 1, 1))
        prev_closer = np.abs(native - ts[k - 1]) <= np.abs(ts[k] - native)
        k = np.where(prev_closer, k - 1, k)
        gap = np.abs(ts[k] - native) / 1e9
        u = np.full(len(x), np.nan)
        v = np.full(len(x), np.nan)
        for j in np.unique(k):
            sel = (k == j) & (gap <= self.max_gap_s)
            if sel.any() and np.isfinite(hs[j]).all():
                u[sel], v[sel] = apply_homography(h=hs[j], x=x[sel], y=y[sel])
        return u, v


def _display_of(cfg: dict, rec: Recording) -> tuple[int, int] | None:
    given = cfg["geometry"].get("display_px")
    if given is not None:
        given = (int(given[0]), int(given[1]))
        if rec.display_px is not None and tuple(rec.display_px) != given:
            raise ImportFormatError(f"{rec.path}: the file says the display is {rec.display_px[0]}x"
                                    f"{rec.display_px[1]} px but geometry.display_px is {given[0]}x{given[1]}")
        return given
    return tuple(rec.display_px) if rec.display_px else None  # type: ignore[return-value]  # (w, h)


def _segment_rect(cfg: dict, rec: Recording, seg: Segment, mask: np.ndarray, display: tuple[int, int],
                  videos: dict) -> Rect:
    rule = _rect_rule(cfg, seg.video_id)
    if rule == "media":
        if rec.media_rect is None:
            raise ImportFormatError(f"{rec.path}: geometry.rect is 'media' but the file has no presented-media "
                                    "position/size columns")
        vals = [np.asarray(a)[mask] for a in rec.media_rect]
        ok = np.all([np.isfinite(v) for v in vals], axis=0)
        if not ok.any():
            raise ImportFormatError(f"{rec.path}: no presented-media rectangle during {seg.video_id} ({seg.source})")
        return Rect(*(float(np.median(v[ok])) for v in vals))
    try:
        return video_rect(display_px=display, rule=rule, video_px=_video_size(cfg, videos, seg.video_id))
    except ValueError as exc:
        raise ImportFormatError(f"{rec.path}: video {seg.video_id}: {exc}") from exc


def _pieces(*, rec: Recording, cfg: dict, videos: dict, table_rows, state: dict) -> list[Piece]:
    gaze = combine_eyes(rec=rec, eye=cfg["eye"])
    display = None
    if rec.space != "video_norm":
        display = _display_of(cfg, rec)
        if display is None:
            raise ImportFormatError(f"{rec.path}: the display size is unknown: set geometry.display_px")
        if state.get("display") is not None and state["display"] != display:
            raise ImportFormatError(f"{rec.path}: display {display} differs from {state['display']} of the "
                                    "recordings before it; import each display setup into its own corpus")
    x, y = gaze.x, gaze.y
    if rec.space == "scene_px":
        mapper = state.get("mapper")
        if mapper is None:
            mapper = state["mapper"] = SceneMapper(scene=cfg["scene"], display_px=display)
        x, y = mapper.map(rec=rec, x=x, y=y)
    elif rec.space == "display_norm":
        x, y = x * display[0], y * display[1]
    durations = {**{v: info["duration_s"] for v, info in videos.items()}, **cfg["sync"]["durations"]}
    segs = find_segments(rec=rec, sync=cfg["sync"], durations=durations, table_rows=table_rows)
    out, rects, unmatched = [], {}, []
    viewer = clean_id(rec.viewer_id, "viewer id", str(rec.path))
    for seg in segs:
        vid = clean_id(seg.video_id, "video id", seg.source)
        if videos and vid not in videos:
            log.warning("%s: video %r (%s) is not in the videos folder; skipped", rec.path, vid, seg.source)
            unmatched.append({"file": state["name"](rec.path), "video_id": vid, "sync": seg.source})
            continue
        mask = (gaze.t >= seg.t0 - 1e-9) & (gaze.t <= seg.t1 + 1e-9)
        if not mask.any():
            raise ImportFormatError(f"{rec.path}: no samples between {seg.t0:.3f} and {seg.t1:.3f} s for "
                                    f"{vid} ({seg.source})")
        if rec.space == "video_norm":
            xv, yv = x[mask], y[mask]
        else:
            rect = _segment_rect(cfg, rec, seg, mask, display, videos)
            old = state["rects"].get(vid) or rects.setdefault(vid, rect)
            if max(abs(a - b) for a, b in zip(old.as_list(), rect.as_list())) > 1.0:
                log.warning("%s: video %s drawn at %s, elsewhere at %s; keeping the first in corpus.yaml",
                            rec.path, vid, rect.as_list(), old.as_list())
            xv, yv = display_to_video(x_px=x[mask], y_px=y[mask], rect=rect)
        valid = np.isfinite(xv) & np.isfinite(yv)
        frame = pd.DataFrame({"t": gaze.t[mask] - seg.t0, "x": np.where(valid, xv, np.nan),
                              "y": np.where(valid, yv, np.nan), "valid": valid.astype(np.int8)})
        out.append(Piece(video_id=vid, viewer_id=viewer, source=state["name"](rec.path), sync=seg.source,
                         frame=frame))
    # commit what this recording fixes only once all of it converted
    if display is not None and out:
        state["display"] = display
    for vid, rect in rects.items():
        state["rects"].setdefault(vid, rect)
    state["unmatched"] += unmatched
    for key, val in (("screen_cm", rec.screen_cm), ("distance_cm", rec.distance_cm)):
        if val is not None and cfg["geometry"].get(key) is None:
            state.setdefault(key, val)
    return out


def _namer(paths: list[Path]):
    """Input paths as written in reports: relative to their common folder (no absolute paths)."""
    import os

    parents = [str(p.resolve().parent) for p in paths] or ["."]
    root = Path(os.path.commonpath(parents))

    def name(p: Path) -> str:
        try:
            return p.resolve().relative_to(root).as_posix()
        except ValueError:
            return p.name
    return name


def _copy_videos(videos: dict, out_dir: Path) -> int:
    n = 0
    for vid, info in sorted(videos.items()):
        dst = out_dir / "videos" / info["path"].name
        if dst.exists() and filecmp.cmp(info["path"], dst, shallow=False):
            continue
        with atomic_path(dst) as tmp:
            shutil.copyfile(info["path"], tmp)
        n += 1
    return n


def run_import(*, cfg: dict, out_dir: str | Path) -> dict:
    """Convert the recordings ``cfg`` names into a corpus under ``out_dir``; returns the summary.

    Writes ``gaze/<video_id>/<viewer_id>.csv`` (t, x, y, valid), ``corpus.yaml`` (coords,
    time unit, ``geometry:`` block, splits) and ``import_report.json`` (the summary). Same
    inputs and config give byte-identical files. With ``on_error: skip`` a bad file is listed
    in ``skipped`` and the rest goes on.
    """
    cfg = normalise_config(cfg)
    out_dir = Path(out_dir)
    reader = importlib.import_module(FORMATS[cfg["format"]])
    inputs = resolve_inputs(cfg)
    name = _namer(inputs)
    videos = probe_videos(cfg.get("videos"))
    staged = False
    if not videos and cfg["copy_videos"] and hasattr(reader, "stage_videos"):  # a public set's videos beside its gaze
        videos = reader.stage_videos(inputs=inputs, cfg=cfg, out_dir=out_dir)
        staged = bool(videos)
    table_rows = load_sync_table(cfg["sync"]["table"]) if cfg["sync"]["method"] == "table" else None
    state: dict = {"rects": {}, "display": None, "unmatched": [], "name": name}
    skipped, pieces, n_recordings = [], [], 0

    def fail(path: Path, exc: Exception) -> None:
        if cfg["on_error"] == "raise":
            raise exc
        log.error("skipped %s: %s", path, exc)
        skipped.append({"file": name(path), "error": str(exc)})

    for path in inputs:
        try:
            recs = reader.read(path=path, cfg=cfg)
        except ImportFormatError as exc:
            fail(path, exc)
            continue
        for rec in recs:
            n_recordings += 1
            try:
                pieces += _pieces(rec=rec, cfg=cfg, videos=videos, table_rows=table_rows, state=state)
            except ImportFormatError as exc:
                fail(rec.path, exc)

    written: list[str] = []
    per_file: list[dict] = []
    used: set[tuple[str, str]] = set()
    fmt = cfg["float_format"]
    for p in pieces:
        viewer, k = p.viewer_id, 2
        while (p.video_id, viewer) in used:
            viewer = f"{p.viewer_id}_{k}"
            k += 1
        if viewer != p.viewer_id:
            log.warning("%s: %s already has viewer %s; this recording is written as %s", p.source, p.video_id,
                        p.viewer_id, viewer)
        used.add((p.video_id, viewer))
        rel = f"gaze/{p.video_id}/{viewer}.csv"
        with atomic_path(out_dir / rel) as tmp:
            p.frame.to_csv(tmp, index=False, float_format=fmt, na_rep="", lineterminator="\n")
        written.append(rel)
        f = p.frame
        valid = f["valid"].to_numpy() == 1
        xs, ys = f["x"].to_numpy()[valid], f["y"].to_numpy()[valid]
        out_n = int(((xs < 0) | (xs > 1) | (ys < 0) | (ys > 1)).sum())
        per_file.append({"file": rel, "video_id": p.video_id, "viewer_id": viewer, "source": p.source,
                         "sync": p.sync, "samples": int(len(f)), "duration_s": round(float(f["t"].iloc[-1]), 6),
                         "share_missing": round(float(1 - valid.mean()), 6),
                         "share_out_of_frame": round(out_n / max(int(valid.sum()), 1), 6)})
    _remove_stale(out_dir, set(written))

    geometry = None
    if state["display"] is not None and state["rects"]:
        geo = cfg["geometry"]
        screen_cm = geo.get("screen_cm") or state.get("screen_cm")
        distance_cm = geo.get("distance_cm") or state.get("distance_cm")
        geometry = geometry_block(display_px=state["display"], rects=state["rects"],
                                  screen_cm=tuple(screen_cm) if screen_cm else None,
                                  distance_cm=float(distance_cm) if distance_cm else None)
    corpus: dict = {"coords": "normalized", "time_unit": "s"}
    if geometry:
        corpus["geometry"] = geometry
    if cfg.get("splits"):
        corpus["splits"] = cfg["splits"]
    write_text(out_dir / "corpus.yaml", f"# written by `gazelib import` (format: {cfg['format']}); "
               "see docs/importing.md\n" + yaml.safe_dump(corpus, sort_keys=False, default_flow_style=None))
    n_copied = len(videos) if staged else (_copy_videos(videos, out_dir) if videos and cfg["copy_videos"] else 0)

    n = sum(r["samples"] for r in per_file)
    n_valid = sum(r["samples"] * (1 - r["share_missing"]) for r in per_file)
    n_out = sum(r["samples"] * (1 - r["share_missing"]) * r["share_out_of_frame"] for r in per_file)
    summary = {
        "format": cfg["format"], "inputs": len(inputs), "recordings": n_recordings,
        "videos": sorted({r["video_id"] for r in per_file}), "n_videos": len({r["video_id"] for r in per_file}),
        "files": len(per_file), "samples": int(n),
        "share_missing": round(1 - n_valid / n, 6) if n else 0.0,
        "share_out_of_frame": round(n_out / n_valid, 6) if n_valid else 0.0,
        "display_px": list(state["display"]) if state["display"] else None,
        "geometry": geometry, "videos_copied": n_copied,
        "skipped": skipped, "unmatched_videos": state["unmatched"], "per_file": per_file,
    }
    write_json(out_dir / REPORT, summary)
    log.info("import: %d recordings -> %d files for %d videos, %d samples (%.1f%% missing, %.1f%% out of frame), "
             "%d skipped", n_recordings, len(per_file), len(summary["videos"]), n,
             100 * summary["share_missing"], 100 * summary["share_out_of_frame"], len(skipped))
    return summary


def _remove_stale(out_dir: Path, keep: set[str]) -> None:
    """Delete gaze files a previous import wrote (listed in its report) that this one did not."""
    report = out_dir / REPORT
    if not report.is_file():
        return
    try:
        old = json.loads(report.read_text())
    except json.JSONDecodeError:
        return
    for r in old.get("per_file", []):
        rel = r.get("file", "")
        p = out_dir / rel
        if rel.startswith("gaze/") and rel not in keep and p.is_file():
            p.unlink()
            if p.parent.is_dir() and not any(p.parent.iterdir()):
                p.parent.rmdir()
            log.info("removed %s (no longer produced)", p)


__all__ = ["FORMATS", "RECT_RULES", "load_config", "normalise_config", "run_import"]
