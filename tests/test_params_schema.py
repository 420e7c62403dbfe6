"""params.yaml's schema (gazelib/core/params_schema.py) and load_params' validation (gazelib/core/params.py)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gazelib.core.params import ParamsError, default, load_params, schema_defaults, validate_params

REPO = Path(__file__).resolve().parents[1]
RAW = yaml.safe_load((REPO / "params.yaml").read_text())


def _with(path: str, value, raw=None) -> dict:
    p = copy.deepcopy(RAW if raw is None else raw)
    *parents, last = path.split(".")
    d = p
    for k in parents:
        d = d[k]
    d[last] = value
    return p


def test_committed_params_validate_unchanged():
    assert load_params(REPO / "params.yaml") == RAW     # nothing coerced, nothing added


def test_schema_defaults_are_the_committed_values():
    # every key, the moved tunables included: the fallback for old params/bundles is today's value
    assert schema_defaults() == RAW
    assert default("train.grad_clip") == 1.0 and default("train.warmup_frac") == 0.05
    assert default("text.utterance_gap_s") == 0.6 and default("visual.face_min_confidence") == 0.5
    assert default("visual.embed_threads") == RAW["visual"]["embed_threads"]


def test_mistyped_key_names_the_path_and_the_closest_key():
    bad = copy.deepcopy(RAW)
    bad["train"]["lambda_entorpy"] = 1.0
    with pytest.raises(ParamsError, match=r"train\.lambda_entorpy: unknown key \(did you mean train\.lambda_entropy\?\)"):
        validate_params(bad)


def test_unknown_keys_in_nested_and_user_maps():
    bad = copy.deepcopy(RAW)
    bad["evaluate"]["benchmark"]["sigma_degs"] = 1.0
    bad["variants"]["baseline"]["modality"] = ["track"]
    bad["trian"] = {}
    with pytest.raises(ParamsError) as e:
        validate_params(bad)
    msg = str(e.value)
    assert "evaluate.benchmark.sigma_degs: unknown key (did you mean evaluate.benchmark.sigma_deg?)" in msg
    assert "variants.baseline.modality: unknown key (did you mean variants.baseline.modalities?)" in msg
    assert "trian: unknown key (did you mean train?)" in msg


def test_compute_workers_per_stage_names_a_known_stage():
    ok = copy.deepcopy(RAW)
    ok["compute"]["workers"] = {"extract_visual": 3}
    validate_params(ok)
    ok["compute"]["workers"] = 4
    validate_params(ok)
    bad = copy.deepcopy(RAW)
    bad["compute"]["workers"] = {"extract_txt": 2}
    with pytest.raises(ParamsError, match="compute.workers"):
        validate_params(bad)
    bad["compute"]["workers"] = {"extract_text": 0}
    with pytest.raises(ParamsError, match="compute.workers"):
        validate_params(bad)


@pytest.mark.parametrize("path,value,needle", [
    ("audio.sample_rate", 22050, "audio.sample_rate"),
    ("aoi.track_min_s", -1.0, "aoi.track_min_s"),
    ("train.epochs", "25", "train.epochs"),
    ("train.epochs", 2.5, "train.epochs"),
    ("train.lr", True, "train.lr"),
    ("train.grad_clip", 0, "train.grad_clip"),
    ("train.max_track_age_s", 0, "train.max_track_age_s"),
    ("train.max_track_age_s", -5.0, "train.max_track_age_s"),
    ("train.max_track_age_s", "5", "train.max_track_age_s"),
    ("model.fusion", "gatted", "model.fusion"),
    ("features.lookahead", "future", "features.lookahead"),
    ("text.sources", ["asr", "subtitle"], "text.sources.1"),
    ("visual.face_input_width", 100, "visual.face_input_width"),
    ("visual.image_model", "resnet", "visual.image_model"),
    ("demo.silence_s", [1.5, 0.5], "demo.silence_s"),
    ("variants.baseline.modalities", ["track", "smell"], "variants.baseline.modalities.1"),
    ("evaluate.bias_grey_levels", [0.0, 2.0], "evaluate.bias_grey_levels.1"),
])
def test_wrong_type_or_impossible_value_names_key_and_value(path, value, needle):
    with pytest.raises(ParamsError) as e:
        validate_params(_with(path, value), where="p.yaml")
    msg = str(e.value)
    last = needle.rsplit(".", 1)[-1]
    shown = value[int(last)] if last.isdigit() else value   # a list entry's error shows the entry
    assert msg.startswith("p.yaml: ") and needle in msg and repr(shown) in msg, msg


@pytest.mark.parametrize("path,value,needle", [
    ("audio.vad_threshold_off", 0.6, "audio.vad_threshold_off"),
    ("train.horizon_s", 0.05, "train.horizon_s"),
    ("train.max_track_age_s", 1.0, "train.max_track_age_s"),    # = train.horizon_s: the age input always 1
    ("train.max_track_age_s", 1.5, "evaluate.horizons"),        # under the 2.0 s evaluation horizon
    ("evaluate.horizons", [0.01, 1.0], "evaluate.horizons"),
    ("evaluate.benchmark.sigma_frame", 1.5, "evaluate.benchmark.sigma_frame"),
    ("compare.baseline", "basline", "did you mean baseline"),
    ("report.variant", "nope", "report.variant"),
    ("model.n_heads", 3, "model.d_model"),
    ("ingest.split_ratios", {"train": 0.6, "val": 0.2, "test": 0.1}, "ingest.split_ratios"),
    ("audio.speech_model", "some/dir", "audio.speech_model"),
])
def test_cross_key_rules(path, value, needle):
    with pytest.raises(ParamsError, match=needle.replace(".", r"\.")):
        validate_params(_with(path, value))


def test_missing_key_gets_the_schema_default(tmp_path):
    old = copy.deepcopy(RAW)
    del old["train"]["grad_clip"], old["text"]["utterance_gap_s"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(old))
    p = load_params(tmp_path / "params.yaml")
    assert p["train"]["grad_clip"] == 1.0 and p["text"]["utterance_gap_s"] == 0.6
    assert p == RAW


def test_every_error_is_reported_at_once():
    bad = _with("train.lambda_entorpy", 1.0, _with("audio.sample_rate", 8000))
    with pytest.raises(ParamsError, match=r"2 invalid param\(s\)"):
        validate_params(bad)


def test_user_variants_are_validated_per_entry():
    ok = _with("variants.audio_only", {"modalities": ["audio"]})
    assert validate_params(ok)["variants"]["audio_only"] == {"modalities": ["audio"]}
    with pytest.raises(ParamsError, match="variants.audio_only.modalities"):
        validate_params(_with("variants.audio_only", {"modalities": []}))


def _all_paths(d: dict, prefix=()):
    for k, v in d.items():
        yield prefix + (k,)
        if isinstance(v, dict):
            yield from _all_paths(v, prefix + (k,))


PATHS = [p for p in _all_paths(RAW) if p[0] != "variants" and p[:2] not in (("import", "sync"), ("import", "geometry"))]


@settings(max_examples=60, deadline=None)
@given(where=st.sampled_from(PATHS), junk=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
@example(where=("compute", "workers", "default"), junk="_")   # a mapping with fixed keys inside a union
def test_any_unknown_key_is_rejected_by_name(where, junk):
    parent = copy.deepcopy(RAW)
    d = parent
    for k in where[:-1]:
        d = d[k]
    if junk in d:
        return
    d[junk] = 1
    with pytest.raises(ParamsError, match=rf"{'.'.join(where[:-1] + (junk,))}: unknown key"):
        validate_params(parent)


def test_a_mistyped_worker_stage_is_named_with_the_stages_that_exist():
    bad = _with("compute.workers", {"default": 0, "extract_txt": 2})
    with pytest.raises(ParamsError) as e:
        validate_params(bad)
    lines = str(e.value).splitlines()[1:]
    assert [ln.strip() for ln in lines] == [
        "compute.workers.default: Input should be greater than or equal to 1, got 0",
        "compute.workers.extract_txt: unknown key (did you mean compute.workers.extract_text?)"]


def test_warmup_frac_reproduces_the_old_integer_warmup():
    from gazelib.model.train import warmup_steps

    assert all(warmup_steps(steps=s, frac=RAW["train"]["warmup_frac"]) == max(1, s // 20) for s in range(200_000))
