"""Same inputs + params give the same bytes in any directory, and no artifact holds an absolute path."""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from gazelib.demo.corpus import run_demo
from gazelib.gaze.ingest import run_ingest
from gazelib.core.layout import load_manifest
from tests.conftest import tiny_params


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def files_mentioning(root: Path, needle: str) -> list[str]:
    """Files under ``root`` whose text, Parquet cells / metadata or NPZ string arrays contain ``needle``."""
    hits = []
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        if p.suffix == ".parquet":
            t = pq.read_table(p)
            blobs = [json.dumps({k.decode(): v.decode(errors="replace") for k, v in (t.schema.metadata or {}).items()})]
            blobs += [str(v) for col in t.columns if str(col.type) in ("string", "large_string") for v in col.to_pylist()]
        elif p.suffix == ".npz":
            with zipfile.ZipFile(p) as z, np.load(p, allow_pickle=False) as a:
                blobs = [str(a[k].tolist()) for k in a.files if a[k].dtype.kind in "US"] + z.namelist()
        else:
            blobs = [p.read_bytes().decode("utf-8", errors="replace")]
        if any(needle in b for b in blobs):
            hits.append(str(p.relative_to(root)))
    return hits


@pytest.mark.slow  # generates and ingests the demo corpus twice
def test_demo_and_ingest_are_byte_identical_in_two_directories(tmp_path, base_params):
    params = tiny_params(base_params, n_videos=3, duration_s=4.0)
    roots = [tmp_path / "a", tmp_path / "elsewhere" / "deeper" / "b"]
    for root in roots:
        run_demo(params=params, root=root)
        run_ingest(params=params, root=root)
    da, db = (_digest(r / "data") for r in roots)
    assert da == db
    assert any(k.startswith("interim/") for k in da) and any(k.endswith(".mp4") for k in da)
    for root in roots:
        assert files_mentioning(root / "data", str(tmp_path)) == []
    # the manifest stores corpus-relative paths and resolves them on load
    m = load_manifest(roots[1])
    assert all(Path(p).is_file() for p in m["video_path"])
    raw = pq.read_table(roots[1] / "data/interim/manifest.parquet").to_pandas()
    assert all(p.startswith("videos/") for p in raw["video_path"])
