"""A model folder that travels: ``models/<variant>/`` holds everything ``gazelib predict`` needs.

::

    models/<variant>/
      bundle.json        format tag, gazelib version, variant, modalities, seeds, and the feature
                         params the model was trained with (the audio, text, visual and align
                         sections of params.yaml, plus ingest for reading a viewer's gaze CSV)
      norm_stats.json    the normalisation statistics (train split) its inputs were scaled with
      seed<k>/best.pt    weights; the model config, window, horizon and norm-stats hash are in
                         the checkpoint's metadata

Copy the folder anywhere and ``gazelib predict --model <folder>`` works from there: nothing in it
points back at the repo. :func:`write_bundle` is called at the end of the ``train`` stage;
:func:`load_bundle` checks the folder is whole and consistent (the norm stats are the ones the
checkpoints were trained with) and names what is missing or differs.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from gazelib.core.io import write_json
from gazelib.core.normalize import stats_hash
# which params sections a model's features depend on, and the speed-only keys among them (they may
# differ at prediction time)
from gazelib.core.params import FEATURE_SECTIONS, RUNTIME_KEYS, default

log = logging.getLogger(__name__)

BUNDLE_FILE = "bundle.json"
STATS_FILE = "norm_stats.json"
BUNDLE_TYPE = "gazelib.model_bundle"
FORMAT_VERSION = 1


class BundleError(ValueError):
    """A model folder that cannot be used for prediction; the message names the folder and the problem."""


@dataclass
class Bundle:
    """A loaded model folder."""

    model_dir: Path
    variant: str
    modalities: list[str]
    seeds: list[int]
    feature_params: dict          # section -> params (audio, text, visual, align)
    ingest_params: dict
    stats: dict
    stats_hash: str
    gazelib_version: str
    grid: tuple[int, int, int]    # (channels, Gh, Gw) of the visual grid the model reads
    meta: dict = field(default_factory=dict)

    @property
    def synthetic(self) -> str | None:
        """What made the training data when it was not real viewers (the demo), else None."""
        return self.meta.get("synthetic_training_data")

    @property
    def needs_track(self) -> bool:
        """True when the model reads a viewer's own gaze history (``track`` in its modalities)."""
        return "track" in self.modalities

    def checkpoint(self, seed: int | None = None) -> Path:
        """``seed<k>/best.pt`` of ``seed`` (default: the first seed of the bundle)."""
        seed = self.seeds[0] if seed is None else int(seed)
        if seed not in self.seeds:
            raise BundleError(f"{self.model_dir}: no seed {seed}; this model has seeds {self.seeds}")
        path = self.model_dir / f"seed{seed}" / "best.pt"
        if not path.exists():
            raise BundleError(f"{self.model_dir}: checkpoint {path.relative_to(self.model_dir)} of seed {seed} "
                              "is missing (copy the whole model folder)")
        return path


def write_bundle(*, out_dir: str | Path, params: dict, stats: dict, variant: str, modalities: list[str],
                 synthetic: str | None = None, record: dict | None = None) -> dict:
    """Write ``bundle.json`` and ``norm_stats.json`` into ``out_dir`` (the variant's model folder).

    ``synthetic``: the training corpus's ``synthetic:`` sentence (the demo's), recorded so that every
    use of the model can say it was not trained on real viewers.
    ``record``: the feature params as the stages recorded them with the data
    (``data/aligned/feature_params.json``: ``{"feature_params": {...}, "ingest_params": {...}}``), what
    the train stage passes so that it need not depend on the feature params itself; without it they
    are taken from ``params``.
    Returns ``{"bundle": path, "norm_stats": path, "seeds": [...], "norm_stats_hash": str}``.
    """
    from gazelib import __version__

    out_dir = Path(out_dir)
    if record is None:
        record = {"feature_params": {s: params[s] for s in FEATURE_SECTIONS if s in params},
                  "ingest_params": params["ingest"]}
    missing = [s for s in FEATURE_SECTIONS if s not in record["feature_params"]]
    if missing:
        raise BundleError(f"{out_dir}: params have no section {missing}; cannot record the feature params")
    seeds = [int(s) for s in params["train"]["seeds"]]
    h = stats_hash(stats)
    doc = {"type": BUNDLE_TYPE, "format_version": FORMAT_VERSION, "gazelib_version": __version__,
           "variant": variant, "modalities": list(modalities), "seeds": seeds,
           "feature_params": {s: record["feature_params"][s] for s in FEATURE_SECTIONS},
           "ingest_params": record["ingest_params"],
           "grid": [len(stats["grid"]["mean"]), int(record["feature_params"]["visual"]["grid_h"]),
                    int(record["feature_params"]["visual"]["grid_w"])],
           "norm_stats": STATS_FILE, "norm_stats_hash": h, "synthetic_training_data": synthetic}
    write_json(out_dir / STATS_FILE, stats)
    write_json(out_dir / BUNDLE_FILE, doc)
    log.info("%s: wrote the model bundle (seeds %s, norm stats %s)", out_dir, seeds, h)
    return {"bundle": out_dir / BUNDLE_FILE, "norm_stats": out_dir / STATS_FILE, "seeds": seeds,
            "norm_stats_hash": h}


def load_bundle(model_dir: str | Path) -> Bundle:
    """Read and check a model folder; raises :class:`BundleError` naming the folder and the problem."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise BundleError(f"{model_dir}: model folder not found")
    path = model_dir / BUNDLE_FILE
    if not path.exists():
        raise BundleError(f"{model_dir}: no {BUNDLE_FILE} (a model folder from before model bundles, or not a "
                          "model folder); rerun the train stage (`dvc repro train@<variant>`) to write it")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("type") != BUNDLE_TYPE:
        raise BundleError(f"{path}: not a {BUNDLE_TYPE} file")
    if doc.get("format_version", 0) > FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format {doc['format_version']} is newer than this gazelib reads "
                          f"({FORMAT_VERSION}); upgrade gazelib")
    missing = [k for k in ("variant", "modalities", "seeds", "feature_params", "grid", "norm_stats_hash")
               if k not in doc]
    # "features" (lookahead) is younger than bundles: without it the model saw look-ahead features
    missing += [f"feature_params.{s}" for s in FEATURE_SECTIONS
                if s not in doc.get("feature_params", {}) and s != "features"]
    if missing:
        raise BundleError(f"{path}: missing {missing}")
    stats_path = model_dir / doc.get("norm_stats", STATS_FILE)
    if not stats_path.exists():
        raise BundleError(f"{model_dir}: norm stats {stats_path.name} missing (copy the whole model folder)")
    stats = json.loads(stats_path.read_text())
    h = stats_hash(stats)
    if h != doc["norm_stats_hash"]:
        raise BundleError(f"{stats_path}: norm stats hash {h} differs from the {doc['norm_stats_hash']} "
                          f"recorded in {BUNDLE_FILE}: the file was changed or comes from another run")
    check_version(model_dir=model_dir, trained=doc.get("gazelib_version"))
    if doc.get("synthetic_training_data"):
        log.warning("%s: TRAINED ON SYNTHETIC DATA, not on real viewers: %s", model_dir, doc["synthetic_training_data"])
    # A key the bundle lacks takes its schema default, so the extractors index every key: the stages
    # record no speed-only key (gazelib.core.params.feature_record), and a key younger than the bundle
    # ran at that default before it was a key. A missing "features" section stays missing: those
    # models saw look-ahead features (gazelib.features.lookahead_of).
    feature_params = {s: {**default(s), **v} for s, v in doc["feature_params"].items()}
    return Bundle(model_dir=model_dir, variant=doc["variant"], modalities=list(doc["modalities"]),
                  seeds=[int(s) for s in doc["seeds"]], feature_params=feature_params,
                  ingest_params={**default("ingest"), **doc.get("ingest_params", {})}, stats=stats, stats_hash=h,
                  gazelib_version=doc.get("gazelib_version", ""), grid=tuple(int(x) for x in doc["grid"]), meta=doc)  # type: ignore[arg-type]  # 3 ints


def check_version(*, model_dir: Path, trained: str | None) -> str:
    """Compare the gazelib release that trained a bundle with the running one (the version changes
    with every release: CHANGELOG.md); logs a warning when they differ and returns the verdict
    (``same``, ``older``, ``newer``, ``unknown``)."""
    from packaging.version import InvalidVersion, Version

    from gazelib import __version__

    try:
        then, now = Version(str(trained)), Version(__version__)
    except InvalidVersion:
        log.warning("%s: bundle records no readable gazelib version (%r); running %s: features may differ "
                    "from the ones it was trained on", model_dir, trained, __version__)
        return "unknown"
    if then == now:
        return "same"
    if then > now:
        log.warning("%s: trained with gazelib %s, newer than this %s: upgrade gazelib (its extractors may "
                    "compute features this version does not)", model_dir, then, now)
        return "newer"
    log.warning("%s: trained with gazelib %s, predicting with %s: features may differ where an extractor "
                "changed between them (CHANGELOG.md)", model_dir, then, now)
    return "older"


def feature_param_diff(*, model: dict, wanted: dict, sections: tuple[str, ...] = FEATURE_SECTIONS,
                       ignore_runtime: bool = True) -> list[str]:
    """Keys (``section.key``) whose value differs between the model's feature params and ``wanted``,
    as readable lines ``"visual.sample_fps: model 10, here 5"``; speed-only keys are ignored."""
    out = []
    for s in sections:
        a, b = model.get(s, {}), wanted.get(s, {})
        skip = RUNTIME_KEYS.get(s, set()) if ignore_runtime else set()
        for k in sorted(set(a) | set(b)):
            if k in skip:
                continue
            if k not in b:
                out.append(f"{s}.{k}: model {a[k]!r}, here missing")
            elif k not in a:
                out.append(f"{s}.{k}: model missing, here {b[k]!r}")
            elif a[k] != b[k]:
                out.append(f"{s}.{k}: model {a[k]!r}, here {b[k]!r}")
    return out
