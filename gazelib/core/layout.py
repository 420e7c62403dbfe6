"""Where the pipeline's artifacts live and the small helpers every stage shares (manifest,
splits, aligned index). Paths are relative to the repo root passed to each stage as ``root``."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from gazelib.core.io import read_npz, read_table

# a corpus id (video, viewer, AOI name): a letter or digit, then letters, digits, '.', '_', '-'
# (safe as a file name on every system); ingest, the importers and user AOI files check it
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

RAW_DEMO = Path("data/raw/demo")
INTERIM = Path("data/interim")
FEATURES = Path("data/features")
ALIGNED = Path("data/aligned")
ALIGNED_FEATURE_PARAMS = ALIGNED / "feature_params.json"   # the params the aligned data was made with
AOI = Path("data/aoi")   # stage aoi: <video_id>.parquet (AOI keyframes) and its per-video parts
FLOORS = Path("models/floors/floors.json")
FLOOR_SCORES = Path("reports/eval/floors")   # stage score_floors: the floors' rows, scored once for every variant
BIAS_INPUTS = Path("data/bias_inputs")   # stage bias_inputs: content-free clips, one per grey level
SPLITS = ("train", "val", "test")
RESERVED_ROWS = ("floors", "centre_prior", "persistence", "inter_observer")  # not usable as variant names
LABEL_KEYS = ("t", "gaze", "inout", "valid", "gaze_t")
TIMING = Path("reports/timing")   # wall-clock figures: outside every DVC-tracked folder (never reproducible)


def bias_level_name(level: float) -> str:
    """File stem of the content-free inputs at one grey level (``grey_0.50``)."""
    return f"grey_{level:.2f}"


def load_manifest(root: Path) -> pd.DataFrame:
    """The manifest with media paths resolved against the corpus root it records (relative to
    ``root`` unless the params gave an absolute corpus)."""
    path = root / INTERIM / "manifest.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the ingest stage first")
    manifest, meta = read_table(path)
    corpus = Path(meta["corpus"])
    corpus = corpus if corpus.is_absolute() else root / corpus
    for col in ("video_path", "subtitle_path"):
        manifest[col] = [str(corpus / p) if p else "" for p in manifest[col]]
    return manifest


def check_splits(*, videos: pd.DataFrame, where: str, required: tuple[str, ...] = SPLITS) -> None:
    """Fail before any training when a ``required`` split has no video (with ``viewers`` > 0 where known)."""
    usable = videos[videos["viewers"] > 0] if "viewers" in videos else videos
    empty = [s for s in required if not (usable["split"] == s).any()]
    if empty:
        counts = {s: int((usable["split"] == s).sum()) for s in SPLITS}
        raise ValueError(f"{where}: split {empty} has no video with gaze ({counts}); add videos or set "
                         f"splits in corpus.yaml / ingest.split_ratios so every split has at least one")


def corpus_geometry(root: Path) -> dict:
    """The corpus.yaml ``geometry:`` block ingest recorded (display, screen size, distance; may be empty)."""
    return read_table(root / INTERIM / "manifest.parquet")[1].get("geometry") or {}


def corpus_synthetic(root: Path) -> str | None:
    """corpus.yaml's ``synthetic:`` sentence ingest recorded (the demo's: simulated viewers), or None."""
    return read_table(root / INTERIM / "manifest.parquet")[1].get("synthetic")


def manifest_items(manifest: pd.DataFrame) -> list[dict]:
    return manifest.to_dict("records")


def read_index(root: Path) -> tuple[pd.DataFrame, dict]:
    """The aligned index (one row per video) and its metadata (fps, grid shape [C, Gh, Gw])."""
    path = root / ALIGNED / "index.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the align stage first")
    return read_table(path)


def read_norm_stats(root: Path) -> dict:
    import json

    return json.loads((root / ALIGNED / "norm_stats.json").read_text())


def index_grid(meta: dict) -> tuple[int, int, int]:
    """(channels, Gh, Gw) of the aligned grid, as align wrote it."""
    c, gh, gw = meta["grid"]
    return int(c), int(gh), int(gw)



# What dvc.yaml declares as metrics holds the numbers a reader compares across experiments (the
# answer, each row's primary metrics, health); everything else the stages measure goes to DETAILS,
# which the report and the tests read (docs/metrics.md states the rule).
ANSWER = Path("metrics/answer.json")           # attribution: what sound and speech add, with intervals
ROWS = Path("metrics/rows.json")               # compare: each row's primary metrics, each variant vs the baseline
DETAILS = Path("reports/metrics")
COMPARE = DETAILS / "compare.json"
ATTRIBUTION = DETAILS / "attribution.json"
VALIDATION = DETAILS / "validation.json"        # validate's checks (and the videos it excluded)
AOI_METRICS = DETAILS / "aoi.json"              # areas of interest: measures, tracks, the demo truth check
ASR = DETAILS / "asr.json"                      # speech recognition vs the subtitles (WER, timing)


CURVES = Path("reports/curves")    # data of the curves dvc.yaml declares as plots (train/, calibration/)


def eval_metrics(variant: str) -> Path:
    """evaluate@<variant>'s full metrics (every row, per seed, calibration, bias, controls)."""
    return DETAILS / "eval" / f"{variant}.json"


def train_metrics(variant: str) -> Path:
    """train@<variant>'s summary (per seed: best validation loss, epochs run)."""
    return DETAILS / "train" / f"{variant}.json"


def excluded_videos(root: Path) -> set[str]:
    """Videos validate left out (hard failures, skip-and-report); none before validate has run."""
    import json

    path = root / VALIDATION
    return set(json.loads(path.read_text()).get("excluded", {})) if path.exists() else set()


def split_files(root: Path, index: pd.DataFrame, split: str) -> list[Path]:
    """Aligned files of one split's videos with gaze, less those validate excluded."""
    vids = index.loc[(index["split"] == split) & (index["viewers"] > 0), "video_id"]
    skip = excluded_videos(root)
    return [root / ALIGNED / f"{v}.npz" for v in sorted(vids) if v not in skip]


def index_maps(index: pd.DataFrame) -> dict:
    return {"length": dict(zip(index["video_id"], index["length"])),
            "viewers": dict(zip(index["video_id"], index["viewers"]))}


def read_labels(files: list[Path]) -> dict[str, dict]:
    """Only the gaze label arrays of aligned videos (not their features)."""
    return {f.stem: read_npz(f, keys=LABEL_KEYS) for f in files}
