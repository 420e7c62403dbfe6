"""Benchmark-protocol metrics against pysaliency (matthias-k/pysaliency) on shared maps.

pysaliency is not in requirements.lock, so this module is skipped unless it is importable (e.g.
``pip install --target /tmp/pys pysaliency`` and ``PYTHONPATH=/tmp/pys``); tests/test_benchmark.py
holds the checks that always run (MIT port, sklearn, numpy, scipy, hand cases)."""
from __future__ import annotations

import numpy as np
import pytest

from gazelib.eval import benchmark as bm

pysaliency = pytest.importorskip("pysaliency")
from pysaliency import metrics as pm  # noqa: E402


def _shared(seed: int):
    rng = np.random.default_rng(seed)
    h, w = 27, 48
    s = rng.gamma(2.0, 1.0, (h, w))
    fix = np.unique(rng.integers(0, h * w, 9))
    g = bm.fixation_map(fix=fix, hw=(h, w), sigma_px=(1.5, 1.5))
    other = np.unique(rng.integers(0, h * w, 60))
    return s, g, fix, other, w


@pytest.mark.parametrize("seed", range(4))
def test_map_metrics_equal_pysaliency(seed):
    s, g, fix, other, w = _shared(seed)
    assert bm.bench_cc(s=s, g=g) == pytest.approx(pm.CC(s, g), abs=1e-12)
    assert bm.bench_sim(s=s, g=g) == pytest.approx(pm.SIM(s, g), abs=1e-12)
    assert bm.bench_kl(s=s, g=g) == pytest.approx(pm.MIT_KLDiv(s, g), abs=1e-10)
    xs, ys = fix % w, fix // w
    assert bm.bench_nss(s=s, fix=fix) == pytest.approx(np.mean(pm.NSS(s, xs, ys)), abs=1e-12)


@pytest.fixture
def general_roc(monkeypatch):
    """pysaliency's compiled ROC; its ``np.trapz`` is ``np.trapezoid`` in numpy >= 2."""
    from pysaliency.roc import general_roc

    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    return general_roc


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
def test_aucs_equal_pysaliency_general_roc(seed, ties, general_roc):
    s, _, fix, other, _ = _shared(seed)
    if ties:
        s = np.round(s, 1)                  # ties among positives and between positives and negatives
    flat = s.ravel()
    rest = np.setdiff1d(np.arange(flat.size), fix)
    # shuffled AUC: every value a threshold (Mann-Whitney)
    auc, _, _ = general_roc(np.ascontiguousarray(flat[fix]), np.ascontiguousarray(flat[other]))
    assert bm.bench_sauc(s=s, fix=fix, other=other) == pytest.approx(auc, abs=1e-12)
    # AUC-Judd: judd=1 puts the thresholds at the positives, negatives the unfixated pixels (the MIT curve)
    auc, _, _ = general_roc(np.ascontiguousarray(flat[fix]), np.ascontiguousarray(flat[rest]), judd=1)
    assert bm.bench_auc_judd(s=s, fix=fix) == pytest.approx(auc, abs=1e-12)
