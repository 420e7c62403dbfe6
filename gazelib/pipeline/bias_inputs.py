"""Content-free inputs of the bias diagnostic, built through the real extractors (stage
``bias_inputs``; what they are and why: :mod:`gazelib.model.bias`)."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from gazelib.core.layout import BIAS_INPUTS, bias_level_name
from gazelib.core.io import write_json, write_npz

log = logging.getLogger(__name__)


def content_free_clip(*, path: Path, level: float, params: dict) -> dict:
    """Write a uniform-grey clip with silent audio (``train.window_s`` long, at the visual sampling
    rate and work size); returns the manifest-like item the extractors take."""
    from gazelib.core.media import write_mp4

    if not 0.0 <= level <= 1.0:
        raise ValueError(f"evaluate.bias_grey_levels: {level} is not a grey level in [0, 1]")
    v, a = params["visual"], params["audio"]
    duration = float(params["train"]["window_s"])
    fps = float(v["sample_fps"])
    w, h = int(v["work_width"]), int(v["work_height"])
    n = int(round(duration * fps))
    frame = np.full((h, w, 3), int(round(255 * level)), np.uint8)
    write_mp4(path=path, frames=(frame for _ in range(n)), width=w, height=h, fps=fps,
              audio=np.zeros(int(duration * a["sample_rate"]), np.float32), sample_rate=a["sample_rate"])
    return {"video_id": path.stem, "video_path": str(path), "subtitle_path": "", "has_audio": True,
            "duration_s": n / fps}


def build_content_free(*, params: dict, level: float, work: Path, models: dict) -> dict[str, np.ndarray]:
    """Aligned arrays (as in ``data/aligned/<id>.npz``) of one content-free clip, through the one
    featurize path (:func:`gazelib.pipeline.featurize.featurize_video`): no transcript source at all
    (text written as unavailable, exactly as for a video without one) and no gaze."""
    from gazelib.features import lookahead_of
    from gazelib.pipeline.featurize import featurize_video

    vid = bias_level_name(level)
    item = content_free_clip(path=work / f"{vid}.mp4", level=level, params=params)
    return featurize_video(item=item, params=params, models={**models, "asr": None}, work=work / "features",
                           lookahead=lookahead_of(params), text_sources=[], detector_name="content-free")


def run_bias_inputs(*, params: dict, root: Path = Path(".")) -> dict:
    """DVC stage ``bias_inputs``: one aligned NPZ per grey level in ``data/bias_inputs``."""
    from gazelib.features.audio import make_audio_models
    from gazelib.features.text import LazyTextEmbedder
    from gazelib.features.visual import make_image_encoder

    levels = [float(x) for x in params["evaluate"]["bias_grey_levels"]]
    if not levels:
        raise ValueError("evaluate.bias_grey_levels is empty: the bias diagnostic needs at least one grey level")
    out = root / BIAS_INPUTS
    models = {"image": make_image_encoder(params["visual"]), "audio": make_audio_models(params["audio"]),
              # no words in a content-free clip: the embedder's network never loads
              "text": LazyTextEmbedder(model=params["text"]["embedder"], threads=params["text"]["embed_threads"],
                                       batch_size=params["text"]["embed_batch"])}
    for old in out.glob("*.npz") if out.exists() else []:
        old.unlink()
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        for level in levels:
            arrays = build_content_free(params=params, level=level, work=Path(tmp), models=models)
            path = out / f"{bias_level_name(level)}.npz"
            write_npz(path, **arrays)
            written.append(path.name)
            log.info("bias inputs: %s (%d steps; modalities available: %s)", path, arrays["t"].size,
                     dict(zip(("audio", "text", "visual", "track"), arrays["mask"].any(0).tolist())))
    write_json(out / "levels.json", {"levels": levels, "files": written})
    return {"files": written}
