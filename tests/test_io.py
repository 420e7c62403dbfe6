"""Artifacts: atomic writes, byte-identical NPZ for identical data, kinds in Parquet metadata."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gazelib.core.io import atomic_path, feature_meta, read_npz, read_table, write_npz, write_table


def test_npz_round_trip_and_byte_identical(tmp_path):
    arrays = {"t": np.arange(5.0), "grid": np.random.default_rng(0).normal(size=(5, 2, 3, 4)).astype(np.float32),
              "names": np.array(["a", "bc"])}
    write_npz(tmp_path / "a.npz", **arrays)
    write_npz(tmp_path / "b.npz", **arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    back = read_npz(tmp_path / "a.npz")
    assert set(back) == set(arrays) and all(np.array_equal(back[k], arrays[k]) for k in arrays)


def test_interrupted_write_leaves_no_file(tmp_path):
    target = tmp_path / "out.parquet"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_table_metadata_carries_kinds(tmp_path):
    meta = feature_meta(video_id="v", modality="audio", kinds={"rms": "continuous"}, backend="x", params={"a": 1})
    write_table(tmp_path / "v.parquet", pd.DataFrame({"t": [0.0], "rms": [1.0]}), meta=meta)
    df, m = read_table(tmp_path / "v.parquet")
    assert m["kinds"] == {"rms": "continuous"} and m["params"] == {"a": 1} and m["available"]
    with pytest.raises(ValueError, match="unknown column kinds"):
        feature_meta(video_id="v", modality="audio", kinds={"rms": "loud"}, backend="x", params={})


def test_streamed_arrays_write_the_same_bytes_as_in_memory_ones(tmp_path):
    from gazelib.core.io import StreamedArray

    a = np.random.default_rng(3).normal(size=(700, 3, 2)).astype(np.float32)
    stream = StreamedArray(shape=a.shape, dtype=np.float32, chunks=lambda: (a[i:i + 256] for i in range(0, 700, 256)))
    write_npz(tmp_path / "mem.npz", x=a)
    write_npz(tmp_path / "stream.npz", x=stream)
    assert (tmp_path / "mem.npz").read_bytes() == (tmp_path / "stream.npz").read_bytes()
    assert np.array_equal(read_npz(tmp_path / "stream.npz")["x"], a)
    short = StreamedArray(shape=(800, 3, 2), dtype=np.float32, chunks=lambda: iter([a]))
    with pytest.raises(ValueError, match="gave 700 rows, declared 800"):
        write_npz(tmp_path / "bad.npz", x=short)
    assert not (tmp_path / "bad.npz").exists()


def test_uncompressed_members_are_read_by_rows_and_still_load_with_numpy(tmp_path):
    from gazelib.core.io import NpzRows, StreamedArray

    rng = np.random.default_rng(1)
    grid = rng.normal(size=(300, 2, 3, 4)).astype(np.float32)
    arrays = {"t": np.arange(300.0), "grid": grid, "feat": rng.normal(size=(300, 7)).astype(np.float32),
              "names": np.array(["a", "bc"])}
    write_npz(tmp_path / "a.npz", uncompressed=("grid", "feat"), **arrays)
    write_npz(tmp_path / "b.npz", uncompressed=("grid", "feat"), **{**arrays, "grid": StreamedArray(
        shape=grid.shape, dtype=np.float32, chunks=lambda: (grid[i:i + 64] for i in range(0, 300, 64)))})
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    back = np.load(tmp_path / "a.npz")
    assert all(np.array_equal(back[k], v) for k, v in arrays.items())
    rows = NpzRows(tmp_path / "a.npz")
    assert rows.names == ["t", "grid", "feat", "names"] and rows.compressed == {"t", "names"}
    assert "grid" in rows and "t" not in rows and rows.shapes["grid"] == grid.shape
    for a, b in ((0, 1), (17, 90), (299, 300), (250, 400), (5, 5)):
        got = rows.rows("grid", a, b)
        np.testing.assert_array_equal(got, grid[a:b])
        assert got.flags.writeable and got.flags.owndata
    np.testing.assert_array_equal(rows.rows("feat", 3, 11), arrays["feat"][3:11])
    with pytest.raises(KeyError, match=r"a.npz: array 't' is stored compressed"):
        rows.rows("t", 0, 3)
    with pytest.raises(KeyError, match="not among the arrays"):
        write_npz(tmp_path / "c.npz", uncompressed=("nope",), t=np.arange(3.0))
    # a stored member is the raw array: the file grows by what deflate saved, no more
    write_npz(tmp_path / "d.npz", **arrays)
    assert (tmp_path / "d.npz").stat().st_size < (tmp_path / "a.npz").stat().st_size
