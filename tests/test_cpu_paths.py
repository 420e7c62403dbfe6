"""One instruction-set path on every CPU (gazelib.core.cpu, issue 20).

The pinned mode must give the same bytes whether or not the CPU offers AVX-512: the pipeline's
CPU-heavy steps (ingest, extract audio / text / visual, align, a short training, on a demo corpus
made once) run in two fresh processes, one pinned on this machine as it is and one pinned with AVX-512 also hidden from
glibc and FFmpeg (an AVX2-only CPU as far as user space can simulate it), and every file must match.
A third run with no pin (``GAZELIB_CPU_ISA=native``) shows that on an AVX-512 machine the unpinned
kernels do change the outputs, so the comparison is not vacuous. docs/reproducibility.md has the
same comparison under an emulated AVX2-only CPU (qemu) and the speed cost.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import gazelib.core.cpu as cpu

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "tests" / "cpu_paths_run.py"


def _env(**extra: str) -> dict:
    """This process's environment less the switches gazelib.core.cpu set in it (the child sets its own;
    a variable the environment already had, e.g. OPENBLAS_CORETYPE on some machines, stays)."""
    ours = {cpu.MODE_ENV, cpu.HIDE_ENV, *cpu.pin().set}
    env = {k: v for k, v in os.environ.items() if k not in ours}
    env.update(PYTHONPATH=str(REPO), CT2_VERBOSE="1", **extra)
    return env


def _run(out: Path, env: dict, corpus_from: Path | None = None) -> dict:
    cmd = [sys.executable, str(RUN), str(out)] + (["--corpus-from", str(corpus_from)] if corpus_from else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["log"] = proc.stderr
    return result


def _has_avx512() -> bool:
    from numpy._core._multiarray_umath import __cpu_features__

    return bool(__cpu_features__.get("AVX512F"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    from gazelib.demo.corpus import run_demo
    from tests.cpu_paths_run import tiny_params

    root = tmp_path_factory.mktemp("cpu_paths")
    run_demo(params=tiny_params(epochs=1), root=root / "corpus")  # the inputs, once (ISA-independent)
    envs = {"pinned": _env(), "hidden": _env(**{cpu.HIDE_ENV: "1"}), "native": _env(**{cpu.MODE_ENV: "native"})}
    with ThreadPoolExecutor(len(envs)) as pool:
        futures = {name: pool.submit(_run, root / name, env, root / "corpus") for name, env in envs.items()}
        return {"root": root, **{name: f.result() for name, f in futures.items()}}


def test_this_process_is_pinned_before_the_libraries_load():
    """conftest imports gazelib first: no library was loaded before the switches were set."""
    import gazelib

    state = cpu.pin()
    assert gazelib.__version__ and state.mode == "avx2" and state.late == []
    d = cpu.describe()
    assert d["torch_capability"] == "AVX2"
    assert not {"X86_V4", "AVX512_ICL", "AVX512_SPR"} & set(d["numpy_dispatch"])
    assert d["opencv_avx512"] is False and d["numba_cpu"] == "haswell" and d["arrow_simd"] == "avx2"
    if "OPENBLAS_CORETYPE" not in state.kept:
        assert d["blas"] and all(b.endswith(":Haswell") for b in d["blas"]), d["blas"]


def test_mode_is_validated_and_explicit_settings_are_kept():
    code = "import gazelib.core.cpu as c, json; s = c.pin(); print(json.dumps([s.mode, s.kept, s.set.get('CT2_FORCE_CPU_ISA')]))"
    out = subprocess.run([sys.executable, "-c", code], env=_env(CT2_USE_MKL="1"), capture_output=True,
                         text=True, check=True).stdout
    assert json.loads(out) == ["avx2", {"CT2_USE_MKL": "1"}, "AVX2"]
    native = subprocess.run([sys.executable, "-c", code], env=_env(**{cpu.MODE_ENV: "native"}), capture_output=True,
                            text=True, check=True).stdout
    assert json.loads(native) == ["native", {}, None]
    bad = subprocess.run([sys.executable, "-c", "import gazelib"], env=_env(**{cpu.MODE_ENV: "avx9"}),
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "GAZELIB_CPU_ISA='avx9'" in bad.stderr


@pytest.mark.slow  # the tiny pipeline three times in subprocesses (pinned, AVX-512 hidden, native)
def test_pinned_outputs_are_byte_identical_with_avx512_hidden(runs):
    pinned, hidden = runs["pinned"], runs["hidden"]
    files = pinned["files"]
    for prefix in ("data/features/audio/", "data/features/text/", "data/features/visual/", "data/aligned/",
                   "models/multimodal/seed0/"):
        assert any(k.startswith(prefix) for k in files), f"the run wrote nothing under {prefix}"
    assert sorted(hidden["files"]) == sorted(files)
    differ = [k for k in files if hidden["files"][k] != files[k]]
    assert differ == [], f"pinned outputs depend on the CPU view: {differ}"
    # the speech recogniser really ran on the pinned path (CTranslate2's own report)
    for run in (pinned, hidden):
        assert "Selected ISA: AVX2" in run["log"] and "Use Intel MKL: false" in run["log"]
        assert "GEMM_S8 backend: DNNL" in run["log"]


@pytest.mark.slow  # the tiny pipeline three times in subprocesses (pinned, AVX-512 hidden, native)
def test_unpinned_kernels_change_the_outputs_on_an_avx512_cpu(runs):
    if not _has_avx512():
        pytest.skip("this CPU has no AVX-512: its native kernels are the pinned ones")
    pinned, native = runs["pinned"]["files"], runs["native"]["files"]
    assert runs["native"]["cpu"]["torch_capability"] == "AVX512"
    differ = [k for k in pinned if native.get(k) != pinned[k]]
    assert any(k.startswith("data/features/text/") for k in differ), differ
    assert any(k.startswith("models/multimodal/seed0/") for k in differ), differ
    # the inputs did not change: only the kernels did
    assert all(native[k] == pinned[k] for k in pinned if k.startswith(("data/raw/", "data/interim/")))
    assert any(k.startswith("data/interim/") for k in pinned)


def test_both_copies_of_onednn_run_their_avx_kernels():
    """CTranslate2 and torch each link their own oneDNN; under the pin both report the AVX ISA and run
    AVX convolutions (capped at AVX2, CTranslate2's brgemm convolutions and GEMMs gave the recogniser
    other bits on an Intel Sapphire Rapids than on AVX2 CPUs: docs/reproducibility.md). Unpinned, on a
    CPU with more than AVX, at least one reports more."""
    code = ("import gazelib, numpy as np, torch, ctranslate2\n"
            "from gazelib.features.transcript import resolve_whisper_model\n"
            "torch.nn.functional.conv2d(torch.ones(1, 16, 64, 64), torch.ones(16, 16, 3, 3))\n"
            "m = ctranslate2.models.Whisper(str(resolve_whisper_model('tiny.en-packaged')), device='cpu',"
            " compute_type='int8', intra_threads=1)\n"
            "m.encode(ctranslate2.StorageView.from_array(np.zeros((1, 80, 3000), np.float32)))\n")

    def report(**extra):
        out = subprocess.run([sys.executable, "-c", code], env=_env(ONEDNN_VERBOSE="1", **extra),
                             capture_output=True, text=True, check=True).stdout.splitlines()
        isa = [line.split("isa:", 1)[1] for line in out if ",info,cpu,isa:" in line]
        convs = [line.split(",")[line.split(",").index("convolution") + 1] for line in out
                 if ",exec,cpu,convolution," in line]
        return isa, convs

    isa, convs = report()
    assert len(isa) == 2 and all(x == "Intel AVX" for x in isa), isa   # torch's copy and CTranslate2's
    assert len(convs) >= 3 and all(c == "jit:avx" for c in convs), convs  # torch's conv, Whisper's two
    native, _ = report(**{cpu.MODE_ENV: "native"})
    assert len(native) == 2
    if {"avx2", "fma"} <= cpu.cpu_flags():
        assert all(x != "Intel AVX" for x in native), native


def test_child_env_carries_the_pin_and_opencv_lists_only_present_features():
    env = cpu.child_env()
    assert env[cpu.MODE_ENV] == "avx2" and env["CT2_FORCE_CPU_ISA"] == "AVX2" and env["ATEN_CPU_CAPABILITY"] == "avx2"
    assert set(cpu.AVX2_SWITCHES) - set(cpu.pin().kept) <= set(env)
    assert cpu._opencv_disable({"avx2", "fma"}) is None
    skx = cpu._opencv_disable({"avx2", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}).split(",")
    assert "AVX512-SKX" in skx and "AVX512F" in skx and "AVX512VBMI" not in skx and "AVX512-ICL" not in skx
    assert len(cpu._opencv_disable(set()).split(",")) == len(cpu.OPENCV_AVX512)  # unknown CPU: all names


@pytest.mark.parametrize("machine, flags, why", [("x86_64", {"sse2", "avx"}, "no AVX2"),
                                                 ("aarch64", set(), "not an x86-64")])
def test_a_cpu_without_the_pinned_path_runs_native_and_says_so(monkeypatch, caplog, machine, flags, why):
    monkeypatch.setattr(cpu, "_STATE", None)  # restored after the test: this process stays pinned
    monkeypatch.setattr(cpu, "cpu_flags", lambda: flags)
    monkeypatch.setattr(cpu.platform, "machine", lambda: machine)
    before = dict(os.environ)
    with caplog.at_level("WARNING", logger="gazelib.core.cpu"):
        state = cpu.pin()
    assert state.mode == "native" and state.set == {} and dict(os.environ) == before
    assert why in caplog.text and "not pinned" in caplog.text


def test_gazelib_torch_code_calls_no_vendor_dependent_kernel(trained, tmp_path):
    """No switch pins the torch operators that run on MKL's vector math (sqrt, atan, ...; their last
    bit depends on the CPU vendor, gazelib.core.cpu.VENDOR_DEPENDENT_TORCH_OPS): the image encoder
    as loaded, the sentence embedder, training (forward, backward, the optimiser's step) and the
    trained model's inference must call none of them. Before 0.6.0 the folded batch norms and AdamW's
    step took torch.sqrt, and both gave other bytes on an (emulated) Intel CPU."""
    import copy

    import numpy as np
    import torch

    from gazelib.core.io import read_npz
    from gazelib.core.normalize import fit_norm_stats
    from gazelib.data.dataset import GazeWindows
    from gazelib.features.grid import grid_shape
    from gazelib.features.image_models import ImageEncoder
    from gazelib.features.text import TextEmbedder
    from gazelib.model.checkpoint import model_from_checkpoint
    from gazelib.model.train import train_variant
    from tests.conftest import MODEL_CFG, TRAIN_CFG

    params = trained["params"]
    files = sorted((trained["root"] / "train_aligned").glob("*.npz"))
    arrays = [read_npz(f) for f in files]
    stats = fit_norm_stats(videos=arrays)
    index = {"length": {f.stem: int(a["t"].size) for f, a in zip(files, arrays)},
             "viewers": {f.stem: int(a["gaze"].shape[0]) for f, a in zip(files, arrays)}}
    gshape = grid_shape(params["visual"])
    frames = np.random.default_rng(0).integers(0, 256, (2, 128, 224, 3), dtype=np.uint8)
    cfg = copy.deepcopy(TRAIN_CFG) | {"heatmap_target": "cell"}
    with cpu.vendor_dependent_torch_calls() as calls:
        ImageEncoder(model="efficientnet-lite0", grid_hw=gshape[1:], threads=1).encode(frames)
        TextEmbedder(model=params["text"]["embedder"], threads=1).encode(["the red ball", "look over there"])
        train_variant(variant="multimodal", modalities=["track", "audio", "text", "visual"], train_files=files,
                      val_files=files[1:], index=index, stats=stats,
                      grid_shape=(len(stats["grid"]["mean"]), *gshape[1:]), fps=params["align"]["fps"], cfg=cfg,
                      model_cfg=MODEL_CFG | {"persistence": True, "dropout": 0.1}, out_dir=tmp_path / "seed0",
                      seed=0)
        model, _ = model_from_checkpoint(tmp_path / "seed0" / "best.pt")
        ds = GazeWindows(files=files, stats=stats, cfg=cfg, grid_hw=gshape[1:], fps=params["align"]["fps"],
                         lengths=index["length"], n_viewers=index["viewers"])
        with torch.no_grad():
            out = model.eval()(ds.batch(list(range(min(4, len(ds))))))
    assert out["heatmap_logits"].numel() > 0
    assert calls == [], f"vendor-dependent torch kernels called: {sorted(set(calls))} ({len(calls)} calls)"


def test_the_recorder_sees_the_vendor_dependent_calls():
    """The recorder of the test above is not blind: it reports torch.sqrt, pow(x, 0.5) and the
    unfused AdamW step, and not pow(x, 2) or exp."""
    import torch

    x = torch.rand(8) + 0.1
    p = torch.nn.Parameter(torch.ones(4))
    opt = torch.optim.AdamW([p])
    p.grad = torch.ones(4)
    with cpu.vendor_dependent_torch_calls() as calls:
        torch.sqrt(x), x.pow(2), torch.exp(x), x ** 0.5
        opt.step()
    assert calls == ["sqrt", "pow", "sqrt"]
