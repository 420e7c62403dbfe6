"""Per-video feature extractors (audio, text, visual) writing typed Parquet/NPZ artifacts."""
from __future__ import annotations

from typing import get_args

import numpy as np

from gazelib.core.params_schema import FeaturesCfg

# features.lookahead: what media a feature at step t may see (docs/causality.md).
# none: media up to t only (viewer-causal, the default); offline: the pre-causal features, which
# look ahead (centred windows, interpolation toward later samples), for non-causal saliency analysis.
LOOKAHEAD_MODES = get_args(FeaturesCfg.model_fields["lookahead"].annotation)   # ("none", "offline")


def check_lookahead(mode: str, *, where: str = "features.lookahead") -> str:
    """``mode`` if it is one of :data:`LOOKAHEAD_MODES`, else a ValueError naming ``where``."""
    if mode not in LOOKAHEAD_MODES:
        raise ValueError(f"{where} is {mode!r}; expected one of {', '.join(LOOKAHEAD_MODES)}")
    return mode


def last_at_or_before(src_t: np.ndarray, dst_t: np.ndarray) -> np.ndarray:
    """Index of the last ``src_t`` (sorted) at or before each ``dst_t`` (1e-9 s slack), -1 where none:
    the sample a viewer-causal feature holds at ``dst_t``."""
    return np.searchsorted(np.asarray(src_t, np.float64), np.asarray(dst_t, np.float64) + 1e-9, side="right") - 1


def lookahead_of(params: dict, *, default: str | None = None) -> str:
    """The validated ``features.lookahead`` of a params dict. Params without it (a model bundle made
    before it existed, whose features looked ahead: pass ``default="offline"``) give ``default``, or
    a ValueError when none is given."""
    mode = (params.get("features") or {}).get("lookahead", default)
    if mode is None:
        raise ValueError("params have no features.lookahead (none | offline); add it to params.yaml")
    return check_lookahead(mode)
