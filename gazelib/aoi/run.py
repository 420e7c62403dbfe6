"""Moving AOIs for a video or a corpus: the ``aoi`` stage and ``gazelib aoi``.

Per video: face boxes (extract_visual's ``faces/<video_id>.parquet``, or the same detector run
here on a bare video) -> identities (:mod:`~gazelib.aoi.tracks`) -> active speaker
(:mod:`~gazelib.aoi.speaker`) -> AOIs (+ the user's ``aoi/<video_id>.csv``) -> per viewer
fixations and measures (:mod:`~gazelib.aoi.measures`) -> tables, scarf plot, metrics.

The stage keeps each video's results under ``data/aoi`` (:data:`PARTS`) in the pipeline's
per-video cache (:mod:`gazelib.core.cache`): a video is recomputed only when its inputs (visual
features and face boxes, audio features, gaze, user AOI file, truth, duration and frame rate),
the aoi and fixation params or the stage's code changed. The corpus tables, scarf plots and
``aoi.json`` are then assembled from the per-video results.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from gazelib.aoi.measures import MEASURES, gaze_events, mean_interval, scarf_labels, video_summary, viewer_measures
from gazelib.aoi.shapes import Aoi, aois_to_table
from gazelib.aoi.speaker import active_speaker, speaker_aoi
from gazelib.aoi.tracks import track_aois, track_faces
from gazelib.aoi.user_aoi import read_user_aois
from gazelib.core.io import atomic_path, read_npz, read_table, write_json, write_npz, write_table
from gazelib.core.layout import AOI, AOI_METRICS
from gazelib.core.params import check_aoi_cfg  # noqa: F401  (re-exported: the aoi block's schema is gazelib.core.params_schema.AoiCfg)

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- per video
def build_aois(*, faces: pd.DataFrame, frame_times: np.ndarray, audio: pd.DataFrame | None, cfg: dict,
               user: Sequence[Aoi] = ()) -> dict:
    """Tracks, speaker per frame and the AOI list (faces, speaker, user) of one video."""
    frame_times = np.asarray(frame_times, np.float64)
    frame_dt = float(np.median(np.diff(frame_times))) if frame_times.size > 1 else 0.1
    tracks = track_faces(faces=faces, iou_min=cfg["track_iou_min"], max_gap_s=cfg["track_max_gap_s"],
                         min_track_s=cfg["track_min_s"], velocity_window_s=cfg["track_velocity_window_s"],
                         frame_times=frame_times)
    speakers = active_speaker(tracks=tracks, audio=audio, frame_times=frame_times, frame_dt=frame_dt,
                              window_s=cfg["speaker_window_s"],
                              min_frames=cfg["speaker_min_frames"], min_motion=cfg["speaker_min_motion"],
                              smooth_s=cfg["speaker_smooth_s"])
    aois = track_aois(tracks, frame_dt)
    if (speakers["speaker"] != "").any():
        aois.append(speaker_aoi(speakers=speakers, tracks=tracks, frame_dt=frame_dt))
    return {"tracks": tracks, "speakers": speakers, "aois": aois + list(user), "frame_dt": frame_dt}


def measure_video(*, gaze: pd.DataFrame, aois: list[Aoi], end_t: float, cfg: dict, fixation_cfg: dict) -> tuple[pd.DataFrame, dict]:
    """Per viewer x AOI measures and the per-sample scarf labels of one video."""
    tables, scarf = [], {}
    layer = [a for a in aois if a.kind in ("face", "user")]
    for viewer, g in gaze.groupby("viewer_id", sort=True):
        g = g.sort_values("t")
        ev = gaze_events(t=g["t"], x=g["x"], y=g["y"], valid=g["valid"], basis=cfg["basis"], fixation_cfg=fixation_cfg)
        tables.append(viewer_measures(events=ev, aois=aois, end_t=end_t).assign(viewer_id=viewer))
        scarf[viewer] = (g["t"].to_numpy(), scarf_labels(aois=layer, t=g["t"], x=g["x"], y=g["y"], valid=g["valid"]))
    cols = ["viewer_id", "aoi", "kind", *MEASURES, "n_intervals", "intervals_hit"]
    per_viewer = pd.concat(tables, ignore_index=True)[cols] if tables else pd.DataFrame(columns=cols)
    return per_viewer, {"labels": scarf, "layer": [a.name for a in layer]}


SCARF_POINTS = 800   # time points across a scarf plot


def scarf_strips(*, scarf: dict, speakers: pd.DataFrame, end_t: float) -> dict:
    """What a scarf plot shows, at :data:`SCARF_POINTS` times over the video: ``rows`` [1 + viewers,
    points] (the speaker's AOI, then each viewer's; index into ``names``, -1 elsewhere / nobody,
    -2 missing), ``names`` (the AOI layer) and ``viewers``. Small enough to keep per video."""
    names = scarf["layer"]
    viewers = list(scarf["labels"])
    grid = np.linspace(0, end_t, SCARF_POINTS)
    rows = []
    spk = speakers["speaker"].to_numpy(str)
    k = np.clip(np.searchsorted(speakers["t"].to_numpy(), grid, side="right") - 1, 0, max(len(spk) - 1, 0))
    rows.append(np.array([names.index(s) if s in names else -1 for s in spk])[k] if len(spk) else np.full(grid.size, -1))
    for v in viewers:
        t, lab = scarf["labels"][v]
        j = np.clip(np.searchsorted(t, grid, side="right") - 1, 0, len(t) - 1)
        rows.append(np.where((grid >= t[0]) & (grid <= t[-1]), lab[j], -2))
    return {"rows": np.stack(rows), "names": list(names), "viewers": viewers}


def scarf_plot(*, path: Path, video_id: str, strips: dict, end_t: float) -> None:
    """Per viewer a strip coloured by the AOI looked at (grey: elsewhere, white: missing), and on
    top the speaker AOI (who speaks when); ``strips`` from :func:`scarf_strips`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    names, viewers, rows = strips["names"], strips["viewers"], strips["rows"]
    palette = plt.get_cmap("tab10").colors
    colours = ["white", "0.8"] + [palette[i % 10] for i in range(len(names))]   # -2 missing, -1 elsewhere, AOIs
    cmap = ListedColormap(colours)
    fig, ax = plt.subplots(figsize=(9, 0.45 * (len(viewers) + 1) + 1.2))
    ax.imshow(rows + 2, aspect="auto", cmap=cmap, vmin=0, vmax=len(colours) - 1, interpolation="nearest",
              extent=(0, end_t, len(rows) - 0.5, -0.5))
    ax.set_yticks(range(len(rows)), ["speaker"] + viewers)
    ax.axhline(0.5, color="k", lw=1)
    ax.set_xlabel("time (s)")
    ax.set_title(f"{video_id}: AOI looked at per viewer (top: the active speaker)")
    ax.legend(handles=[Patch(color=colours[i + 2], label=n) for i, n in enumerate(names)] +
              [Patch(color="0.8", label="elsewhere / nobody"), Patch(facecolor="white", edgecolor="k", label="missing")],
              loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=min(6, len(names) + 2), fontsize=8, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)


def corpus_metrics(*, per_viewer: pd.DataFrame) -> dict:
    """By AOI kind (speaker, face, user): each measure's mean over videos of the per-video mean over
    viewers (and AOIs of that kind), with a 95 % interval over videos."""
    out = {}
    for kind, g in per_viewer.groupby("kind", sort=True):
        per_video = g.groupby("video_id")[list(MEASURES)].mean()
        out[kind] = {"n_videos": int(len(per_video)),
                     **{m: mean_interval(per_video[m].to_numpy(np.float64)) for m in MEASURES}}
    return out


def process_video(*, video_id: str, faces: pd.DataFrame, frame_times, audio, gaze: pd.DataFrame | None, end_t: float,
                  cfg: dict, fixation_cfg: dict, user: Sequence[Aoi] = (), truth: dict | None = None) -> dict:
    built = build_aois(faces=faces, frame_times=frame_times, audio=audio, cfg=cfg, user=user)
    res = {"video_id": video_id, **built}
    if gaze is not None and len(gaze):
        res["per_viewer"], scarf = measure_video(gaze=gaze, aois=built["aois"], end_t=end_t, cfg=cfg,
                                                 fixation_cfg=fixation_cfg)
        res["per_viewer"].insert(0, "video_id", video_id)
        res["scarf"] = scarf_strips(scarf=scarf, speakers=built["speakers"], end_t=end_t)
    if truth is not None:
        from gazelib.aoi.truth import check_against_truth

        res["truth"] = check_against_truth(truth=truth, tracks=built["tracks"], speakers=built["speakers"])
    return res


def write_outputs(*, results: list[dict], aoi_dir: Path | None, reports: Path, metrics_path: Path | None,
                  cfg: dict, end_t: dict, scarf_first: Sequence[str] = ()) -> dict:
    """data/aoi/<video_id>.parquet, reports/aoi/{measures,summary,speaker}.(parquet|csv), scarf plots, metrics."""
    for r in results:
        if aoi_dir is not None:
            write_table(aoi_dir / f"{r['video_id']}.parquet", aois_to_table(r["aois"]), meta={"video_id": r["video_id"]})
    per_viewer = pd.concat([r["per_viewer"] for r in results if "per_viewer" in r], ignore_index=True) \
        if any("per_viewer" in r for r in results) else pd.DataFrame()
    summary = pd.concat([video_summary(r["per_viewer"]).assign(video_id=r["video_id"]) for r in results
                         if "per_viewer" in r], ignore_index=True) if len(per_viewer) else pd.DataFrame()
    speakers = pd.concat([r["speakers"].assign(video_id=r["video_id"]) for r in results], ignore_index=True) \
        if results else pd.DataFrame()
    tracks = pd.concat([r["tracks"].assign(video_id=r["video_id"]) for r in results], ignore_index=True) \
        if results else pd.DataFrame()
    for name, df in (("measures", per_viewer), ("summary", summary), ("speaker", speakers), ("tracks", tracks)):
        write_table(reports / f"{name}.parquet", df)
        with atomic_path(reports / f"{name}.csv") as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")
    order = [v for v in scarf_first if any(r["video_id"] == v for r in results)] + \
            [r["video_id"] for r in results if r["video_id"] not in scarf_first]
    scarfs = []
    for vid in order[:cfg["scarf_videos"]]:
        r = next(r for r in results if r["video_id"] == vid)
        if "scarf" in r:
            scarf_plot(path=reports / f"scarf_{vid}.png", video_id=vid, strips=r["scarf"], end_t=end_t[vid])
            scarfs.append(f"scarf_{vid}.png")
    for old in reports.glob("scarf_*.png"):   # an earlier run's plot of a video not plotted now
        if old.name not in scarfs:
            old.unlink()
    truth = {r["video_id"]: r["truth"] for r in results if "truth" in r}
    metrics = {"basis": cfg["basis"], "n_videos": len(results),
               "n_tracks": {r["video_id"]: int(r["tracks"]["track"].nunique()) for r in results},
               "speaker_frames_share": {r["video_id"]: float((r["speakers"]["speaker"] != "").mean())
                                        for r in results if len(r["speakers"])},
               "by_kind": corpus_metrics(per_viewer=per_viewer) if len(per_viewer) else {}, "scarf_plots": scarfs}
    if truth:
        metrics["truth"] = {"per_video": truth, **{k: mean_interval([t[k] for t in truth.values()
                                                                     if t[k] is not None])
                                                   for k in ("speaker_accuracy", "silence_accuracy", "frame_accuracy",
                                                             "coverage")},
                            "id_switches_total": int(sum(t["id_switches"] for t in truth.values()))}
    if metrics_path is not None:
        write_json(metrics_path, metrics)
    return metrics


# ---------------------------------------------------------------- per-video results on disk
# what the stage keeps per video under data/aoi besides <video_id>.parquet (the AOI keyframes
# evaluate reads): result key -> (sub-folder, suffix); measures and scarf only with gaze, truth
# only with the corpus' truth/<video_id>.json
PARTS = {"tracks": ("tracks", ".parquet"), "speakers": ("speaker", ".parquet"), "per_viewer": ("measures", ".parquet"),
         "scarf": ("scarf", ".npz"), "truth": ("truth", ".json")}


def save_video(*, res: dict, out: Path) -> list[Path]:
    """Write one video's results (:func:`process_video`) under ``out``; returns the files written.
    A part this result does not have (no gaze, no truth) is removed, so an earlier run's is never
    read back with it."""
    vid = res["video_id"]
    files = [out / f"{vid}.parquet"]
    write_table(files[0], aois_to_table(res["aois"]), meta={"video_id": vid})
    for key, (folder, suffix) in PARTS.items():
        path = out / folder / f"{vid}{suffix}"
        if key not in res:
            path.unlink(missing_ok=True)
            continue
        if key == "scarf":
            sc = res["scarf"]
            write_npz(path, rows=sc["rows"], names=np.array(sc["names"], dtype=str),
                      viewers=np.array(sc["viewers"], dtype=str))
        elif key == "truth":
            write_json(path, res["truth"])
        else:
            write_table(path, res[key])
        files.append(path)
    return files


def load_video(*, video_id: str, out: Path, files: list[str]) -> dict:
    """One video's results as :func:`save_video` wrote them (``files``: those its cache record
    lists, relative to ``out``), in the form :func:`write_outputs` takes."""
    res: dict = {"video_id": video_id}
    listed = set(files)
    for key, (folder, suffix) in PARTS.items():
        rel = f"{folder}/{video_id}{suffix}"
        if rel not in listed:
            continue
        if key == "scarf":
            a = read_npz(out / rel)
            res["scarf"] = {"rows": a["rows"], "names": [str(n) for n in a["names"]],
                            "viewers": [str(v) for v in a["viewers"]]}
        elif key == "truth":
            res["truth"] = json.loads((out / rel).read_text())
        else:
            res[key] = read_table(out / rel)[0]
    return res


# ---------------------------------------------------------------- DVC stage
def run_aoi(*, params: dict, root: Path = Path(".")) -> dict:
    """Stage ``aoi``: every manifest video through :func:`process_video` (per-video cache under
    ``data/aoi``), then the corpus tables and plots (``reports/aoi``) and ``aoi.json``."""
    from gazelib.core.cache import VideoCache, hash_file, hash_obj, run_per_video
    from gazelib.core.closure import stage_code
    from gazelib.core.layout import FEATURES, load_manifest, manifest_items

    cfg = check_aoi_cfg(params["aoi"])
    manifest = load_manifest(root)
    corpus = root / params["data"]["corpus"]
    fix_cfg = dict(params["ingest"]["fixations"])
    out = root / AOI

    def inputs(vid: str) -> dict[str, Path]:
        return {"visual": root / FEATURES / "visual" / f"{vid}.parquet",
                "faces": root / FEATURES / "visual" / "faces" / f"{vid}.parquet",
                "audio": root / FEATURES / "audio" / f"{vid}.parquet",
                "gaze": root / "data" / "interim" / "gaze" / f"{vid}.parquet",
                "user": corpus / "aoi" / f"{vid}.csv", "truth": corpus / "truth" / f"{vid}.json"}

    def input_hash(item: dict) -> str:
        files = inputs(item["video_id"])
        return hash_obj({"fps": float(item["fps"]), "duration_s": float(item["duration_s"]),
                         **{k: hash_file(p) if p.exists() else None for k, p in files.items()}})

    def compute(item: dict) -> list[Path]:
        vid = item["video_id"]
        f = inputs(vid)
        vis, _ = read_table(f["visual"])
        faces, _ = read_table(f["faces"])
        audio = read_table(f["audio"])[0] if f["audio"].exists() else None
        gaze = read_table(f["gaze"])[0] if f["gaze"].exists() else None
        user = read_user_aois(path=f["user"], fps=float(item["fps"]), duration_s=float(item["duration_s"])) \
            if f["user"].exists() else []
        truth = json.loads(f["truth"].read_text()) if f["truth"].exists() else None
        res = process_video(video_id=vid, faces=faces, frame_times=vis["t"].to_numpy(), audio=audio, gaze=gaze,
                            end_t=float(item["duration_s"]), cfg=cfg, fixation_cfg=fix_cfg, user=user, truth=truth)
        return save_video(res=res, out=out)

    items = [{**it, "media_hash": input_hash(it)} for it in manifest_items(manifest)]
    run = run_per_video(cache=VideoCache(out, "aoi"), items=items, params={"aoi": cfg, "fixations": fix_cfg},
                        code=stage_code(stage="aoi", cfg=cfg), compute=compute,
                        on_error=params["data"]["on_error"])
    cache = VideoCache(out, "aoi")
    results = [load_video(video_id=it["video_id"], out=out, files=cache.record(it["video_id"])["files"])
               for it in items if it["video_id"] not in run.failed]
    end_t = {it["video_id"]: float(it["duration_s"]) for it in items}
    test_first = sorted(manifest.loc[manifest.get("split", pd.Series(dtype=str)) == "test", "video_id"]) \
        if "split" in manifest else []
    metrics = write_outputs(results=results, aoi_dir=None, reports=root / "reports" / "aoi",
                            metrics_path=None, cfg=cfg, end_t=end_t, scarf_first=test_first)
    metrics["skipped"] = dict(run.failed)
    write_json(root / AOI_METRICS, metrics)
    log.info("aoi: %d videos (%d computed, %d reused), %d skipped", len(results), len(run.computed),
             len(run.cached), len(run.failed))
    return metrics
