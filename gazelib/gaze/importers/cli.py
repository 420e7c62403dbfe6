"""``gazelib import``: the command-line face of :func:`gazelib.gaze.importers.run_import`."""
from __future__ import annotations

import logging
from pathlib import Path

import click

from gazelib.gaze.importers.base import ImportFormatError
from gazelib.gaze.importers.run import FORMATS, load_config, run_import

EPILOG = """\b
Examples:
  # EyeLink: one ASC per viewer, a MSG line "VIDEO_START clip07" starts each video
  gazelib import eyelink data/asc/*.asc --out corpus --videos stimuli \\
      --sync-start 'VIDEO_START (?P<video>\\S+)' --sync-end 'VIDEO_END' \\
      --screen-cm 53.1x29.9 --distance-cm 65

\b
  # Tobii Pro Lab TSV export (all recordings in one file), video rect from the export
  gazelib import tobii export.tsv --out corpus --videos stimuli --rect media

\b
  # Pupil Labs Neon recording folders, display corners seen by the scene camera
  gazelib import neon rec1 rec2 --out corpus --config neon.yaml

\b
  # DIEM: the downloaded release folder (one folder per video); videos + soundtracks muxed
  gazelib import diem DIEM/ --out corpus

\b
  # everything in a config file (a plain mapping or a params.yaml with an import: group)
  gazelib import --config import.yaml --out corpus

\b
Then:  dvc exp run -S data.corpus=corpus     (see docs/importing.md)
"""


def _pair(value: str | None, what: str, cast=float):
    if value is None:
        return None
    parts = value.lower().replace(",", "x").split("x")
    if len(parts) != 2:
        raise click.BadParameter(f"{what} must look like WxH, got {value!r}")
    try:
        return [cast(p) for p in parts]
    except ValueError:
        raise click.BadParameter(f"{what} must be two numbers WxH, got {value!r}") from None


def _rect(value: str | None):
    if value is None:
        return None
    if "," in value:
        try:
            parts = [float(v) for v in value.split(",")]
        except ValueError:
            raise click.BadParameter(f"--rect x,y,w,h must be numbers, got {value!r}") from None
        if len(parts) != 4:
            raise click.BadParameter(f"--rect needs x,y,w,h, got {value!r}")
        return parts
    return value


@click.command("import", epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"],
                                                          "max_content_width": 100})
@click.argument("fmt", metavar="FORMAT", required=False, type=click.Choice(sorted(FORMATS)))
@click.argument("inputs", metavar="INPUT...", nargs=-1)
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Corpus folder to write (gaze/<video>/<viewer>.csv, corpus.yaml, import_report.json).")
@click.option("--config", "-c", "config", type=click.Path(exists=True, dir_okay=False),
              help="YAML import config (or a params.yaml with an import: group); options here override it.")
@click.option("--videos", type=click.Path(exists=True, file_okay=False),
              help="Folder of the stimulus videos: sizes, durations, copied into the corpus.")
@click.option("--sync-start", help="Regex for the message that starts a video; (?P<video>...) captures its id.")
@click.option("--sync-end", help="Regex for the message that ends it (optional).")
@click.option("--sync-table", type=click.Path(exists=True, dir_okay=False),
              help="CSV with recording,video_id,t0[,t1] instead of messages.")
@click.option("--video-id", help="Video id when the start message names none, or for --whole-recording.")
@click.option("--whole-recording", is_flag=True, help="Each recording is one video (--video-id) from its first sample.")
@click.option("--display", help="Display size in pixels, WxH (default: from the file).")
@click.option("--video-size", help="Video size in pixels, WxH (default: probed from --videos).")
@click.option("--rect", help="Where the video was drawn: fit, fill, stretch, native, media, or x,y,w,h in display px.")
@click.option("--screen-cm", help="Physical screen size in cm, WxH (for degrees of visual angle).")
@click.option("--distance-cm", type=float, help="Viewing distance in cm (for degrees of visual angle).")
@click.option("--eye", type=click.Choice(["mean", "left", "right"]),
              help="Binocular data: mean of valid eyes (default) or one eye.")
@click.option("--on-error", type=click.Choice(["skip", "raise"]), help="Skip a bad file and go on (default) or stop.")
@click.option("--verbose", "-v", is_flag=True, help="Log what was loaded and skipped.")
def import_cmd(fmt, inputs, out_dir, config, videos, sync_start, sync_end, sync_table, video_id, whole_recording,
               display, video_size, rect, screen_cm, distance_cm, eye, on_error, verbose) -> None:
    """Convert vendor eye-tracking recordings into a gazelib corpus.

    FORMAT is one of eyelink (ASC), tobii (Pro Lab TSV), pupil_core (gaze_positions.csv),
    neon (gaze.csv), smi (BeGaze text), csv (any table, with reader.columns in --config), or a
    public data set: diem (DIEM event_data files; videos and soundtracks muxed from its folders),
    gazecom (GazeCom .coord) or fixmap (per-frame fixMap_*.mat of the audio-visual saliency sets);
    see docs/datasets.md.
    INPUT are files, folders or globs. Each recording is cut into one file per video at the
    sync messages, and gaze is mapped from the display to the video frame (letterbox bars and
    off-screen gaze fall outside [0, 1]).
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    cfg: dict = load_config(config) if config else {"base_dir": "."}
    if fmt:
        cfg["format"] = fmt
    if inputs:
        cfg["inputs"] = [str(Path(p).absolute()) for p in inputs]
    sync = dict(cfg.get("sync") or {})
    geo = dict(cfg.get("geometry") or {})
    if sync_table:
        sync.update(method="table", table=str(Path(sync_table).absolute()))
    if sync_start:
        sync.update(method="message", start=sync_start)
    if sync_end:
        sync["end"] = sync_end
    if whole_recording:
        sync["method"] = "recording"
    if video_id:
        sync["video_id"] = video_id
    for key, val in (("display_px", _pair(display, "--display", int)),
                     ("video_px", _pair(video_size, "--video-size", int)), ("rect", _rect(rect)),
                     ("screen_cm", _pair(screen_cm, "--screen-cm")), ("distance_cm", distance_cm)):
        if val is not None:
            geo[key] = val
    cfg["sync"], cfg["geometry"] = sync, geo
    if videos:
        cfg["videos"] = str(Path(videos).absolute())
    if eye:
        cfg["eye"] = eye
    if on_error:
        cfg["on_error"] = on_error
    cfg.pop("out", None)
    try:
        summary = run_import(cfg=cfg, out_dir=Path(out_dir))
    except ImportFormatError as exc:
        raise click.ClickException(str(exc)) from exc
    for s in summary["skipped"]:
        click.echo(f"skipped {s['file']}: {s['error']}", err=True)
    click.echo(f"{summary['recordings']} recordings -> {summary['files']} gaze files for "
               f"{summary['n_videos']} videos in {out_dir} ({summary['samples']} samples, "
               f"{100 * summary['share_missing']:.1f}% missing, {100 * summary['share_out_of_frame']:.1f}% "
               "out of frame)")
    if summary["files"] == 0:
        raise click.ClickException("no gaze file was written (see the messages above; -v for details)")
