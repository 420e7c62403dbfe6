"""Names and shape of the visual grid channels, known from the visual params alone (align and
the extractor share them without align depending on the extractor)."""
from __future__ import annotations

GRID_CHANNELS = ["lab_l", "lab_a", "lab_b", "motion", "saliency", "edges", "face", "mouth_motion"]


def cnn_grid_channels(cfg: dict) -> int:
    """Grid channels the pretrained encoder adds (known without loading it)."""
    if cfg["image_model"] != "efficientnet-lite0":
        return 0
    from gazelib.features.image_models import LITE0_STAGES

    outs = [c for _, _, _, c, n in LITE0_STAGES for _ in range(n)]
    return outs[cfg["cnn_grid_block"]]


def grid_channel_names(cfg: dict) -> list[str]:
    return list(GRID_CHANNELS) + [f"cnn_{k}" for k in range(cnn_grid_channels(cfg))]


def grid_shape(cfg: dict) -> tuple[int, int, int]:
    """(channels, Gh, Gw) of the grid the visual params give."""
    return (len(grid_channel_names(cfg)), cfg["grid_h"], cfg["grid_w"])
