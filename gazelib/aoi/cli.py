"""``gazelib aoi VIDEO_OR_FOLDER``: the aoi stage's work outside DVC, on a video file, a corpus
folder or a ``gazelib predict`` output folder. Apart from the stage's module so that the stage
does not depend on the face detector and audio extractor code, which only a bare video needs here."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gazelib.aoi.run import check_aoi_cfg, process_video, write_outputs
from gazelib.aoi.user_aoi import read_user_aois
from gazelib.core.io import read_table, write_json

log = logging.getLogger(__name__)


def detect_faces(*, video_path: str | Path, video_id: str, vcfg: dict) -> tuple[pd.DataFrame, np.ndarray]:
    """Face boxes and mouth motion of a video with no extract_visual output: the same detector, frame
    sampling, detection rate (boxes held between) and mouth measure as extract_visual."""
    import cv2

    from gazelib.features.faces import FaceDetector

    from gazelib.features.visual import box_mask
    from gazelib.core.media import iter_frames

    det = FaceDetector.from_params(vcfg)
    rows, times, prev = [], [], None
    boxes, next_detect = np.zeros((0, 4), np.float32), -np.inf
    for t, rgb in iter_frames(path=video_path, sample_fps=vcfg["sample_fps"], width=vcfg["work_width"],
                              height=vcfg["work_height"], video_id=video_id):
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
        if t + 1e-6 >= next_detect:
            boxes = np.asarray(sorted(map(tuple, np.asarray(det.detect(rgb)).reshape(-1, 4))), np.float32).reshape(-1, 4)
            next_detect = t + 1.0 / vcfg["face_fps"]
        motion = cv2.absdiff(gray, prev) / 255.0 if prev is not None else np.zeros_like(gray)
        h, w = gray.shape
        for b, ms in zip(boxes, box_mask(boxes, h, w, lower_third=True)):
            rows.append({"t": t, "x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3],
                         "mouth_motion": float(motion[ms].mean()) if motion[ms].size else 0.0})
        times.append(t)
        prev = gray
    return pd.DataFrame(rows, columns=["t", "x0", "y0", "x1", "y1", "mouth_motion"]), np.asarray(times)


def _gaze_folder(*, folder: Path, video_id: str, media, ingest_cfg: dict, coords: str, time_unit: str) -> pd.DataFrame:
    from gazelib.gaze.ingest import read_gaze_csv

    tables = []
    for f in sorted(folder.glob("*.csv")):
        g = read_gaze_csv(path=f, video_id=video_id, viewer_id=f.stem, coords=coords, time_unit=time_unit,
                          width=media.width, height=media.height, duration_s=media.duration_s, cfg=ingest_cfg)
        tables.append(g.assign(viewer_id=f.stem)[["viewer_id", "t", "x", "y", "valid"]])
    if not tables:
        raise FileNotFoundError(f"{video_id}: no gaze CSV (<viewer_id>.csv) in {folder}")
    return pd.concat(tables, ignore_index=True)


PREDICT_SUMMARY = "summary.json"   # what `gazelib predict` writes beside <video_id>/ and _features/


@dataclass
class Media:
    """What the AOIs need to know of a video: from probing it, or from a predict folder's summary."""

    duration_s: float
    fps: float
    width: int
    height: int
    has_audio: bool


@dataclass
class Job:
    """One video of a ``gazelib aoi`` run and where its inputs are."""

    video_id: str
    video: Path | None                      # the video file (None: a predict folder whose source is gone)
    media: Media | None = None              # None: probe ``video``
    features: Path | None = None            # an extract folder with visual/, visual/faces/, audio/
    gaze: pd.DataFrame | Path | None = None  # a table (t, x, y, valid per viewer_id) or a folder of <viewer_id>.csv
    gaze_source: str = ""                   # where that gaze came from, for the log
    user: Path | None = None
    truth: Path | None = None
    coords: str = "normalized"
    time_unit: str = "s"


class AoiInputError(ValueError):
    """What ``gazelib aoi`` was given cannot be read as asked; names the path and what was expected."""


def input_kind(path: Path) -> str:
    """``video`` (a file), ``corpus`` (a folder with videos/) or ``predict`` (a ``gazelib predict``
    output folder); anything else is refused, naming the path and what was looked for."""
    path = Path(path)
    if path.is_file():
        return "video"
    if path.is_dir():
        if (path / "videos").is_dir():
            return "corpus"
        if (path / PREDICT_SUMMARY).is_file():
            return "predict"
    what = "no such file or folder" if not path.exists() else "a folder with neither videos/ nor summary.json"
    raise AoiInputError(
        f"{path}: {what}. `gazelib aoi` reads a video file, a corpus folder (videos/, gaze/<video_id>/, optional "
        f"aoi/ and truth/) or a `gazelib predict` output folder ({PREDICT_SUMMARY}, <video_id>/predictions.parquet, "
        "_features/)")


def _one(path: Path | None, video_id: str, n_videos: int, what: str, where: Path) -> Path | None:
    """``--gaze`` / ``--aoi`` for one video of a predict folder: ``--aoi`` a file (one video) or a
    folder of ``<video_id>.csv``; ``--gaze`` a folder of ``<viewer_id>.csv`` (one video) or of
    ``<video_id>/<viewer_id>.csv``."""
    if path is None:
        return None
    if what == "--aoi" and path.is_dir():
        return path / f"{video_id}.csv" if (path / f"{video_id}.csv").exists() else None
    if what == "--gaze" and (path / video_id).is_dir():
        return path / video_id
    if n_videos == 1:
        return path
    raise AoiInputError(f"{what} {path}: {where} holds {n_videos} videos; give a folder with "
                        f"{'<video_id>.csv' if what == '--aoi' else '<video_id>/<viewer_id>.csv'} per video")


def predict_jobs(*, folder: Path, gaze: Path | None = None, aoi_file: Path | None = None,
                 features: Path | None = None) -> list[Job]:
    """The videos of a ``gazelib predict`` output folder: face boxes and audio from its
    ``_features/`` (the extractors predict ran), duration and frame rate from ``summary.json``,
    and the recorded gaze it aligned (``predictions.parquet``: ``gaze_x, gaze_y, gaze_valid`` at
    the model's steps, present when predict was given ``--gaze``) as one viewer named after the
    recording. A video predict could not read is skipped with its error."""
    from gazelib.serve.predict import FEATURES_DIR

    folder = Path(folder)
    path = folder / PREDICT_SUMMARY
    try:
        summary = json.loads(path.read_text())
        videos = summary["videos"]
    except (ValueError, KeyError, TypeError) as exc:
        raise AoiInputError(f"{path}: not a `gazelib predict` summary (a JSON object with 'videos'): {exc}") from exc
    feats = Path(features) if features is not None else folder / FEATURES_DIR
    jobs = []
    for vid, rec in videos.items():
        if "duration_s" not in rec:
            log.warning("%s: skipped: gazelib predict could not read it (%s)", vid, rec.get("error", "no probe"))
            continue
        src = Path(rec.get("source", ""))
        if not (feats / "visual" / "faces" / f"{vid}.parquet").exists() and not src.is_file():
            if rec.get("status") != "ok":
                log.warning("%s: skipped: gazelib predict failed on it (%s) and left no face boxes in %s", vid,
                            rec.get("error"), feats)
                continue
            raise FileNotFoundError(f"{vid}: neither its face boxes ({feats / 'visual' / 'faces' / (vid + '.parquet')}) "
                                    f"nor its video ({src}) exist any more")
        media = Media(duration_s=float(rec["duration_s"]), fps=float(rec["fps"]), width=int(rec["width"]),
                      height=int(rec["height"]), has_audio=bool(rec.get("has_audio", True)))
        job = Job(video_id=vid, video=src if src.is_file() else None, media=media, features=feats,
                  user=_one(aoi_file, vid, len(videos), "--aoi", folder))
        given = _one(gaze, vid, len(videos), "--gaze", folder)
        if given is not None:
            job.gaze, job.gaze_source = given, str(given)
        else:
            job.gaze, job.gaze_source = _predicted_gaze(folder / vid / "predictions.parquet", rec), str(folder / vid)
        jobs.append(job)
    return jobs


def _predicted_gaze(path: Path, rec: dict) -> pd.DataFrame | None:
    """The recording ``gazelib predict --gaze`` aligned to the model's steps (None without one)."""
    if not path.exists():
        return None
    df = read_table(path)[0]
    if "gaze_x" not in df:
        return None
    x, y = df["gaze_x"].to_numpy(np.float64), df["gaze_y"].to_numpy(np.float64)
    viewer = Path(rec["gaze"]).stem if rec.get("gaze") else "viewer"
    return pd.DataFrame({"viewer_id": viewer, "t": df["t"].to_numpy(np.float64), "x": x, "y": y,
                         "valid": df["gaze_valid"].to_numpy(bool) & np.isfinite(x) & np.isfinite(y)})


def _jobs(*, inputs: Path, gaze: Path | None, aoi_file: Path | None, features: Path | None) -> list[Job]:
    from gazelib.core.media import VIDEO_EXTS   # a corpus' videos as ingest finds them
    from gazelib.gaze.ingest import load_corpus_config

    kind = input_kind(inputs)
    if kind == "predict":
        return predict_jobs(folder=inputs, gaze=gaze, aoi_file=aoi_file, features=features)
    if kind == "video":
        return [Job(video_id=inputs.stem, video=inputs, features=features, gaze=gaze,
                    gaze_source=str(gaze) if gaze else "", user=aoi_file)]
    ccfg = load_corpus_config(inputs)
    videos = sorted(p for p in (inputs / "videos").glob("*") if p.suffix.lower() in VIDEO_EXTS)
    if not videos:
        raise FileNotFoundError(f"{inputs}: no {'/'.join(VIDEO_EXTS)} files in videos/")
    return [Job(video_id=v.stem, video=v, features=features, gaze=inputs / "gaze" / v.stem,
                gaze_source=str(inputs / "gaze" / v.stem), user=inputs / "aoi" / f"{v.stem}.csv",
                truth=inputs / "truth" / f"{v.stem}.json", coords=ccfg.get("coords", "normalized"),
                time_unit=ccfg.get("time_unit", "s")) for v in videos]


def _faces_and_audio(job: Job, params: dict) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame | None]:
    """Face boxes, frame times and audio features: the extract folder's when it has this video,
    else computed here from the video with the pipeline's extractors."""
    from gazelib.features.audio import extract_audio_features

    f = Path(job.features) if job.features is not None else None
    if f is not None and (f / "visual" / "faces" / f"{job.video_id}.parquet").exists():
        faces = read_table(f / "visual" / "faces" / f"{job.video_id}.parquet")[0]
        frame_times = read_table(f / "visual" / f"{job.video_id}.parquet")[0]["t"].to_numpy()
        ap = f / "audio" / f"{job.video_id}.parquet"
        return faces, frame_times, read_table(ap)[0] if ap.exists() else None
    faces, frame_times = detect_faces(video_path=job.video, video_id=job.video_id, vcfg=params["visual"])
    audio = extract_audio_features(video_path=job.video, video_id=job.video_id, duration_s=job.media.duration_s,
                                   cfg=params["audio"]).table if job.media.has_audio else None
    return faces, frame_times, audio


def aoi_on_inputs(*, inputs: Path, out: Path, params: dict, gaze: Path | None = None, aoi_file: Path | None = None,
                  features: Path | None = None) -> dict:
    """``gazelib aoi``: a video file (gaze from ``gaze``, a folder of <viewer_id>.csv), a corpus folder
    (videos/, gaze/<video_id>/, optional aoi/<video_id>.csv and truth/) or a ``gazelib predict``
    output folder (:func:`predict_jobs`). Face boxes and audio come from ``features`` (an extract
    folder with visual/faces and audio; a predict folder's own ``_features/``) when it has the video,
    else are computed here. A video without gaze gets its tracks and speaker; its measures are
    skipped, and ``aoi.json`` lists it under ``no_gaze``."""
    from gazelib.core.media import probe_video

    cfg = check_aoi_cfg(params["aoi"])
    inputs = Path(inputs)
    jobs = _jobs(inputs=inputs, gaze=Path(gaze) if gaze else None, aoi_file=Path(aoi_file) if aoi_file else None,
                 features=Path(features) if features else None)
    results, end_t, no_gaze = [], {}, []
    for job in jobs:
        vid = job.video_id
        if job.media is None:
            pr = probe_video(path=job.video, video_id=vid)
            job.media = Media(duration_s=float(pr.duration_s), fps=float(pr.fps), width=pr.width, height=pr.height,
                              has_audio=pr.has_audio)
        end_t[vid] = job.media.duration_s
        faces, frame_times, audio = _faces_and_audio(job, params)
        g = job.gaze
        if isinstance(g, Path):
            g = _gaze_folder(folder=g, video_id=vid, media=job.media, ingest_cfg=params["ingest"], coords=job.coords,
                             time_unit=job.time_unit) if g.is_dir() else None
        if g is None or not len(g):
            log.warning("%s: no gaze%s: AOI tracks and speaker only, no measures", vid,
                        f" in {job.gaze_source}" if job.gaze_source else "")
            no_gaze.append(vid)
            g = None
        user = read_user_aois(path=job.user, fps=job.media.fps, duration_s=job.media.duration_s) \
            if job.user is not None and Path(job.user).exists() else []
        truth = json.loads(Path(job.truth).read_text()) if job.truth is not None and Path(job.truth).exists() else None
        results.append(process_video(video_id=vid, faces=faces, frame_times=frame_times, audio=audio, gaze=g,
                                     end_t=end_t[vid], cfg=cfg, fixation_cfg=dict(params["ingest"]["fixations"]),
                                     user=user, truth=truth))
    out = Path(out)
    metrics = write_outputs(results=results, aoi_dir=out / "aoi", reports=out, metrics_path=None, cfg=cfg, end_t=end_t)
    metrics["no_gaze"] = no_gaze
    write_json(out / "aoi.json", metrics)
    return metrics


def _click_cmd():
    import click

    @click.command("aoi", context_settings={"help_option_names": ["-h", "--help"]})
    @click.argument("inputs", metavar="VIDEO_OR_FOLDER", type=click.Path(exists=True))
    @click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False),
                  help="Folder for measures/summary/speaker/tracks (.parquet, .csv), scarf plots, aoi.json, aoi/.")
    @click.option("--gaze", type=click.Path(exists=True, file_okay=False),
                  help="With a video file (or a predict folder of one video): folder of <viewer_id>.csv (t, x, y[, "
                       "valid]; seconds, normalised); with a predict folder of several: <video_id>/<viewer_id>.csv.")
    @click.option("--aoi", "aoi_file", type=click.Path(exists=True),
                  help="With a video file: a user AOI file (docs/aoi.md); with a predict folder: that file (one "
                       "video) or a folder of <video_id>.csv.")
    @click.option("--features", type=click.Path(exists=True, file_okay=False),
                  help="An extract folder (visual/faces, audio) to reuse instead of detecting faces again "
                       "(a predict folder's own _features/ is used without it).")
    @click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(),
                  help="params.yaml whose aoi, visual, audio and ingest blocks are used.")
    def aoi_cmd(inputs, out_dir, gaze, aoi_file, features, params_path):
        """Moving AOIs (face identities, active speaker, user AOIs) and dwell / TTFF measures.

        VIDEO_OR_FOLDER is a video file, a corpus folder (videos/, gaze/<video_id>/, optional aoi/
        and truth/) or a `gazelib predict` output folder (its features and, when predict was given
        --gaze, the recording it aligned). A video without gaze gets its tracks and speaker only.
        """
        from gazelib.core.params import load_params, setup_logging

        setup_logging()
        try:
            params = load_params(params_path)
        except FileNotFoundError as exc:
            raise click.UsageError(f"{exc}; pass --params with the project's params.yaml") from exc
        try:
            m = aoi_on_inputs(inputs=Path(inputs), out=Path(out_dir), params=params, gaze=Path(gaze) if gaze else None,
                              aoi_file=Path(aoi_file) if aoi_file else None,
                              features=Path(features) if features else None)
        except AoiInputError as exc:
            raise click.UsageError(str(exc)) from exc
        click.echo(f"{m['n_videos']} video(s): tracks {m['n_tracks']}; outputs in {out_dir}")
        if m["no_gaze"]:
            click.echo(f"no gaze for {', '.join(m['no_gaze'])}: tracks and speaker only, no measures")
    return aoi_cmd


aoi_cmd = _click_cmd()
