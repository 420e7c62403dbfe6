"""``gazelib predict`` on the command line (registered in gazelib/cli.py); the work is
:func:`gazelib.serve.predict.predict_videos`."""
from __future__ import annotations

import click

from gazelib.model.bundle import BundleError
from gazelib.serve.inputs import PredictError
from gazelib.serve.predict import OVERLAY_CRF, OVERLAY_PRESET, predict_videos
from gazelib.viz.overlay import X264_PRESETS

EPILOG = """\b
Examples:
  # a model without gaze track, on one video and on a folder of videos
  gazelib predict clip.mp4 more_videos/ --model models/content_only --out predictions/

\b
  # a model that forecasts along a viewer's recording (track in its modalities)
  gazelib predict clip.mp4 --model models/multimodal --gaze viewer01.csv --out predictions/

\b
  # the exported ONNX model under onnxruntime
  gazelib export models/content_only --onnx content_only.onnx
  gazelib predict clip.mp4 --model models/content_only --runtime onnx --onnx content_only.onnx --out pred/

\b
Outputs per video in OUT/<video>/: predictions.parquet + .csv (t, x, y, p_in, entropy_bits,
top1..5 cells), heatmaps.npz (float16 maps), overlay.mp4 (with the video's audio); OUT/summary.json
lists every video and what failed. See docs/predict.md.
"""


@click.command("predict", epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"],
                                                           "max_content_width": 100})
@click.argument("inputs", metavar="VIDEO_OR_FOLDER...", nargs=-1, required=True)
@click.option("--model", "-m", "model_dir", required=True, type=click.Path(file_okay=False),
              help="A trained model folder (models/<variant>: seed checkpoints, bundle.json, norm_stats.json).")
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder (one sub-folder per video; caches under _features/ and _cache/).")
@click.option("--seed", type=int, default=None, help="Which training seed's checkpoint to use (default: the first).")
@click.option("--runtime", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="Run the model with PyTorch or with ONNX Runtime.")
@click.option("--onnx", "onnx_path", type=click.Path(dir_okay=False, exists=True),
              help="With --runtime onnx: the file `gazelib export` wrote (default: export once into OUT/_features/onnx).")
@click.option("--gaze", type=click.Path(exists=True),
              help="Recorded gaze (CSV t,x,y[,valid]) for models with 'track'; a folder of <video name>.csv for several videos.")
@click.option("--gaze-coords", type=click.Choice(["normalized", "pixels"]), default="normalized", show_default=True,
              help="Units of the --gaze x, y columns.")
@click.option("--gaze-time-unit", type=click.Choice(["s", "ms", "us"]), default="s", show_default=True,
              help="Unit of the --gaze t column (time from the video start).")
@click.option("--params", "params_file", type=click.Path(dir_okay=False, exists=True),
              help="Extract with this params.yaml instead of the model's own feature params (refused if they differ).")
@click.option("--no-overlay", is_flag=True, help="Skip the overlay video (the slowest output).")
@click.option("--overlay-preset", type=click.Choice(X264_PRESETS), default=OVERLAY_PRESET, show_default=True,
              help="x264 preset of the overlay video (slower presets: smaller files, same look).")
@click.option("--overlay-crf", type=click.IntRange(0, 51), default=OVERLAY_CRF, show_default=True,
              help="x264 constant rate factor of the overlay video (lower: better quality, larger files).")
@click.option("--threads", type=int, default=2, show_default=True, help="CPU threads for the model and the speech recogniser.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars, warnings only.")
def predict_cmd(inputs, model_dir, out_dir, seed, runtime, onnx_path, gaze, gaze_coords, gaze_time_unit, params_file,
                no_overlay, overlay_preset, overlay_crf, threads, quiet) -> None:
    """Predict where people look in VIDEO_OR_FOLDER... with a trained model.

    Runs the pipeline's extractors (audio, speech recognition, visual) with the feature params the
    model was trained with, aligns, and runs the model over the whole video. A video that cannot be
    read is named with its problem; the others complete and the exit code is 1.
    """
    from gazelib.core.params import setup_logging

    setup_logging("WARNING" if quiet else "INFO")
    try:
        res = predict_videos(inputs=list(inputs), model_dir=model_dir, out_dir=out_dir, seed=seed, runtime=runtime,
                             onnx_path=onnx_path, gaze=gaze, gaze_coords=gaze_coords, gaze_time_unit=gaze_time_unit,
                             params_file=params_file, overlay=not no_overlay, overlay_preset=overlay_preset,
                             overlay_crf=overlay_crf,
                             threads=threads, progress=not quiet)
    except (PredictError, BundleError) as exc:
        raise click.UsageError(str(exc)) from exc
    n_ok = len(res.videos) - len(res.failed)
    click.echo(f"{n_ok} of {len(res.videos)} videos predicted with {res.variant} seed {res.seed} ({res.runtime}) "
               f"into {res.out_dir}; {res.media_s:.1f} s of video in {res.wall_s:.1f} s "
               f"({res.media_s / max(res.wall_s, 1e-9):.2f}x real time)")
    if res.synthetic:
        click.echo(f"WARNING: this model was trained on synthetic data, not on real viewers: {res.synthetic}",
                   err=True)
    for vid, rec in res.videos.items():
        if rec["status"] == "ok":
            click.echo(f"  ok      {vid}: {res.out_dir / vid}" + (" (reused)" if "model" in rec["reused"] else ""))
    if res.failed:
        click.echo(f"{len(res.failed)} failed:", err=True)
        for vid, why in res.failed.items():
            click.echo(f"  FAILED  {vid} ({res.videos[vid]['source']}): {why}", err=True)
        raise SystemExit(1)
