"""Moving AOIs for a video or a corpus: the ``aoi`` stage and ``gazelib aoi``.

Per video: face boxes (extract_visual's ``faces/<video_id>.parquet``, or the same detector run
here on a bare video) -> identities (:mod:`~gazelib.aoi.tracks`) -> active speaker
(:mod:`~gazelib.aoi.speaker`) -> AOIs (+ the user's ``aoi/<video_id>.csv``) -> per viewer
fixations and measures (:mod:`~gazelib.aoi.measures`) -> tables, scarf plot, metrics.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from gazelib.aoi.measures import MEASURES, gaze_events, mean_interval, scarf_labels, video_summary, viewer_measures
from gazelib.aoi.shapes import Aoi, aois_to_table
from gazelib.aoi.speaker import active_speaker, speaker_aoi
from gazelib.aoi.tracks import track_aois, track_faces
from gazelib.aoi.user_aoi import read_user_aois
from gazelib.io import atomic_path, read_table, write_json, write_table
from gazelib.layout import AOI_METRICS
from gazelib.params import check_aoi_cfg  # noqa: F401  (re-exported: the aoi block's schema is gazelib.params_schema.AoiCfg)

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- per video
def build_aois(*, faces: pd.DataFrame, frame_times: np.ndarray, audio: pd.DataFrame | None, cfg: dict,
               user: list[Aoi] = ()) -> dict:
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


def scarf_plot(*, path: Path, video_id: str, scarf: dict, speakers: pd.DataFrame, end_t: float) -> None:
    """Per viewer a strip coloured by the AOI looked at (grey: elsewhere, white: missing), and on
    top the speaker AOI (who speaks when)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    names = scarf["layer"]
    palette = plt.get_cmap("tab10").colors
    colours = ["white", "0.8"] + [palette[i % 10] for i in range(len(names))]   # -2 missing, -1 elsewhere, AOIs
    cmap = ListedColormap(colours)
    viewers = list(scarf["labels"])
    fig, ax = plt.subplots(figsize=(9, 0.45 * (len(viewers) + 1) + 1.2))
    grid = np.linspace(0, end_t, 800)
    rows = []
    spk = speakers["speaker"].to_numpy(str)
    k = np.clip(np.searchsorted(speakers["t"].to_numpy(), grid, side="right") - 1, 0, max(len(spk) - 1, 0))
    rows.append(np.array([names.index(s) if s in names else -1 for s in spk])[k] if len(spk) else np.full(grid.size, -1))
    for v in viewers:
        t, lab = scarf["labels"][v]
        j = np.clip(np.searchsorted(t, grid, side="right") - 1, 0, len(t) - 1)
        rows.append(np.where((grid >= t[0]) & (grid <= t[-1]), lab[j], -2))
    ax.imshow(np.stack(rows) + 2, aspect="auto", cmap=cmap, vmin=0, vmax=len(colours) - 1, interpolation="nearest",
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
                  cfg: dict, fixation_cfg: dict, user: list[Aoi] = (), truth: dict | None = None) -> dict:
    built = build_aois(faces=faces, frame_times=frame_times, audio=audio, cfg=cfg, user=user)
    res = {"video_id": video_id, **built}
    if gaze is not None and len(gaze):
        res["per_viewer"], res["scarf"] = measure_video(gaze=gaze, aois=built["aois"], end_t=end_t, cfg=cfg,
                                                        fixation_cfg=fixation_cfg)
        res["per_viewer"].insert(0, "video_id", video_id)
    if truth is not None:
        from gazelib.aoi.truth import check_against_truth

        res["truth"] = check_against_truth(truth=truth, tracks=built["tracks"], speakers=built["speakers"])
    return res


def write_outputs(*, results: list[dict], aoi_dir: Path | None, reports: Path, metrics_path: Path | None,
                  cfg: dict, end_t: dict, scarf_first: list[str] = ()) -> dict:
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
            scarf_plot(path=reports / f"scarf_{vid}.png", video_id=vid, scarf=r["scarf"], speakers=r["speakers"],
                       end_t=end_t[vid])
            scarfs.append(f"scarf_{vid}.png")
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


# ---------------------------------------------------------------- DVC stage
def run_aoi(*, params: dict, root: Path = Path(".")) -> dict:
    from tqdm import tqdm

    from gazelib.layout import FEATURES, load_manifest

    cfg = check_aoi_cfg(params["aoi"])
    manifest = load_manifest(root)
    corpus = root / params["data"]["corpus"]
    fix_cfg = dict(params["ingest"]["fixations"])
    results, skipped = [], {}
    end_t = {}
    for _, item in tqdm(list(manifest.iterrows()), desc="aoi", leave=False):
        vid = item["video_id"]
        try:
            vis, _ = read_table(root / FEATURES / "visual" / f"{vid}.parquet")
            faces, _ = read_table(root / FEATURES / "visual" / "faces" / f"{vid}.parquet")
            ap = root / FEATURES / "audio" / f"{vid}.parquet"
            audio = read_table(ap)[0] if ap.exists() else None
            gp = root / "data" / "interim" / "gaze" / f"{vid}.parquet"
            gaze = read_table(gp)[0] if gp.exists() else None
            up = corpus / "aoi" / f"{vid}.csv"
            user = read_user_aois(path=up, fps=float(item["fps"]), duration_s=float(item["duration_s"])) \
                if up.exists() else []
            tp = corpus / "truth" / f"{vid}.json"
            truth = json.loads(tp.read_text()) if tp.exists() else None
            end_t[vid] = float(item["duration_s"])
            results.append(process_video(video_id=vid, faces=faces, frame_times=vis["t"].to_numpy(), audio=audio,
                                         gaze=gaze, end_t=end_t[vid], cfg=cfg, fixation_cfg=fix_cfg, user=user,
                                         truth=truth))
        except (OSError, ValueError, KeyError) as exc:
            if params["data"]["on_error"] != "skip":
                raise
            log.error("aoi: %s skipped: %s", vid, exc)
            skipped[vid] = str(exc)
    test_first = sorted(manifest.loc[manifest.get("split", pd.Series(dtype=str)) == "test", "video_id"]) \
        if "split" in manifest else []
    metrics = write_outputs(results=results, aoi_dir=root / "data" / "aoi", reports=root / "reports" / "aoi",
                            metrics_path=None, cfg=cfg, end_t=end_t, scarf_first=test_first)
    metrics["skipped"] = skipped
    write_json(root / AOI_METRICS, metrics)
    log.info("aoi: %d videos, %d skipped", len(results), len(skipped))
    return metrics
