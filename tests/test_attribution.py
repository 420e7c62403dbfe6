"""Attribution (gazelib.eval.attribution): control inputs through the aligned files, ablation lookup,
and the answer it states from evaluated samples (an effect, and a world with none)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gazelib.data.align import write_aligned
from gazelib.eval.attribution import (
    ablations,
    control_row,
    control_sources,
    run_attribution,
    shift_steps,
    write_control_files,
)
from gazelib.data.dataset import read_aligned
from gazelib.core.io import write_json, write_table

PARAMS = {"attribution": {"full": "multimodal", "drop": [["audio", "text"]], "controls": ["time_shift", "swap"],
                          "move": ["audio", "text"], "min_shift_s": 5.0},
          "variants": {"baseline": {"modalities": ["track"]},
                       "multimodal": {"modalities": ["track", "audio", "text", "visual"]},
                       "track_visual": {"modalities": ["track", "visual"]}},
          "compare": {"primary": ["auc_vat", "ig"]}, "features": {"lookahead": "none"}}


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 3000), st.sampled_from([5.0, 10.0, 25.0]), st.floats(0.5, 20.0))
def test_time_shift_is_a_permutation_at_least_min_shift_where_the_video_allows(n, fps, min_shift_s):
    k = shift_steps(n_steps=n, fps=fps, min_shift_s=min_shift_s)
    assert 0 <= k < max(n, 1)
    if n * 1.0 > min_shift_s * fps + 1:
        assert k / fps >= min_shift_s - 1e-9 and k >= n // 2
    src = control_sources(control="time_shift", lengths={"v": n}, fps=fps, min_shift_s=min_shift_s)
    if k:
        idx = src["v"]["index"]
        assert sorted(idx.tolist()) == list(range(n)) and (idx != np.arange(n)).all()
    else:
        assert src == {}


def test_swap_takes_another_video_tiled_and_needs_two():
    src = control_sources(control="swap", lengths={"a": 5, "b": 3, "c": 4}, fps=10, min_shift_s=5)
    assert [src[v]["donor"] for v in "abc"] == ["b", "c", "a"]
    assert src["a"]["index"].tolist() == [0, 1, 2, 0, 1]
    assert control_sources(control="swap", lengths={"a": 5}, fps=10, min_shift_s=5) == {}
    with pytest.raises(ValueError, match="unknown control"):
        control_sources(control="reverse", lengths={"a": 5}, fps=10, min_shift_s=5)


def _aligned(path, n, seed):
    rng = np.random.default_rng(seed)
    arrays = {"t": np.arange(n) / 10.0, "audio": rng.normal(size=(n, 3)).astype(np.float32),
              "text": rng.normal(size=(n, 2)).astype(np.float32), "visual": rng.normal(size=(n, 4)).astype(np.float32),
              "grid": rng.normal(size=(n, 2, 3, 4)).astype(np.float32), "mask": rng.uniform(size=(n, 4)) > 0.3,
              "gaze": rng.uniform(size=(2, n, 2)).astype(np.float32), "inout": np.ones((2, n), np.int8),
              "valid": np.ones((2, n), bool), "gaze_t": np.tile(np.arange(n) / 10.0, (2, 1)),
              "viewers": np.array(["p1", "p2"])}
    for m in ("audio", "text", "visual"):
        arrays[f"{m}_columns"] = np.array([f"{m}{i}" for i in range(arrays[m].shape[1])])
        arrays[f"{m}_kinds"] = np.array(["continuous"] * arrays[m].shape[1])
    write_aligned(path, arrays)
    return arrays


@pytest.mark.parametrize("control", ["time_shift", "swap"])
def test_control_files_move_only_sound_and_speech_rows(tmp_path, control):
    a = _aligned(tmp_path / "a.npz", 120, 0)
    b = _aligned(tmp_path / "b.npz", 70, 1)
    made = write_control_files(files=[tmp_path / "a.npz", tmp_path / "b.npz"], control=control,
                               move=["audio", "text"], fps=10.0, min_shift_s=5.0, out_dir=tmp_path / control,
                               chunk=17)  # chunks that straddle the wrap-around
    got = read_aligned(path=tmp_path / control / "a.npz")
    if control == "time_shift":
        idx, donor = (np.arange(120) - 60) % 120, a
        assert made["applied"]["a"]["shift_s"] == 6.0 and made["applied"]["b"]["shift_s"] == 5.0
    else:
        idx, donor = np.arange(120) % 70, b
        assert made["applied"]["a"]["donor"] == "b"
    for k in ("audio", "text"):
        np.testing.assert_array_equal(got[k], donor[k][idx])
    np.testing.assert_array_equal(got["mask"][:, :2], donor["mask"][idx, :2])
    np.testing.assert_array_equal(got["mask"][:, 2:], a["mask"][:, 2:])
    for k in ("visual", "grid", "gaze", "inout", "valid", "gaze_t", "t"):
        np.testing.assert_array_equal(got[k], a[k])
    assert made["skipped"] == {}


def test_ablations_resolve_to_variants_and_name_what_to_add():
    assert ablations(params=PARAMS) == {"track_visual": {"dropped": ["audio", "text"],
                                                         "modalities": ["track", "visual"]}}
    p = json.loads(json.dumps(PARAMS))
    p["attribution"]["drop"] = [["audio"]]
    with pytest.raises(ValueError, match=r"no variant has modalities \['text', 'track', 'visual'\]"):
        ablations(params=p)
    p["attribution"]["drop"] = [["colour"]]
    with pytest.raises(ValueError, match="not a non-empty subset"):
        ablations(params=p)


def _samples(rng, row, seeds, level, videos=6, n=60):
    recs = []
    for s in seeds:
        shift = rng.normal(0, 0.002)
        for v in range(videos):
            recs.append(pd.DataFrame({"row": row, "seed": s, "video_id": f"v{v}", "viewer": 0, "step": np.arange(n),
                                      "inout": 1, "p_in": 0.9, "auc_vat": level + shift + rng.normal(0, 0.05, n),
                                      "l2_vat": 0.2 + rng.normal(0, 0.02, n), "nss": 2 + rng.normal(0, 0.3, n),
                                      "ig": 5 * (level - 0.7) + rng.normal(0, 0.3, n)}))
    return pd.concat(recs, ignore_index=True)


def _write_eval(root, rng, *, full, ablation, shift, swap):
    seeds = [0, 1, 2]
    full_df = pd.concat([_samples(rng, "multimodal", seeds, full),
                         _samples(rng, control_row("multimodal", "time_shift"), seeds, shift),
                         _samples(rng, control_row("multimodal", "swap"), seeds, swap)], ignore_index=True)
    write_table(root / "reports/eval/multimodal/samples.parquet", full_df)
    write_table(root / "reports/eval/track_visual/samples.parquet", _samples(rng, "track_visual", seeds, ablation))
    write_json(root / "reports/metrics/eval/multimodal.json", {"controls": {"time_shift": {"applied": {}}, "swap": {}}})


def test_a_real_synchronised_effect_is_found_and_removed_by_both_controls(tmp_path):
    _write_eval(tmp_path, np.random.default_rng(0), full=0.80, ablation=0.75, shift=0.75, swap=0.75)
    att = run_attribution(params=PARAMS, root=tmp_path)
    gain = att["ablations"]["track_visual"]["gain"]["auc_vat"]
    assert gain["delta"] == pytest.approx(0.05, abs=0.01) and gain["significant"] is True
    for c in ("time_shift", "swap"):
        assert att["controls"][c]["share_of_gain_removed"]["track_visual"]["auc_vat"] == pytest.approx(1, abs=0.25)
        assert att["controls"][c]["removed"]["auc_vat"]["delta"] > 0
    assert "add +0.05" in att["answer"] and "(significant)" in att["answer"] and "6 test videos" in att["answer"]
    assert "Verdict: a real effect of synchronised sound and speech" in att["answer"]
    assert (tmp_path / "reports/attribution.md").read_text().startswith("# What sound and speech add")
    saved = json.loads((tmp_path / "reports/metrics/attribution.json").read_text())
    assert saved["answer"] == att["answer"]
    # the headline DVC shows (compare writes it): the same gain, its interval and Holm p; each control's cost
    from gazelib.eval.headline import answer_headline

    head = answer_headline(att=saved, content_gain={}, n_test_videos=6, n_seeds=3, asr=None,
                           validation={"passed": True})
    assert list(head) == ["gain_over_track_visual", "swap_cost", "time_shift_cost", "content_gain_over_baseline",
                          "health"]
    assert head["gain_over_track_visual"]["auc_vat"] == {"delta": gain["delta"], "lo": gain["ci95"][0],
                                                         "hi": gain["ci95"][1], "p_holm": gain["p_holm"]}
    assert head["swap_cost"]["auc_vat"]["delta"] == att["controls"]["swap"]["removed"]["auc_vat"]["delta"]
    assert head["health"] == {"n_test_videos": 6, "n_seeds": 3, "asr_wer": None, "validation_passed": True}


def test_a_world_with_no_effect_comes_out_with_no_effect(tmp_path):
    _write_eval(tmp_path, np.random.default_rng(1), full=0.75, ablation=0.75, shift=0.75, swap=0.75)
    att = run_attribution(params=PARAMS, root=tmp_path)
    for k in ("auc_vat", "ig"):
        g = att["ablations"]["track_visual"]["gain"][k]
        assert g["significant"] is False and g["ci95"][0] < 0 < g["ci95"][1]
    assert "not significant" in att["answer"]
    assert "Verdict: no evidence that sound and speech help" in att["answer"]


def test_a_model_that_uses_sound_redundant_with_vision_is_called_so(tmp_path):
    """Controls hurt the trained model, but the retrained ablation matches it: used, not needed."""
    _write_eval(tmp_path, np.random.default_rng(2), full=0.80, ablation=0.80, shift=0.75, swap=0.75)
    att = run_attribution(params=PARAMS, root=tmp_path)
    assert att["ablations"]["track_visual"]["gain"]["auc_vat"]["significant"] is False
    assert att["controls"]["swap"]["removed"]["auc_vat"]["significant"] is True
    assert "a model retrained without them does as well" in att["answer"]


def test_a_gain_that_survives_the_controls_is_not_called_real(tmp_path):
    _write_eval(tmp_path, np.random.default_rng(3), full=0.80, ablation=0.75, shift=0.80, swap=0.80)
    att = run_attribution(params=PARAMS, root=tmp_path)
    assert att["ablations"]["track_visual"]["gain"]["auc_vat"]["significant"] is True
    assert "does not depend on synchrony" in att["answer"]
