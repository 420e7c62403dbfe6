"""The headline numbers: what dvc.yaml declares as metrics, so that `dvc exp show` and
`dvc metrics diff` lead with the answer (docs/metrics.md).

Everything the stages measure is in the detail files under ``reports/metrics/`` (the report and
the tests read them); these functions pick, from those, the few numbers a reader compares across
experiments: per row the primary metrics (``compare.primary``), the attribution's deltas with their
95 % intervals and Holm-adjusted p, and the counts that say how much data is behind them.
Stateless: each takes the detail dict and returns a small dict of numbers.
"""
from __future__ import annotations


def _interval(entry: dict | None) -> dict:
    """A delta as {delta, lo, hi} (+ p_holm where the comparison is a primary one); None where
    there is no estimate or no interval (one test video)."""
    entry = entry or {}
    lo, hi = (entry.get("ci95") or [None, None])[:2]
    out = {"delta": entry.get("delta"), "lo": lo, "hi": hi}
    if "p_holm" in entry:
        out["p_holm"] = entry["p_holm"]
    return out


def rows_headline(*, cmp: dict, primary: list[str]) -> dict:
    """``metrics/rows.json``: each row's primary metrics, ``{row: {metric: value}}`` (variants,
    floors, ceiling); the deltas and their intervals are in the detail file and in the answer."""
    order = {"variant": 0}
    names = sorted(cmp["rows"], key=lambda n: (order.get(cmp["rows"][n]["kind"], 1), n))  # variants first
    return {name: {k: cmp["rows"][name]["metrics"].get(k) for k in primary} for name in names}


def answer_headline(*, att: dict | None, content_gain: dict, n_test_videos: int, n_seeds: int,
                    asr: dict | None, validation: dict) -> dict:
    """``metrics/answer.json``, per primary metric as {delta, lo, hi, p_holm}:

    in this order (`dvc exp show` lists the keys as the file has them):

    - ``gain_over_<ablation>``: what the attributed modalities add (each retrained ablation);
    - ``<control>_cost``: what each control costs the trained full model;
    - ``content_gain_over_baseline``: the full model vs the baseline (``content_gain``: compare's
      ``deltas[full]["vs_baseline"]``), i.e. what content adds to the gaze track;
    - ``health``: test videos (the resampling unit), seeds of the full model, ASR word error rate
      (None without an ASR reference), whether validation passed.

    Without an attribution (``att`` None: a library run of compare alone) the first two are absent."""
    out: dict = {}
    if att is not None:
        prim = att["primary"]
        for name, e in att["ablations"].items():
            out[f"gain_over_{name}"] = {k: _interval(e["gain"].get(k)) for k in prim}
        for name, c in att["controls"].items():
            if "removed" in c:
                out[f"{name}_cost"] = {k: _interval(c["removed"].get(k)) for k in prim}
    out["content_gain_over_baseline"] = {k: _interval(v) for k, v in content_gain.items()}
    out["health"] = {"n_test_videos": n_test_videos, "n_seeds": n_seeds,
                     "asr_wer": (asr or {}).get("wer"), "validation_passed": bool(validation.get("passed"))}
    return out
