"""Atomic file writes and typed feature artifacts (Parquet with column kinds, NPZ).

Every writer goes through a temp file in the destination folder followed by
``os.replace``, so an interrupted run never leaves a half-written file behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

KINDS = ("continuous", "binary", "discrete", "count", "embedding", "grid")
META_KEY = b"gazelib"
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = True) -> None:
    """Atomically, keys sorted (``sort_keys=False``: in the order given, for files whose order a
    reader sees, e.g. the headline metrics `dvc exp show` lists in file order)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=sort_keys, default=_json_default) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


@dataclass
class StreamedArray:
    """An array too long to hold: its shape, dtype, and a function giving its rows in chunks."""

    shape: tuple
    dtype: np.dtype
    chunks: Callable[[], Iterator[np.ndarray]]

    def materialize(self) -> np.ndarray:
        """The whole array, filled chunk by chunk into one allocation (no list of parts)."""
        out = np.empty(self.shape, self.dtype)
        i = 0
        for chunk in self.chunks():
            out[i:i + len(chunk)] = chunk
            i += len(chunk)
        if i != self.shape[0]:
            raise ValueError(f"streamed array gave {i} rows, declared {self.shape[0]}")
        return out


def _write_streamed(fh, arr: StreamedArray) -> None:
    # the same header np.save writes for an equal in-memory array, then the rows chunk by chunk
    np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(arr.dtype)),
                                              "fortran_order": False, "shape": tuple(arr.shape)})
    n = 0
    for chunk in arr.chunks():
        fh.write(np.ascontiguousarray(chunk, dtype=arr.dtype).tobytes())
        n += len(chunk)
    if n != arr.shape[0]:
        raise ValueError(f"streamed array gave {n} rows, declared {arr.shape[0]}")


def write_npz(path: str | os.PathLike, *, uncompressed: Collection[str] = (),
              **arrays: np.ndarray | StreamedArray) -> None:
    """NPZ readable by ``np.load``, byte-identical for identical arrays.

    Members are deflated, except those named in ``uncompressed``: these are stored as they are,
    so :class:`NpzRows` can read any block of their rows without loading or inflating the rest.
    ``np.savez_compressed`` stamps the current time into each zip entry, so equal data would
    give different bytes and DVC would rerun every downstream stage; entries here carry a
    fixed timestamp.
    """
    import zipfile

    unknown = sorted(set(uncompressed) - set(arrays))
    if unknown:
        raise KeyError(f"{path}: uncompressed names {unknown} are not among the arrays {sorted(arrays)}")
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, arr in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_STORED if name in uncompressed else zipfile.ZIP_DEFLATED
                with zf.open(info, "w", force_zip64=True) as fh:
                    if isinstance(arr, StreamedArray):
                        _write_streamed(fh, arr)
                    else:
                        np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)


def read_npz(path: str | os.PathLike, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Load the arrays of an NPZ eagerly (all, or only ``keys``); pickled objects are refused."""
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in keys or () if k not in data.files]
        if missing:
            raise KeyError(f"{path}: no array {missing} (has {data.files}); rerun the stage that wrote it")
        return {k: data[k] for k in (keys or data.files)}


def npz_keys(path: str | os.PathLike) -> list[str]:
    with np.load(path, allow_pickle=False) as data:
        return list(data.files)


def iter_npz_rows(path: str | os.PathLike, key: str, *, chunk_rows: int = 256) -> tuple[tuple, Iterator[np.ndarray]]:
    """``(shape, rows)`` of one NPZ array read row block by row block from the zip stream, so an
    array longer than memory is never loaded whole (C order only)."""
    import zipfile

    with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as fh:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(fh)
    if fortran:
        raise ValueError(f"{path}: array {key} is stored in Fortran order; cannot stream its rows")
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize

    def rows() -> Iterator[np.ndarray]:
        with zipfile.ZipFile(path) as zf, zf.open(f"{key}.npy") as fh:
            np.lib.format.read_magic(fh)
            read(fh)
            left = shape[0]
            while left:
                n = min(chunk_rows, left)
                buf = fh.read(n * row_bytes)
                if len(buf) != n * row_bytes:
                    raise ValueError(f"{path}: array {key} ends early")
                yield np.frombuffer(buf, dtype=dtype).reshape((n,) + tuple(shape[1:]))
                left -= n

    return tuple(shape), rows()


class NpzRows:
    """Random access to row blocks of the arrays an NPZ stores uncompressed (see :func:`write_npz`).

    The zip directory and each member's ``.npy`` header are read once; :meth:`rows` then reads
    exactly the bytes of rows ``[start, stop)`` at their file offset, so the memory used follows
    the block, not the array (no memory map either: mapped pages would count as resident).
    Deflated members are listed in :attr:`compressed`; :meth:`rows` refuses them by name.
    """

    def __init__(self, path: str | os.PathLike):
        import struct
        import zipfile

        self.path = Path(path)
        self.shapes: dict[str, tuple] = {}
        self.dtypes: dict[str, np.dtype] = {}
        self._offsets: dict[str, int] = {}
        self.compressed: set[str] = set()
        self.names: list[str] = []   # every array of the file, in its order
        with zipfile.ZipFile(self.path) as zf, open(self.path, "rb") as fh:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                key = info.filename[:-4]
                self.names.append(key)
                if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
                    self.compressed.add(key)
                    continue
                fh.seek(info.header_offset)
                local = fh.read(30)
                if local[:4] != b"PK\x03\x04":
                    raise ValueError(f"{self.path}: member {info.filename} has no local zip header; file damaged?")
                name_len, extra_len = struct.unpack("<HH", local[26:30])
                fh.seek(info.header_offset + 30 + name_len + extra_len)
                version = np.lib.format.read_magic(fh)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                shape, fortran, dtype = read(fh)
                if fortran or dtype.hasobject or not shape:
                    self.compressed.add(key)  # not row-addressable: treated like a deflated member
                    continue
                self.shapes[key], self.dtypes[key], self._offsets[key] = tuple(shape), dtype, fh.tell()

    def __contains__(self, key: str) -> bool:
        return key in self._offsets

    def rows(self, key: str, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` of array ``key`` (clipped to its length), a fresh writable array."""
        if key not in self._offsets:
            why = "is stored compressed (rewrite it with uncompressed=)" if key in self.compressed else "is not in it"
            raise KeyError(f"{self.path}: array {key!r} {why}; cannot read its rows on demand")
        shape, dtype = self.shapes[key], self.dtypes[key]
        start, stop = max(0, int(start)), min(shape[0], int(stop))
        out = np.empty((max(0, stop - start),) + shape[1:], dtype)
        if out.size:
            row_bytes = out.nbytes // out.shape[0]
            with open(self.path, "rb") as fh:
                fh.seek(self._offsets[key] + start * row_bytes)
                got = fh.readinto(out.reshape(-1).view(np.uint8))
            if got != out.nbytes:
                raise ValueError(f"{self.path}: array {key!r} ends early (rows {start}:{stop} of {shape[0]})")
        return out


def write_table(path: str | os.PathLike, df: pd.DataFrame, meta: dict | None = None) -> None:
    """Write a DataFrame as Parquet, with ``meta`` (JSON) in the schema metadata."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    if meta is not None:
        merged = dict(table.schema.metadata or {})
        merged[META_KEY] = json.dumps(meta, sort_keys=True, default=_json_default).encode()
        table = table.replace_schema_metadata(merged)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_table(path: str | os.PathLike) -> tuple[pd.DataFrame, dict]:
    """Return ``(frame, meta)`` for a Parquet file written by :func:`write_table`."""
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(META_KEY)
    meta = json.loads(raw) if raw else {}
    return table.to_pandas(), meta


def feature_meta(*, video_id: str, modality: str, kinds: dict[str, str], backend: str,
                 params: dict, available: bool = True, models: dict | None = None,
                 extra: dict | None = None) -> dict:
    """Metadata every feature artifact carries (contract: kinds, backend, model, params)."""
    bad = {c: k for c, k in kinds.items() if k not in KINDS}
    if bad:
        raise ValueError(f"{video_id}: unknown column kinds {bad}; allowed {KINDS}")
    from gazelib import __version__

    return {
        "video_id": video_id,
        "modality": modality,
        "kinds": kinds,
        "backend": backend,
        "models": models or {},
        "params": params,
        "available": bool(available),
        "gazelib_version": __version__,
        **(extra or {}),
    }
