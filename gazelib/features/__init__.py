"""Per-video feature extractors (audio, text, visual) writing typed Parquet/NPZ artifacts."""
from __future__ import annotations

# features.lookahead: what media a feature at step t may see (docs/causality.md).
# none: media up to t only (viewer-causal, the default); offline: the pre-causal features, which
# look ahead (centred windows, interpolation toward later samples), for non-causal saliency analysis.
LOOKAHEAD_MODES = ("none", "offline")


def check_lookahead(mode: str, *, where: str = "features.lookahead") -> str:
    """``mode`` if it is one of :data:`LOOKAHEAD_MODES`, else a ValueError naming ``where``."""
    if mode not in LOOKAHEAD_MODES:
        raise ValueError(f"{where} is {mode!r}; expected one of {', '.join(LOOKAHEAD_MODES)}")
    return mode


def lookahead_of(params: dict, *, default: str | None = None) -> str:
    """The validated ``features.lookahead`` of a params dict. Params without it (a model bundle made
    before it existed, whose features looked ahead: pass ``default="offline"``) give ``default``, or
    a ValueError when none is given."""
    mode = (params.get("features") or {}).get("lookahead", default)
    if mode is None:
        raise ValueError("params have no features.lookahead (none | offline); add it to params.yaml")
    return check_lookahead(mode)
