"""``gazelib aoi VIDEO_OR_CORPUS``: the aoi stage's work outside DVC, on a video file or a corpus
folder. Apart from the stage's module so that the stage does not depend on the face detector and
audio extractor code, which only a bare video needs here."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from gazelib.aoi.run import check_aoi_cfg, process_video, write_outputs
from gazelib.aoi.user_aoi import read_user_aois
from gazelib.io import read_table


def detect_faces(*, video_path: str | Path, video_id: str, vcfg: dict) -> tuple[pd.DataFrame, np.ndarray]:
    """Face boxes and mouth motion of a video with no extract_visual output: the same detector, frame
    sampling, detection rate (boxes held between) and mouth measure as extract_visual."""
    import cv2

    from gazelib.features.visual import FaceDetector, box_mask
    from gazelib.media import iter_frames

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


def _gaze_folder(*, folder: Path, video_id: str, probe, ingest_cfg: dict, coords: str, time_unit: str) -> pd.DataFrame:
    from gazelib.ingest import read_gaze_csv

    tables = []
    for f in sorted(folder.glob("*.csv")):
        g = read_gaze_csv(path=f, video_id=video_id, viewer_id=f.stem, coords=coords, time_unit=time_unit,
                          width=probe.width, height=probe.height, duration_s=probe.duration_s, cfg=ingest_cfg)
        tables.append(g.assign(viewer_id=f.stem)[["viewer_id", "t", "x", "y", "valid"]])
    if not tables:
        raise FileNotFoundError(f"{video_id}: no gaze CSV (<viewer_id>.csv) in {folder}")
    return pd.concat(tables, ignore_index=True)


def aoi_on_inputs(*, inputs: Path, out: Path, params: dict, gaze: Path | None = None, aoi_file: Path | None = None,
                  features: Path | None = None) -> dict:
    """``gazelib aoi``: a video file (gaze from ``gaze``, a folder of <viewer_id>.csv) or a corpus folder
    (videos/, gaze/<video_id>/, optional aoi/<video_id>.csv and truth/). Face boxes and audio come from
    ``features`` (an extract folder with visual/faces and audio) when given, else are computed here."""
    from gazelib.features.audio import extract_audio_features
    from gazelib.ingest import load_corpus_config
    from gazelib.media import probe_video

    cfg = check_aoi_cfg(params["aoi"])
    inputs = Path(inputs)
    if inputs.is_dir():
        ccfg = load_corpus_config(inputs)
        videos = sorted(p for p in (inputs / "videos").glob("*") if p.suffix.lower() in
                        (".mp4", ".mkv", ".mov", ".avi", ".webm"))
        if not videos:
            raise FileNotFoundError(f"{inputs}: no videos/ with .mp4/.mkv/.mov/.avi/.webm files")
        jobs = [(v, inputs / "gaze" / v.stem, inputs / "aoi" / f"{v.stem}.csv", inputs / "truth" / f"{v.stem}.json")
                for v in videos]
    elif inputs.is_file():
        ccfg = {"coords": "normalized", "time_unit": "s"}
        jobs = [(inputs, gaze, aoi_file, None)]
    else:
        raise FileNotFoundError(f"{inputs}: no such video file or corpus folder")
    results, end_t = [], {}
    for video, gdir, ufile, tfile in jobs:
        vid = video.stem
        probe = probe_video(path=video, video_id=vid)
        end_t[vid] = float(probe.duration_s)
        if features is not None and (Path(features) / "visual" / "faces" / f"{vid}.parquet").exists():
            faces = read_table(Path(features) / "visual" / "faces" / f"{vid}.parquet")[0]
            frame_times = read_table(Path(features) / "visual" / f"{vid}.parquet")[0]["t"].to_numpy()
            audio = read_table(Path(features) / "audio" / f"{vid}.parquet")[0]
        else:
            faces, frame_times = detect_faces(video_path=video, video_id=vid, vcfg=params["visual"])
            audio = extract_audio_features(video_path=video, video_id=vid, duration_s=probe.duration_s,
                                           cfg=params["audio"]).table if probe.has_audio else None
        g = None
        if gdir is not None and Path(gdir).is_dir():
            g = _gaze_folder(folder=Path(gdir), video_id=vid, probe=probe, ingest_cfg=params["ingest"],
                             coords=ccfg.get("coords", "normalized"), time_unit=ccfg.get("time_unit", "s"))
        user = read_user_aois(path=ufile, fps=probe.fps, duration_s=probe.duration_s) \
            if ufile is not None and Path(ufile).exists() else []
        truth = json.loads(Path(tfile).read_text()) if tfile is not None and Path(tfile).exists() else None
        results.append(process_video(video_id=vid, faces=faces, frame_times=frame_times, audio=audio, gaze=g,
                                     end_t=end_t[vid], cfg=cfg, fixation_cfg=dict(params["ingest"]["fixations"]),
                                     user=user, truth=truth))
    out = Path(out)
    return write_outputs(results=results, aoi_dir=out / "aoi", reports=out, metrics_path=out / "aoi.json", cfg=cfg,
                         end_t=end_t)


def _click_cmd():
    import click

    @click.command("aoi", context_settings={"help_option_names": ["-h", "--help"]})
    @click.argument("inputs", metavar="VIDEO_OR_CORPUS", type=click.Path(exists=True))
    @click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False),
                  help="Folder for measures/summary/speaker/tracks (.parquet, .csv), scarf plots, aoi.json, aoi/.")
    @click.option("--gaze", type=click.Path(exists=True, file_okay=False),
                  help="With a video file: folder of <viewer_id>.csv (t, x, y[, valid]; seconds, normalised).")
    @click.option("--aoi", "aoi_file", type=click.Path(exists=True, dir_okay=False),
                  help="With a video file: a user AOI file (docs/aoi.md).")
    @click.option("--features", type=click.Path(exists=True, file_okay=False),
                  help="An extract folder (visual/faces, audio) to reuse instead of detecting faces again.")
    @click.option("--params", "params_path", default="params.yaml", show_default=True, type=click.Path(),
                  help="params.yaml whose aoi, visual, audio and ingest blocks are used.")
    def aoi_cmd(inputs, out_dir, gaze, aoi_file, features, params_path):
        """Moving AOIs (face identities, active speaker, user AOIs) and dwell / TTFF measures."""
        from gazelib.params import load_params, setup_logging

        setup_logging()
        try:
            params = load_params(params_path)
        except FileNotFoundError as exc:
            raise click.UsageError(f"{exc}; pass --params with the project's params.yaml") from exc
        m = aoi_on_inputs(inputs=Path(inputs), out=Path(out_dir), params=params, gaze=Path(gaze) if gaze else None,
                          aoi_file=Path(aoi_file) if aoi_file else None,
                          features=Path(features) if features else None)
        click.echo(f"{m['n_videos']} video(s): tracks {m['n_tracks']}; outputs in {out_dir}")
    return aoi_cmd


aoi_cmd = _click_cmd()
