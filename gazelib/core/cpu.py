"""One instruction-set path for every library that picks its CPU kernels at run time.

Several libraries under gazelib choose SIMD kernels per CPU when they load (CTranslate2 for the
speech recogniser, torch's ATen and oneDNN, MKL inside torch and CTranslate2, numpy's own dispatch,
OpenBLAS, OpenCV and its IPP, numba's JIT, Arrow; onnxruntime's MLAS too, which has no switch). Kernels for different instruction sets sum in
different orders or round differently, so the same video gave different bytes on an AVX2 and an
AVX-512 machine (issue 20). :func:`pin` sets each library's own switch so that every x86-64 machine
with AVX2 runs the AVX2 path, whatever else it has. docs/reproducibility.md lists the switches,
what each one was verified by, what cannot be pinned (onnxruntime's MLAS) and the cost in speed.

It works through environment variables that the libraries read when they load, so it must run
before numpy / torch / ctranslate2 / cv2 / numba are imported: ``gazelib/__init__.py`` calls it
first thing, so any ``import gazelib...`` (stage scripts, ``gazelib predict``, tests, spawned
workers, Ray actors, torchrun ranks) pins the process, and child processes inherit the variables.

``GAZELIB_CPU_ISA`` chooses the mode:

- ``avx2`` (default): the pinned path described above.
- ``native``: no switch is set; every library picks its fastest path for this CPU (for speed
  comparisons and for the test that shows the pinned path matters).

``GAZELIB_CPU_HIDE_AVX512=1`` additionally hides AVX-512 from glibc's CPU view
(``GLIBC_TUNABLES``) and FFmpeg's (``av_force_cpu_flags``), to simulate an AVX2-only CPU on an
AVX-512 machine as far as user space allows (tests/test_cpu_paths.py).

A variable the user has already set is kept (an explicit choice wins) and reported by
:func:`describe`; ``OPENBLAS_CORETYPE`` in particular is set by some machines' environment to
work around OpenBLAS bugs and is then left alone.
"""
from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

MODE_ENV = "GAZELIB_CPU_ISA"
HIDE_ENV = "GAZELIB_CPU_HIDE_AVX512"
MODES = ("avx2", "native")
DEFAULT_MODE = "avx2"

# Each library's switch for "use the AVX2 path at most". Verified in tests/test_cpu_paths.py.
AVX2_SWITCHES: dict[str, str] = {
    # CTranslate2 (faster-whisper): its own kernels (softmax, layer norm, quantisation) ...
    "CT2_FORCE_CPU_ISA": "AVX2",
    # ... and its GEMM backend: by default MKL on GenuineIntel CPUs and oneDNN elsewhere, so the
    # same wheel ran different int8 GEMMs on Intel and AMD. oneDNN everywhere, capped below.
    "CT2_USE_MKL": "0",
    # oneDNN (in CTranslate2 and in torch): its AVX kernels, one step below the rest. Capped at AVX2, the
    # recogniser's encoder (oneDNN's brgemm convolutions and GEMMs) gave other bits on an Intel Sapphire
    # Rapids than on emulated Haswell and AMD CPUs, though every one reported the same AVX2 kernels; capped
    # at AVX the three gave the same words, times and probabilities (docs/reproducibility.md)
    "ONEDNN_MAX_CPU_ISA": "AVX",
    "DNNL_MAX_CPU_ISA": "AVX",
    # torch's ATen vectorised kernels
    "ATEN_CPU_CAPABILITY": "avx2",
    # MKL (linked into torch and CTranslate2; torch's float GEMM and exp/log): conditional numerical
    # reproducibility on the COMPATIBLE branch. Its AVX2 branch gave other bits for torch's GEMM
    # and exp on an (emulated) Intel Haswell than on an AMD Zen 4: MKL's per-vendor code paths;
    # COMPATIBLE gave the same bits on both (docs/reproducibility.md). No dispatch above AVX2.
    "MKL_CBWR": "COMPATIBLE",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    # numpy's own SIMD dispatch (numpy 2.x groups: X86_V3 = AVX2/FMA3, X86_V4 = AVX-512 SKX)
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR AVX512F AVX512_SKX AVX512_CLX AVX512_CNL",
    # OpenBLAS (numpy/scipy's, and the one OpenCV links): the Haswell kernels
    "OPENBLAS_CORETYPE": "Haswell",
    # OpenCV's dispatched code and its IPP
    # OPENCV_CPU_DISABLE is added by _opencv_disable(): only the AVX-512 features this CPU has
    "OPENCV_IPP": "AVX2",
    # Arrow (Parquet reading / writing, pyarrow compute)
    "ARROW_USER_SIMD_LEVEL": "AVX2",
    # numba's JIT (librosa): code for a Haswell, not the host
    "NUMBA_CPU_NAME": "haswell",
    "NUMBA_CPU_FEATURES": ("+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+cx8,+f16c,+fma,+fxsr,+lzcnt,+mmx,"
                           "+movbe,+pclmul,+popcnt,+sahf,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave"),
}

# torch CPU operators that no switch pins: torch sends them to MKL's vector math library (VML, called in
# its high-accuracy mode, not correctly rounded), whose last bit depends on the CPU vendor whatever
# MKL_CBWR says. Measured under the pin on an AMD Zen 4 against an emulated Intel Haswell
# (docs/reproducibility.md): sqrt (float32 and float64; 888 of 5000 float32 roots off the correctly
# rounded value on the AMD CPU, 792 others on the Intel one), pow with exponent 0.5 (sqrt), atan,
# asin, acos, tan; exp, log, tanh, erf, sigmoid, GELU, layer norm, softmax and 40 others were
# identical. gazelib's own torch code calls none of them (tests/test_cpu_paths.py records the calls of
# training, the image encoder, the sentence embedder and inference); numpy's sqrt is IEEE-exact.
VENDOR_DEPENDENT_TORCH_OPS = ("sqrt", "_foreach_sqrt", "atan", "asin", "acos", "tan")
VENDOR_DEPENDENT_POW_EXPONENTS = (0.5,)   # pow(x, 0.5) is sqrt


def vendor_dependent_torch_calls():
    """A context manager (a torch dispatch mode) that records every call of a
    :data:`VENDOR_DEPENDENT_TORCH_OPS` operator (and pow to an exponent in
    :data:`VENDOR_DEPENDENT_POW_EXPONENTS`) made while it is active: ``with ... as calls:`` gives
    the list of operator names, in call order."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.calls: list[str] = []

        def __enter__(self):
            super().__enter__()
            return self.calls

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__.rstrip("_")
            if name in VENDOR_DEPENDENT_TORCH_OPS or (
                    name == "pow" and len(args) > 1 and not hasattr(args[1], "shape")
                    and float(args[1]) in VENDOR_DEPENDENT_POW_EXPONENTS):
                self.calls.append(name)
            return func(*args, **(kwargs or {}))

    return Recorder()


# OpenCV's names of AVX-512 features -> the /proc/cpuinfo flag each needs. OpenCV warns about a
# disabled feature the CPU lacks, so only those present are listed.
OPENCV_AVX512 = {"AVX512F": "avx512f", "AVX512CD": "avx512cd", "AVX512BW": "avx512bw", "AVX512DQ": "avx512dq",
                 "AVX512VL": "avx512vl", "AVX512VNNI": "avx512_vnni", "AVX512IFMA": "avx512ifma",
                 "AVX512VBMI": "avx512vbmi", "AVX512VBMI2": "avx512_vbmi2", "AVX512BITALG": "avx512_bitalg",
                 "AVX512VPOPCNTDQ": "avx512_vpopcntdq", "AVX512-COMMON": "avx512cd", "AVX512-SKX": "avx512bw",
                 "AVX512-CLX": "avx512_vnni", "AVX512-CNL": "avx512vbmi", "AVX512-ICL": "avx512_vbmi2"}

# GLIBC_TUNABLES: hide AVX-512 from glibc's own dispatch (string functions, libm) to simulate an
# AVX2-only CPU. Not part of the pin: glibc's libm picks its FMA/AVX2 variants on every AVX2 CPU.
GLIBC_HIDE_AVX512 = ("glibc.cpu.hwcaps=-AVX512F,-AVX512CD,-AVX512BW,-AVX512DQ,-AVX512VL,-AVX512_VNNI,"
                     "-AVX512_BF16,-AVX512_IFMA,-AVX512_VBMI,-AVX512_VBMI2,-AVX512_BITALG,-AVX512_VPOPCNTDQ")

# FFmpeg (PyAV's libavutil) AV_CPU_FLAG_* bits above AVX2 (libavutil/cpu.h)
AV_CPU_FLAG_AVX512 = 0x100000
AV_CPU_FLAG_AVX512ICL = 0x200000
CV_CPU_AVX_512F = 13  # OpenCV's cv::CPU_AVX_512F (not exported to Python)


@dataclass
class Pinned:
    """What :func:`pin` did in this process."""

    mode: str
    set: dict[str, str] = field(default_factory=dict)       # variables this call set
    kept: dict[str, str] = field(default_factory=dict)      # variables already set by the user, left as they were
    late: list[str] = field(default_factory=list)           # libraries already imported before the pin
    ffmpeg_flags: int | None = None                         # the flags forced on libavutil, None if untouched


_STATE: Pinned | None = None
_LATE_MODULES = ("numpy", "torch", "ctranslate2", "cv2", "numba", "onnxruntime", "scipy")


def mode() -> str:
    """The mode asked for by ``GAZELIB_CPU_ISA`` (default ``avx2``)."""
    value = os.environ.get(MODE_ENV, DEFAULT_MODE).strip().lower() or DEFAULT_MODE
    if value not in MODES:
        raise ValueError(f"{MODE_ENV}={value!r}: must be one of {MODES}")
    return value


def cpu_flags() -> set[str]:
    """This CPU's feature flags as Linux reports them (empty where /proc/cpuinfo is missing)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _opencv_disable(flags: set[str]) -> str | None:
    """OPENCV_CPU_DISABLE for this CPU: its AVX-512 features (None when it has none, or /proc/cpuinfo
    is missing: then every AVX-512 name, and OpenCV warns about the ones it lacks)."""
    return ",".join(n for n, flag in OPENCV_AVX512.items() if not flags or flag in flags) or None


def _unsupported() -> str | None:
    """Why this machine cannot run the pinned path, or None when it can."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return f"not an x86-64 CPU ({machine})"
    flags = cpu_flags()
    if flags and not {"avx2", "fma"} <= flags:
        return "this x86-64 CPU has no AVX2/FMA"
    return None


def _avutil_path() -> Path | None:
    """PyAV's bundled libavutil, found without importing av."""
    spec = importlib.util.find_spec("av")
    if spec is None or not spec.submodule_search_locations:
        return None
    libs = Path(list(spec.submodule_search_locations)[0]).parent / "av.libs"
    found = sorted(libs.glob("libavutil*.so*"))
    return found[0] if found else None


def _force_ffmpeg_flags() -> int | None:
    """Clear FFmpeg's AVX-512 flags (``av_force_cpu_flags``); the library is loaded here, by its
    soname, so PyAV's later load reuses this very instance."""
    path = _avutil_path()
    if path is None:
        return None
    lib = ctypes.CDLL(str(path))
    flags = int(lib.av_get_cpu_flags()) & ~(AV_CPU_FLAG_AVX512 | AV_CPU_FLAG_AVX512ICL)
    lib.av_force_cpu_flags(ctypes.c_int(flags))
    return flags


def pin() -> Pinned:
    """Set every library's instruction-set switch for the mode (idempotent; the first call wins).

    Must run before those libraries are imported; a library that was imported earlier is listed in
    ``late`` and logged, since its switch may no longer take effect."""
    global _STATE
    if _STATE is not None:
        return _STATE
    state = Pinned(mode=mode())
    state.late = [m for m in _LATE_MODULES if m in sys.modules]
    unsupported = _unsupported()
    if state.mode == "avx2" and unsupported:
        # forcing AVX2 kernels here would fail (CTranslate2 refuses) or mean nothing (another arch)
        log.warning("CPU path not pinned: %s; outputs may differ from those of AVX2 machines", unsupported)
        state.mode = "native"
    if state.mode == "avx2":
        wanted = dict(AVX2_SWITCHES)
        opencv = _opencv_disable(cpu_flags())
        if opencv:
            wanted["OPENCV_CPU_DISABLE"] = opencv
        hide = os.environ.get(HIDE_ENV, "") not in ("", "0")
        if hide:
            wanted["GLIBC_TUNABLES"] = GLIBC_HIDE_AVX512
        for key, value in wanted.items():
            if key in os.environ and os.environ[key] != value:
                state.kept[key] = os.environ[key]
            else:
                os.environ[key] = value
                state.set[key] = value
        if hide:
            state.ffmpeg_flags = _force_ffmpeg_flags()
    _STATE = state
    if state.late:
        log.warning("CPU path pinned after %s was imported: its switch may not apply (import gazelib first)",
                    ", ".join(state.late))
    for key, value in state.kept.items():
        log.info("CPU path: %s=%s is set in the environment and kept (the pin would set %s)",
                 key, value, wanted[key])
    return state


def child_env() -> dict[str, str]:
    """The variables that give a child process (a Ray actor on another node, a torchrun rank) this
    process's CPU path, for launchers that do not pass the whole environment on."""
    state = pin()
    keys = {MODE_ENV, HIDE_ENV, "OPENCV_CPU_DISABLE", "GLIBC_TUNABLES", *AVX2_SWITCHES}
    env = {k: os.environ[k] for k in sorted(keys) if k in os.environ}
    env[MODE_ENV] = state.mode
    return env


def describe() -> dict:
    """What each library actually runs in this process (imports the libraries): for logs and tests."""
    out: dict = {"mode": _STATE.mode if _STATE else mode(), "kept": dict(_STATE.kept) if _STATE else {}}
    try:
        import torch

        out["torch_capability"] = torch.backends.cpu.get_cpu_capability()
    except ImportError:  # pragma: no cover - torch is a requirement
        pass
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

        out["numpy_dispatch"] = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    except ImportError:  # pragma: no cover - numpy < 2
        pass
    try:
        from threadpoolctl import threadpool_info

        out["blas"] = sorted({f"{d.get('internal_api')}:{d.get('architecture')}" for d in threadpool_info()
                              if d.get("user_api") == "blas"})
    except ImportError:  # pragma: no cover
        pass
    try:
        import cv2

        out["opencv_avx512"] = bool(cv2.checkHardwareSupport(CV_CPU_AVX_512F))
    except ImportError:  # pragma: no cover
        pass
    try:
        from numba.core import config as numba_config

        out["numba_cpu"] = numba_config.CPU_NAME or "host"
    except ImportError:  # pragma: no cover
        pass
    try:
        import pyarrow

        out["arrow_simd"] = pyarrow.runtime_info().simd_level
    except ImportError:  # pragma: no cover
        pass
    return out
