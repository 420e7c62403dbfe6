"""Speed changes keep every byte (issue 24): a faster path must write what the plain path writes.

- ``train.seed_workers``: a variant's seeds trained in parallel processes give the same checkpoints
  and metrics, byte for byte, as the seeds trained one after another in one process; two workers
  ending together under ``dvc exp run`` do not fail the stage (dvclive's signal-file race).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gazelib.model.train import run_train, seed_workers
from tests.test_ddp import VARIANT, _make_repo


def _hashes(root: Path) -> dict[str, str]:
    files = sorted((root / "models" / VARIANT).rglob("*.pt")) + [root / "reports" / "metrics" / "train" / f"{VARIANT}.json"]
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.mark.slow  # trains the tiny corpus twice, once on two worker processes
def test_seed_workers_give_the_bytes_of_serial_training(tmp_path, base_params):
    import yaml

    digests = {}
    for workers in (1, 2):
        root = tmp_path / f"w{workers}"
        _make_repo(root, base_params)
        params = yaml.safe_load((root / "params.yaml").read_text())
        # the demo's torch thread count (float sums depend on it); nproc 1: no torchrun here
        params["train"].update({"seeds": [0, 1], "nproc": 1, "num_threads": 2, "epochs": 2,
                                "seed_workers": workers})
        summary = run_train(params=params, variant=VARIANT, root=root)
        assert set(summary["seeds"]) == {"seed0", "seed1"}
        digests[workers] = _hashes(root)
    assert len(digests[1]) == 5   # best.pt, latest.pt of both seeds, and the metrics
    assert digests[1] == digests[2]


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_seed_workers_refuses_a_bad_value(value):
    with pytest.raises(ValueError, match="train.seed_workers"):
        seed_workers(value, n_seeds=3, distributed=False)


def test_seed_workers_caps_at_the_seeds_and_under_torchrun():
    assert seed_workers(4, n_seeds=3, distributed=False) == 3
    assert seed_workers(2, n_seeds=3, distributed=True) == 1


def test_seed_workers_ending_together_do_not_fail_the_stage(tmp_path, monkeypatch):
    """Two seed workers under ``dvc exp run`` both delete dvclive's VS Code signal file at the end of
    ``Live.end``; the second finds it gone (tests the race deterministically: the existence check is
    made to pass on a file that is already deleted, as it does for the slower worker)."""
    import os

    import dvclive.vscode as vscode

    from gazelib.model.train import _live, end_live

    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    live = _live(tmp_path / "reports" / "seed0")
    live.log_metric("val_loss", 1.0)
    live.next_step()
    signal = Path(vscode._dvclive_step_completed_signal_file(str(tmp_path)))
    assert signal.exists()
    signal.unlink()  # the other worker's remove
    real_exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: Path(p) == signal or real_exists(p))
    with pytest.raises(FileNotFoundError):
        live.end()  # dvclive alone fails here
    live2 = _live(tmp_path / "reports" / "seed1")
    live2.log_metric("val_loss", 2.0)
    live2.next_step()
    signal.unlink()
    end_live(live2)
    assert (tmp_path / "reports" / "seed1" / "metrics.json").exists()


# ------------------------------------------------------------------ evaluation resizes
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402

import numpy as np  # noqa: E402

from gazelib import metrics as M  # noqa: E402


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 12), h=st.integers(1, 20), w=st.integers(1, 20), oh=st.integers(1, 70),
       ow=st.integers(1, 70), dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**31),
       const=st.booleans(), block=st.sampled_from([1, 500, 1 << 22]))
def test_map_resizes_are_the_per_map_pil_calls(n, h, w, oh, ow, dtype, seed, const, block):
    """The batched resizes (the maps stacked into one PIL image per pass, in blocks of ``block``
    pixels) give exactly what ``Image.fromarray(m).resize`` gave map by map (uint8 'L' after scipy's
    bytescale, and float32 'F'), bit for bit, on any size change, growing or shrinking."""
    import pytest

    rng = np.random.default_rng(seed)
    maps = (rng.normal(size=(n, h, w)) * rng.uniform(0.01, 100)).astype(dtype)
    if const:
        maps[0] = dtype(0.3)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(M, "_RESIZE_BLOCK_PIXELS", block)
        u8 = M.imresize_uint8(maps=maps, out_hw=(oh, ow))
        fl = M.resize_bilinear(maps=maps, out_hw=(oh, ow))
    for i in range(n):
        ref_u8 = np.asarray(Image.fromarray(np.ascontiguousarray(M._bytescale(maps[i]))).resize(
            (ow, oh), resample=Image.Resampling.BILINEAR))
        ref_f = np.asarray(Image.fromarray(np.ascontiguousarray(maps[i], dtype=np.float32)).resize(
            (ow, oh), resample=Image.Resampling.BILINEAR)).astype(np.float64)
        assert np.array_equal(u8[i], ref_u8)
        assert np.array_equal(fl[i].view(np.int64), ref_f.view(np.int64))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 300), seed=st.integers(0, 2**31), out_hw=st.sampled_from([(64, 64), (36, 64), (48, 64)]))
def test_evaluation_resizes_of_grid_maps_are_the_per_map_pil_calls(n, seed, out_hw):
    """The evaluation's own sizes (a 9 x 16 grid of probabilities to 64 x 64 for VideoAttentionTarget and to
    the saliency map), many maps at once: the same bytes as one PIL call per map."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 9 * 16)) * rng.uniform(0.1, 8)
    maps = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).reshape(n, 9, 16).astype(np.float32)
    u8 = M.imresize_uint8(maps=maps.astype(np.float64), out_hw=out_hw)
    fl = M.resize_bilinear(maps=maps, out_hw=out_hw)
    oh, ow = out_hw
    for i in range(n):
        ref_u8 = np.asarray(Image.fromarray(M._bytescale(maps[i].astype(np.float64))).resize(
            (ow, oh), resample=Image.Resampling.BILINEAR))
        ref_f = np.asarray(Image.fromarray(maps[i]).resize((ow, oh), resample=Image.Resampling.BILINEAR))
        assert np.array_equal(u8[i], ref_u8)
        assert np.array_equal(fl[i].view(np.int64), ref_f.astype(np.float64).view(np.int64))


def test_seeding_sets_torch_deterministic_mode_without_importing_the_compiler():
    """seed_everything sets what ``torch.use_deterministic_algorithms(True, warn_only=True)`` sets for
    eager ops, without the public call's import of torch._inductor / torch._dynamo (seconds in every
    training process)."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from gazelib.model.train import seed_everything\n"
            "assert not torch.are_deterministic_algorithms_enabled()\n"
            "seed_everything(0)\n"
            "print(torch.are_deterministic_algorithms_enabled(),"
            " torch.is_deterministic_algorithms_warn_only_enabled(),"
            " 'torch._dynamo' in sys.modules, 'torch._inductor' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.split() == ["True", "True", "False", "False"], out.stdout + out.stderr
