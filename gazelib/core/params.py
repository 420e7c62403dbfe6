"""params.yaml loading and validation, and logging set-up shared by the stage scripts.

:func:`load_params` validates the file against :mod:`gazelib.core.params_schema` (types, ranges,
choices, unknown keys) and then the rules that join keys (:func:`validate_params`), and fills a key
the file lacks with its schema default. Every error names the file, the key path and the value; an
unknown key also names the closest known one. ``gazelib params check`` runs the same validation.
"""
from __future__ import annotations

import atexit
import difflib
import logging
import math
import re
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from gazelib.core.params_schema import Params

log = logging.getLogger(__name__)


class ParamsError(ValueError):
    """params.yaml is not valid; the message lists every problem, one per line."""


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"params file {path} not found (run from the repo root)")
    raw = yaml.safe_load(path.read_text())
    return validate_params(raw, where=str(path))


# warnings of one kind printed in full before the rest are only counted (RepeatedWarnings)
WARNINGS_SHOWN = 3


class RepeatedWarnings(logging.Filter):
    """Prints the first ``shown`` warnings of each kind and counts the others; :meth:`summary` then
    logs one line per kind with how many were held back and the last of them. A kind is a logger and
    its message template (before the ``%`` arguments; a worker process's records keep theirs in
    ``template``), so a corpus of hundreds of videos without sound, or the calibration's fits per
    recording, print a few examples and a count, not a line each. Other levels always pass."""

    def __init__(self, shown: int = WARNINGS_SHOWN):
        super().__init__()
        self.shown = shown
        self.counts: dict[tuple[str, str], int] = {}
        self.last: dict[tuple[str, str], str] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or getattr(record, "summary", False):
            return True
        key = (record.name, str(getattr(record, "template", record.msg)))
        n = self.counts[key] = self.counts.get(key, 0) + 1
        if n <= self.shown:
            return True
        self.last[key] = record.getMessage()
        return False

    def summary(self) -> list[str]:
        """One line per kind of warning that was held back (and forgets them)."""
        lines = [f"{self.counts[key] - self.shown} more warnings like the {self.shown} above were not printed "
                 f"({key[0]}); the last: {msg}" for key, msg in self.last.items()]
        self.counts, self.last = {}, {}
        return lines


def setup_logging(level: str = "INFO") -> None:
    """The stage scripts' logging: time, level, logger and message on stderr, repeated warnings
    summarised (:class:`RepeatedWarnings`; the summary is logged when the process exits)."""
    root = logging.getLogger()
    before = list(root.handlers)   # a host's own handlers (pytest's, an application's) are left as they are
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for handler in root.handlers:
        if handler not in before:
            repeated = RepeatedWarnings()
            handler.addFilter(repeated)
            atexit.register(log_summary, repeated)


def log_summary(repeated: RepeatedWarnings) -> None:
    """Log the warnings ``repeated`` held back, one line per kind."""
    for line in repeated.summary():
        log.warning(line, extra={"summary": True})


# ---------------------------------------------------------------- schema helpers
def _field_model(model: type[BaseModel], key: str):
    """The annotation of ``model``'s field named (or aliased) ``key``."""
    for name, f in model.model_fields.items():
        if key in (name, f.alias):
            return f.annotation
    return None


def _model_of(annotation) -> type[BaseModel] | None:
    """The BaseModel inside ``annotation`` (X, X | None), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for a in get_args(annotation):
        m = _model_of(a)
        if m is not None:
            return m
    return None


def _keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The schema class of the mapping at key path ``loc`` (variants' entries included)."""
    model: Any = Params
    for key in loc:
        if model is None:
            return None
        ann = _field_model(model, key) if isinstance(model, type) else None
        if ann is None and get_origin(model) is dict:        # a user-named entry of a free-form map
            ann = get_args(model)[1]
        if ann is None:
            return None
        model = ann if get_origin(ann) is dict else _model_of(ann)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _dotted(loc) -> str:
    return ".".join(str(p) for p in loc)


def _is_bad_fixed_key(err: dict) -> bool:
    """A key outside a mapping's fixed key set (``compute.workers: {default: 1, _: 1}``): pydantic
    reports it as a literal error at ``(..., field, <union branch>, key, "[key]")``."""
    return err["type"] == "literal_error" and len(err["loc"]) >= 4 and err["loc"][-1] == "[key]"


def _fixed_key_errors(errors: list[dict]) -> list[dict]:
    """``errors`` without the union's other branches' complaints about a field that has a bad fixed key
    (``compute.workers`` is a count or a mapping: a mapping with a bad key is not a count either, which
    only hides the real message)."""
    bad = [(err["loc"][:-3], err["loc"][-3]) for err in errors if _is_bad_fixed_key(err)]
    errors = [err for err in errors
              if not any(err["loc"][:len(field)] == field and len(err["loc"]) > len(field)
                         and err["loc"][len(field)] != branch for field, branch in bad)]
    # a mapping given where a union also allows a scalar: drop the scalar branch's "not a valid integer"
    deeper = {err["loc"][:-2] for err in errors if len(err["loc"]) >= 3}
    return [err for err in errors
            if not (isinstance(err["input"], dict) and err["type"].endswith("_type") and len(err["loc"]) >= 2
                    and err["loc"][:-1] in deeper)]


def _message(err: dict) -> str:
    if _is_bad_fixed_key(err):
        field, key = err["loc"][:-3], err["loc"][-2]
        known = re.findall(r"'([^']*)'", str(err.get("ctx", {}).get("expected", "")))
        close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
        hint = f"did you mean {_dotted(field + (close[0],))}?" if close else f"known keys: {', '.join(known)}"
        return f"{_dotted(field + (key,))}: unknown key ({hint})"
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(("function-", "list[", "dict["))))
    path = _dotted(loc)
    if err["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        known = _keys(parent) if parent is not None else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        hint = f"did you mean {_dotted(loc[:-1] + (close[0],))}?" if close else f"known keys: {', '.join(known)}"
        return f"{path}: unknown key ({hint})"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{path}: {msg}, got {err['input']!r}"


# The params a model's features are made with (recorded in its bundle for predict), and the keys
# among them that change how fast features are made, never their values.
FEATURE_SECTIONS = ("features", "audio", "text", "visual", "align")   # features: lookahead (none | offline)
RUNTIME_KEYS = {"audio": {"chunk_s"}, "text": {"asr_threads", "embed_batch"}, "visual": {"embed_batch"}}


def feature_record(cfg: dict, *, section: str) -> dict:
    """A params section as the stages record it for the model bundle: every key but the speed-only
    ones (:data:`RUNTIME_KEYS`), so that a speed-only key changes no recorded output and retrains nothing."""
    return {k: v for k, v in cfg.items() if k not in RUNTIME_KEYS.get(section, set())}


def schema_defaults() -> dict:
    """params.yaml's keys and values as the schema gives them (the committed params.yaml's values)."""
    return Params().model_dump(by_alias=True)


def default(key: str):
    """The schema default of a dotted params key, e.g. ``default("visual.embed_threads")``: the value
    used where a params dict predates the key (a model bundle's recorded feature params)."""
    value: Any = schema_defaults()
    for part in key.split("."):
        value = value[part]
    return value


def _fill(raw: dict, defaults: dict, model: type[BaseModel] | None, path: str, filled: list[str]) -> dict:
    """``raw`` with every schema key it lacks set to its default; raw values are kept as written."""
    out = dict(raw)
    if model is None:
        return out
    for key in _keys(model):
        if key not in out:
            out[key] = defaults[key]
            filled.append(path + key)
        elif isinstance(out[key], dict):
            ann = _field_model(model, key)
            sub = None if get_origin(ann) is dict else _model_of(ann)   # user maps (variants) have no defaults per entry
            if sub is not None:
                out[key] = _fill(out[key], defaults[key], sub, f"{path}{key}.", filled)
    return out


# ---------------------------------------------------------------- the one validation entry point
def validate_params(raw, *, where: str = "params.yaml") -> dict:
    """``raw`` (params.yaml as loaded) checked against the schema and the cross-key rules, with keys
    it lacks filled from the schema defaults. Raises :class:`ParamsError` listing every problem."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{where}: expected a mapping of params groups, got {type(raw).__name__}")
    try:
        Params.model_validate(raw)
    except ValidationError as e:
        lines = sorted({_message(err) for err in _fixed_key_errors(e.errors())})
        raise ParamsError(f"{where}: {len(lines)} invalid param(s):\n  " + "\n  ".join(lines)) from None
    filled: list[str] = []
    params = _fill(raw, schema_defaults(), Params, "", filled)
    if filled:
        log.info("%s lacks %s; using the schema defaults", where, ", ".join(filled))
    problems = cross_checks(params)
    if problems:
        raise ParamsError(f"{where}: {len(problems)} invalid param(s):\n  " + "\n  ".join(problems))
    return params


def cross_checks(params: dict) -> list[str]:
    """The rules that join keys or groups (each module's own check where it has one). ``params`` has
    passed the schema. One message per problem."""
    out: list[str] = []

    def run(check, *args, **kwargs):
        try:
            check(*args, **kwargs)
        except (ValueError, KeyError) as e:
            out.append(str(e.args[0]) if e.args else repr(e))

    variants = params["variants"]
    fps = params["align"]["fps"]
    lookahead = params["features"]["lookahead"]
    run(check_speech_model, cfg=params["audio"], lookahead=lookahead)
    a = params["audio"]
    if a["vad_threshold_off"] > a["vad_threshold_on"]:
        out.append(f"audio.vad_threshold_off ({a['vad_threshold_off']}) must be <= audio.vad_threshold_on "
                   f"({a['vad_threshold_on']}): the hysteresis would never switch off")
    if a["win_s"] < a["hop_s"]:
        out.append(f"audio.win_s ({a['win_s']}) must be >= audio.hop_s ({a['hop_s']}): samples would be skipped")
    ing = params["ingest"]
    if ing["min_gaze_hz"] > ing["max_gaze_hz"]:
        out.append(f"ingest.min_gaze_hz ({ing['min_gaze_hz']}) > ingest.max_gaze_hz ({ing['max_gaze_hz']})")
    if not math.isclose(sum(ing["split_ratios"].values()), 1.0, abs_tol=1e-6):
        out.append(f"ingest.split_ratios must sum to 1, got {ing['split_ratios']}")
    m = params["model"]
    if m["d_model"] % m["n_heads"]:
        out.append(f"model.d_model ({m['d_model']}) must be a multiple of model.n_heads ({m['n_heads']})")
    t = params["train"]
    run(check_horizon, horizon_s=t["horizon_s"], fps=fps)
    for h in t["horizons_sampled"] or []:
        run(check_horizon, horizon_s=h, fps=fps, key="train.horizons_sampled")
    cuts = [("train.horizon_s", t["horizon_s"])] + [("train.horizons_sampled", h) for h in t["horizons_sampled"] or []]
    cuts += [("evaluate.horizons", h) for h in params["evaluate"]["horizons"] if isinstance(h, (int, float))]
    for key, h in cuts:   # the age input is at least the horizon: at or past the cap it is always 1
        if t["max_track_age_s"] <= h:
            out.append(f"train.max_track_age_s ({t['max_track_age_s']}) must be > {key} ({h}): the track's age "
                       "input would be 1 at every step")
            break
    if t["stride_s"] > t["window_s"]:
        out.append(f"train.stride_s ({t['stride_s']}) > train.window_s ({t['window_s']}): steps between windows "
                   "would never be trained on")
    ev = params["evaluate"]
    run(check_horizons, horizons=ev["horizons"], fps=fps)
    run(check_benchmark_params, ev["benchmark"])
    run(check_aoi_cfg, params["aoi"])
    for key, name in (("compare.baseline", params["compare"]["baseline"]), ("attribution.full", params["attribution"]["full"]),
                      ("report.variant", params["report"]["variant"])):
        if name is not None and name not in variants:
            close = difflib.get_close_matches(str(name), list(variants), n=1)
            out.append(f"{key} {name!r} is not a variant in variants ({', '.join(variants)})"
                       + (f"; did you mean {close[0]}?" if close else ""))
    return out


# ---------------------------------------------------------------- checks other modules call
def check_speech_model(*, cfg: dict, lookahead: str) -> None:
    """A speech encoder attends to its whole input chunk (future audio included): offline only."""
    from gazelib.core.params_schema import FeaturesCfg

    modes = get_args(FeaturesCfg.model_fields["lookahead"].annotation)
    if lookahead not in modes:
        raise ValueError(f"features.lookahead is {lookahead!r}; expected one of {', '.join(modes)}")
    if lookahead == "none" and cfg["speech_model"] != "none":
        raise ValueError(f"audio.speech_model {cfg['speech_model']!r} attends to the whole audio chunk, future "
                         "included, so it cannot give viewer-causal features: set audio.speech_model: none, or "
                         "features.lookahead: offline (docs/causality.md)")


def check_horizon(*, horizon_s: float, fps: float, key: str = "train.horizon_s") -> int:
    """The horizon in steps; refuses a horizon under one step (the track would show the target)."""
    lag = horizon_s * fps
    if not math.isfinite(lag) or lag < 1 - 1e-9:
        raise ValueError(f"{key}={horizon_s} is less than one step at align.fps={fps} "
                         f"(lag {lag:.2f} steps): the track input would show the target; use horizon_s >= {1 / fps:g}")
    return int(math.ceil(lag - 1e-9))


def check_horizons(*, horizons, fps: float) -> list[float]:
    """``evaluate.horizons`` as sorted unique floats, each at least one align step (else an error)."""
    if not isinstance(horizons, (list, tuple)) or not horizons:
        raise ValueError(f"params.yaml evaluate.horizons must be a non-empty list of seconds, got {horizons!r}")
    out = []
    for h in horizons:
        try:
            h = float(h)
        except (TypeError, ValueError):
            raise ValueError(f"params.yaml evaluate.horizons: {h!r} is not a number of seconds") from None
        if not h * fps >= 1 - 1e-9:
            raise ValueError(f"params.yaml evaluate.horizons: {h:g} s is less than one step at align.fps={fps:g} "
                             f"(the track would show the target); use >= {1 / fps:g} s")
        out.append(h)
    return sorted(set(out))


def check_aoi_cfg(cfg: dict, where: str = "params.yaml aoi") -> dict:
    """The ``aoi`` params block, validated against the schema (every key present, of its type and range)."""
    from gazelib.core.params_schema import AoiCfg

    if not isinstance(cfg, dict):
        raise ValueError(f"{where} must be a mapping, got {cfg!r}")
    missing = sorted(set(_keys(AoiCfg)) - set(cfg))
    if missing:
        raise ValueError(f"{where}: missing keys {missing}")
    try:
        AoiCfg.model_validate(cfg)
    except ValidationError as e:
        first = e.errors()[0]
        raise ValueError(f"{where}.{_message({**first, 'loc': tuple(first['loc'])})}") from None
    return cfg


def check_benchmark_params(cfg, where: str = "params.yaml evaluate.benchmark") -> dict:
    """Validate ``evaluate.benchmark`` (docs/benchmark.md); the error names the key and what is wrong."""
    if not isinstance(cfg, dict):
        raise ValueError(f"{where} must be a mapping with sigma_deg, sigma_frame, ceiling_splits, ceiling_k_points; "
                         f"got {cfg!r}")
    missing = [k for k in ("sigma_deg", "sigma_frame", "ceiling_splits", "ceiling_k_points") if k not in cfg]
    if missing:
        raise ValueError(f"{where} is missing {missing}")
    for k in ("sigma_deg", "sigma_frame"):
        v = cfg[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or v != v:
            raise ValueError(f"{where}.{k} must be a positive number, got {v!r}")
    if cfg["sigma_frame"] >= 1:
        raise ValueError(f"{where}.sigma_frame is a fraction of the frame width and must be < 1, got {cfg['sigma_frame']!r}")
    for k, least in (("ceiling_splits", 1), ("ceiling_k_points", 2)):
        v = cfg[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise ValueError(f"{where}.{k} must be an integer >= {least}, got {v!r}")
    return cfg


# ---------------------------------------------------------------- gazelib params
import click  # noqa: E402  (only the CLI below needs it)


@click.group("params")
def params_cmd() -> None:
    """params.yaml: check a params file against the schema (gazelib/core/params_schema.py) and the
    cross-key rules, before any stage runs. Every problem is listed with its key path and value, and
    an unknown key names the closest known one (docs/params.md)."""


@params_cmd.command("check")
@click.argument("path", required=False, default="params.yaml", type=click.Path(dir_okay=False))
def check_cmd(path: str) -> None:
    """Validate PATH (default: params.yaml) as every stage does; prints "ok", or the errors naming the
    keys and exits 1."""
    try:
        load_params(path)
    except ParamsError as e:
        click.echo(str(e), err=True)
        raise SystemExit(1) from None
    except (FileNotFoundError, yaml.YAMLError) as e:
        click.echo(f"{path}: {e}", err=True)
        raise SystemExit(1) from None
    click.echo("ok")
