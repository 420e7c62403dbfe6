"""What a stage runs: the gazelib files in its import closure, the installed packages those files
import (and what those need), and the model weight files it loads.

One registry (:data:`STAGES`) serves the per-video caches of the pipeline's stages and of
``gazelib predict`` (:func:`stage_code`), and the same :func:`closure` checks that ``dvc.yaml``
names exactly the code each stage script runs (tests/test_dvc_deps.py). So whatever makes DVC
rerun a stage (an edited module anywhere in its closure) also makes every video of that stage
stale, and so do things DVC cannot see: a package upgrade, a different weight file behind the
same model name.

- code: the sha256 of every file in the import closure of the stage's modules (module- and
  function-level imports, and ``"gazelib.x.y"`` strings, the names registries import by).
- packages: the installed distributions the closure imports, with every requirement they
  declare (extras excluded), transitively, by version; an import that no installed distribution
  provides (an optional backend) is recorded as absent, so installing it later is a change too.
  Over-broad on purpose: an upgrade of a package the outputs do not depend on recomputes them,
  one they do depend on is never missed. The Python version is recorded as ``python``.
- weights: the sha256 of every weight file the stage's params make it load (a model folder:
  every file in it), each file hashed once per process (cached by path, mtime and size).

Paths in the results are relative (package files from the folder holding ``gazelib/``, files
of a model folder from that folder), so keys are the same in any checkout directory.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import logging
import platform
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

if TYPE_CHECKING:
    from importlib.metadata import Distribution

log = logging.getLogger(__name__)

PACKAGE = __name__.split(".")[0]             # the import name, "gazelib"
ROOT = Path(__file__).resolve().parents[2]   # the folder holding the package (a checkout's root)


def hash_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


_SHA: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, computed once per process for a given path, mtime and size."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_mtime_ns, st.st_size)
    if key not in _SHA:
        _SHA[key] = hash_file(p)
    return _SHA[key]


# ---------------------------------------------------------------- import closure
def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The file of a ``gazelib`` module under ``root`` (None for any other package)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root.joinpath(*parts)
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.exists():
            return cand
    return None


@lru_cache(maxsize=None)
def _parsed_imports(path: str, mtime_ns: int, size: int) -> frozenset[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(Path(path).read_text(), filename=path)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(PACKAGE + "."):
            names.add(node.value.split(":")[0])
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)  # `from gazelib import io`
    return frozenset(names)


def imports(path: Path) -> frozenset[str]:
    """Modules ``path`` imports (anywhere in it), plus ``"gazelib.x.y"`` string constants: the names
    a registry hands to ``importlib.import_module`` (importer formats, CLI verbs)."""
    st = path.stat()
    return _parsed_imports(str(path), st.st_mtime_ns, st.st_size)


def closure_files(scripts: Iterable[Path], root: Path = ROOT) -> set[Path]:
    """Every gazelib file the ``scripts`` import, directly or not (the scripts themselves when
    they are gazelib files)."""
    seen: set[Path] = {s for s in scripts if s.resolve().is_relative_to(root.resolve() / PACKAGE)}
    todo = list(scripts)
    while todo:
        f = todo.pop()
        for name in imports(f):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                mf = module_file(".".join(parts[:i]), root)
                if mf is not None and mf not in seen:
                    seen.add(mf)
                    todo.append(mf)
    return seen


def closure(script: Path, root: Path = ROOT) -> set[str]:
    """Root-relative paths of every gazelib file ``script`` imports, directly or not (what
    ``dvc.yaml`` must list as the deps of the stage running ``script``)."""
    return {p.relative_to(root).as_posix() for p in closure_files([script], root) if p != script}


def closure_folders(files: Iterable[str]) -> set[str]:
    """The DVC code deps covering root-relative package ``files``: the package folder of each
    (``gazelib/eval`` for ``gazelib/eval/compare.py``), or the file itself at the package's top level
    (``gazelib/metrics.py``)."""
    out = set()
    for f in files:
        parts = f.split("/")
        out.add(f if len(parts) == 2 else "/".join(parts[:2]))
    return out


# ---------------------------------------------------------------- installed packages
def third_party_imports(files: Iterable[Path]) -> set[str]:
    """Top-level names of the non-stdlib, non-gazelib modules ``files`` import."""
    tops = {n.split(".")[0] for f in files for n in imports(f)}
    return {t for t in tops if t != PACKAGE and t not in sys.stdlib_module_names and t != "__future__"}


@lru_cache(maxsize=1)
def _distributions() -> tuple[Mapping[str, list[str]], dict[str, Distribution]]:
    """(top-level import name -> distribution names, canonical name -> distribution) of this
    environment, read once per process."""
    from importlib.metadata import distributions, packages_distributions

    from packaging.utils import canonicalize_name

    by_name = {}
    for d in distributions():
        name = d.metadata["Name"]
        if name:
            by_name.setdefault(canonicalize_name(name), d)
    return packages_distributions(), by_name


def package_version(name: str) -> str | None:
    """Installed version of a distribution (canonical name), None when not installed."""
    d = _distributions()[1].get(name)
    return None if d is None else d.version


@lru_cache(maxsize=None)
def _requires(name: str) -> tuple[str, ...]:
    """Canonical names of what distribution ``name`` requires in this environment (markers
    evaluated, extras not taken)."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    d = _distributions()[1].get(name)
    out = []
    for spec in (d.requires or []) if d is not None else []:
        try:
            req = Requirement(spec)
        except InvalidRequirement:
            log.warning("%s declares an unreadable requirement %r: not followed for cache keys", name, spec)
            continue
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.append(canonicalize_name(req.name))
    return tuple(sorted(set(out)))


def package_versions(import_names: Iterable[str]) -> dict[str, str | None]:
    """Version of every distribution providing ``import_names``, and of all they require,
    transitively; ``import:<name>`` -> None for an import no installed distribution provides."""
    from packaging.utils import canonicalize_name

    top_to_dist = _distributions()[0]
    out: dict[str, str | None] = {}
    todo = []
    for top in sorted(set(import_names)):
        dists = top_to_dist.get(top)
        if not dists:
            out[f"import:{top}"] = None
        todo += [canonicalize_name(d) for d in dists or []]
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out[name] = package_version(name)
        todo += [r for r in _requires(name) if r not in out]
    out["python"] = f"{platform.python_implementation()} {platform.python_version()}"
    return dict(sorted(out.items()))


# ---------------------------------------------------------------- weight files
def weight_digests(label: str, path: str | Path) -> dict[str, str]:
    """sha256 of a weight file (``{label: sha}``) or of every file in a model folder
    (``{label/relative/path: sha}``, hidden files and folders left out)."""
    p = Path(path)
    if p.is_file():
        return {label: file_sha256(p)}
    if not p.is_dir():
        raise FileNotFoundError(f"{label}: weight file or model folder {p} not found")
    out = {}
    for f in sorted(p.rglob("*")):
        rel = f.relative_to(p)
        if f.is_file() and not any(part.startswith(".") for part in rel.parts):
            out[f"{label}/{rel.as_posix()}"] = file_sha256(f)
    if not out:
        raise FileNotFoundError(f"{label}: model folder {p} holds no files")
    return out


Use = Callable[[str, str], Callable]


def _silero_vad() -> Path:
    """The file ``silero_vad.load_silero_vad(onnx=True)`` loads."""
    from importlib.resources import files

    return Path(str(files("silero_vad.data").joinpath("silero_vad.onnx")))


def _audio_weights(cfg: dict, use: Use) -> dict[str, Path]:
    out = {"silero_vad": _silero_vad()}
    if cfg["speech_model"] != "none":
        out["audio.speech_model"] = Path(cfg["speech_model"])
    return out


def _text_weights(cfg: dict, use: Use, asr: bool | None = None) -> dict[str, Path]:
    """The embedder, and the recogniser when the text sources include ASR (``asr`` forces it:
    predict always transcribes)."""
    out = {"text.embedder": use("features/text.py", "resolve_text_model")(cfg["embedder"])}
    transcribes = "asr" in cfg["sources"] if asr is None else asr
    if transcribes:
        out["text.asr_model"] = use("features/transcript.py", "resolve_whisper_model")(cfg["asr_model"])
        if cfg["lookahead"] == "none":  # causal ASR cuts the audio into chunks with silero VAD
            out["silero_vad"] = _silero_vad()
        if cfg["asr_backend"] == "whisperx" and cfg["whisperx_align_model"]:
            out["text.whisperx_align_model"] = Path(cfg["whisperx_align_model"])
    return out


def _predict_text_weights(cfg: dict, use: Use) -> dict[str, Path]:
    return _text_weights(cfg, use, asr=True)


def _visual_weights(cfg: dict, use: Use) -> dict[str, Path]:
    out = {}
    detector = cfg["face_detector"]
    if detector == "centerface":
        out["visual.face_detector"] = use("features/faces.py", "centerface_weights")()
    elif detector == "haar":
        import cv2

        out["visual.face_detector"] = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    image_model = cfg["image_model"]
    if image_model == "efficientnet-lite0":
        out["visual.image_model"] = use("features/image_models.py", "default_lite0_weights")()
    elif image_model.startswith("clip:"):
        out["visual.image_model"] = Path(image_model[5:])
    return out


@dataclass(frozen=True)
class Stage:
    """The code behind a per-video cache: ``roots`` (package files, with their import closure),
    ``files`` (package files without theirs: predict's thin wrappers around the stage code) and
    the weight files the params make it load."""

    roots: tuple[str, ...]
    files: tuple[str, ...] = ()
    weights: Callable[[dict, Use], dict[str, Path]] | None = None


STAGES: dict[str, Stage] = {
    "extract_audio": Stage(("features/audio.py",), weights=_audio_weights),
    "extract_text": Stage(("features/text.py",), weights=_text_weights),
    "extract_visual": Stage(("features/visual.py",), weights=_visual_weights),
    "align": Stage(("data/align.py",)),
    "aoi": Stage(("aoi/run.py",)),
    "predict_audio": Stage(("features/audio.py",), ("serve/extract.py",), _audio_weights),
    "predict_text": Stage(("features/text.py",), ("serve/extract.py",), _predict_text_weights),
    "predict_visual": Stage(("features/visual.py",), ("serve/extract.py",), _visual_weights),
    "predict_align": Stage(("data/align.py", "gaze/ingest.py"), ("serve/extract.py",)),
    "predict": Stage(("serve/predict.py",)),   # the model checkpoint is hashed by predict itself
}


@dataclass
class StageCode:
    """What a stage runs: code (file -> sha256), packages (name -> version), weights (label -> sha256)."""

    stage: str
    code: dict[str, str] = field(default_factory=dict)
    packages: dict[str, str | None] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"code": self.code, "packages": self.packages, "weights": self.weights}

    @property
    def digest(self) -> str:
        import json

        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()

    def changes(self, before: dict | None) -> list[str]:
        """What differs from an earlier :meth:`as_dict` (a cache record's), in words."""
        if not before:
            return ["no record of the code it was computed with"]
        out = []
        for part, now in self.as_dict().items():
            old = before.get(part, {})
            for k in sorted(set(old) | set(now)):
                if old.get(k) != now.get(k):
                    if part == "packages":
                        out.append(f"package {k} {old.get(k, 'absent')} -> {now.get(k, 'absent')}")
                    else:
                        what = "added" if k not in old else "removed" if k not in now else "changed"
                        out.append(f"{'file' if part == 'code' else 'weights'} {k} {what}")
        return out


def stage_code(*, stage: str, cfg: dict | None = None, root: Path = ROOT) -> StageCode:
    """The code, packages and weight files behind ``stage``'s outputs (a :data:`STAGES` name),
    with ``cfg`` the stage's params (they choose the models). ``root`` holds the package."""
    if stage not in STAGES:
        raise KeyError(f"no stage {stage!r} in the cache-key registry (known: {', '.join(sorted(STAGES))})")
    entry = STAGES[stage]
    pkg = root / PACKAGE
    missing = [f for f in entry.roots + entry.files if not (pkg / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{stage}: registry names package files that do not exist: {missing}")
    files = closure_files([pkg / f for f in entry.roots], root) | {pkg / f for f in entry.files}
    rel = {p.relative_to(root).as_posix() for p in files}

    def use(path: str, name: str) -> Callable:
        # the registry runs only code inside the stage's own closure, so it adds nothing DVC misses
        if f"{PACKAGE}/{path}" not in rel:
            raise RuntimeError(f"{stage}: weight resolver {path}:{name} is outside the stage's code")
        return getattr(importlib.import_module(f"{PACKAGE}.{path[:-3].replace('/', '.')}"), name)

    weights: dict[str, str] = {}
    for label, path in (entry.weights(cfg or {}, use) if entry.weights else {}).items():
        weights.update(weight_digests(label, path))
    return StageCode(stage=stage, code={p.relative_to(root).as_posix(): file_sha256(p) for p in sorted(files)},
                     packages=package_versions(third_party_imports(files)), weights=weights)

