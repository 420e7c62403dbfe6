"""One featurize path: a video (and, optionally, gaze) and the params in, aligned arrays out.

The steps are the same functions everywhere:

    audio   gazelib.features.audio.audio_video          (extract + write <work>/audio/<id>.*)
    text    gazelib.features.text.extract_text_video    (transcript + embeddings, <work>/text/<id>.*)
    visual  gazelib.features.visual.visual_video        (extract + write <work>/visual/<id>.*)
    align   gazelib.data.align.align_video              (every modality and the gaze on t_k = k / fps)

:func:`featurize_video` runs them for one video (the bias inputs). The DVC stages run each step over
the corpus, one stage per modality so that each caches and reruns alone (extract_audio,
extract_text, extract_visual, align). ``gazelib predict`` runs each step over its videos with a
cache per step (gazelib.serve.extract). The steps, and so the features, are one code path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def featurize_video(*, item: dict, params: dict, models: dict, work: Path, gaze: pd.DataFrame | None = None,
                    lookahead: str, text_sources: list[str] | None = None,
                    detector_name: str | None = None) -> dict[str, np.ndarray]:
    """Aligned arrays (as in ``data/aligned/<id>.npz``) of one video.

    ``item``: video_id, video_path, duration_s, subtitle_path, has_audio (a manifest row's fields);
    ``models``: ``audio`` (:func:`gazelib.features.audio.make_audio_models`), ``text`` (an embedder),
    ``asr`` (a callable giving the recogniser, called only when a video needs it; None: no ASR), ``detector`` (None: built from the
    visual params) and ``image`` (the image encoder); ``work``: where the feature files are written
    (``<work>/<modality>/``); ``gaze``: the viewers' samples (viewer_id, t, x, y, valid), None for
    none; ``text_sources``: override of ``text.sources`` (e.g. ``[]``: no transcript at all)."""
    from gazelib.data.align import align_video
    from gazelib.features.audio import audio_video
    from gazelib.features.grid import grid_shape
    from gazelib.features.text import extract_text_video
    from gazelib.features.visual import visual_video

    vcfg, acfg = params["visual"], params["audio"]
    visual_video(item=item, cfg=vcfg, detector=models.get("detector"), encoder=models["image"],
                 out_dir=work / "visual", lookahead=lookahead, detector_name=detector_name)
    audio_video(item=item, cfg=acfg, models=models["audio"], out_dir=work / "audio", lookahead=lookahead)
    # the text extractor reads features.lookahead from its cfg (gazelib.features.text.text_config)
    tcfg = {**params["text"], "lookahead": lookahead, **({} if text_sources is None else {"sources": list(text_sources)})}
    extract_text_video(item=item, cfg=tcfg, out_dir=work / "text", embedder=models["text"], asr=models.get("asr"))
    if gaze is None:
        gaze = pd.DataFrame({"t": [0.0, item["duration_s"]], "x": [np.nan] * 2, "y": [np.nan] * 2,
                             "valid": [0, 0], "viewer_id": ["none"] * 2})
    return align_video(video_id=item["video_id"], duration_s=item["duration_s"], feat_dir=work, gaze=gaze,
                       cfg=params["align"], grid_shape=grid_shape(vcfg), lookahead=lookahead)
