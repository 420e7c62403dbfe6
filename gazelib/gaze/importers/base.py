"""What every format reader returns, and the helpers they share.

A reader turns one vendor file into one or more :class:`Recording` objects: sample times on
the tracker's own clock (seconds from the first sample), gaze per eye in the space the vendor
writes it (display pixels, display-normalised, scene-camera pixels or already video-normalised),
the messages/events on the same clock, and whatever the file says about the display.
Clock sync (:mod:`gazelib.gaze.importers.sync`) and geometry (:mod:`gazelib.gaze.geometry`)
then turn a recording into per-video gaze files.
"""
from __future__ import annotations

import logging
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

if TYPE_CHECKING:  # annotations only: pymovements/polars load on use
    import polars as pl

log = logging.getLogger(__name__)

SPACES = ("display_px", "display_norm", "scene_px", "video_norm")
EYES = ("mean", "left", "right")
TRUE_WORDS = ("1", "1.0", "true", "valid", "yes", "y", "t")
FALSE_WORDS = ("0", "0.0", "false", "invalid", "no", "n", "f")


class ImportFormatError(ValueError):
    """A vendor file or import setting that cannot be used; the message names the file and line."""


@dataclass
class Message:
    """A message/event on the recording's clock (seconds from its first sample)."""

    t: float
    text: str
    line: int = 0          # 1-based line in the source file, 0 when unknown
    file: str = ""         # the file it came from when not the recording's own (e.g. events.csv)


@dataclass
class Recording:
    """One continuous recording of one viewer, as read from a vendor file.

    ``t`` is in seconds from ``clock_origin`` (the first sample's native timestamp); a native
    timestamp ``n`` (as written in the file, e.g. EyeLink ms, Tobii µs, Neon ns) is
    ``(n - clock_origin) / native_per_s`` seconds. ``eyes`` maps ``left``/``right``/``both``
    (the vendor's own binocular average) to ``(x, y)`` arrays in ``space`` with NaN where the
    sample is missing.
    """

    path: Path
    recording_id: str
    viewer_id: str
    t: np.ndarray
    eyes: dict[str, tuple[np.ndarray, np.ndarray]]
    space: str
    native_per_s: float
    clock_origin: float
    messages: list[Message] = field(default_factory=list)
    display_px: tuple[int, int] | None = None
    sample_rate: float | None = None
    screen_cm: tuple[float, float] | None = None
    distance_cm: float | None = None
    media_rect: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None  # per sample x, y, w, h
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ValueError(f"{self.path}: unknown gaze space {self.space!r}; expected one of {SPACES}")
        n = len(self.t)
        for eye, (x, y) in self.eyes.items():
            if len(x) != n or len(y) != n:
                raise ValueError(f"{self.path}: eye {eye!r} has {len(x)} samples, time has {n}")

    def native_to_s(self, native: float) -> float:
        """A timestamp as written in the file -> seconds on this recording's clock."""
        return (float(native) - float(self.clock_origin)) / self.native_per_s


@dataclass
class Gaze:
    """One recording's gaze after the eyes are combined: ``x, y`` in the recording's space."""

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    valid: np.ndarray


def combine_eyes(*, rec: Recording, eye: str) -> Gaze:
    """Pick one eye, or average the valid eyes (one valid eye is used alone)."""
    if eye not in EYES:
        raise ImportFormatError(f"{rec.path}: eye must be one of {EYES}, got {eye!r}")
    if eye in ("left", "right"):
        if eye not in rec.eyes:
            raise ImportFormatError(f"{rec.path}: eye {eye!r} asked for, but the file has "
                                    f"{sorted(rec.eyes)} (set eye: mean or the recorded eye)")
        x, y = rec.eyes[eye]
    elif "left" in rec.eyes and "right" in rec.eyes:
        xs = np.stack([rec.eyes["left"][0], rec.eyes["right"][0]])
        ys = np.stack([rec.eyes["left"][1], rec.eyes["right"][1]])
        ok = np.isfinite(xs) & np.isfinite(ys)
        n = ok.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            x = np.where(ok, xs, 0.0).sum(axis=0) / n
            y = np.where(ok, ys, 0.0).sum(axis=0) / n
        x[n == 0] = np.nan
        y[n == 0] = np.nan
    else:
        key = "both" if "both" in rec.eyes else sorted(rec.eyes)[0]
        x, y = rec.eyes[key]
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    valid = np.isfinite(x) & np.isfinite(y)
    return Gaze(t=rec.t, x=np.where(valid, x, np.nan), y=np.where(valid, y, np.nan), valid=valid)


@contextmanager
def library_warnings_to_log(path: Path) -> Iterator[None]:
    """Run a library call and pass its warnings to ``logging`` with the file name."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    seen = set()
    for w in caught:
        text = " ".join(str(w.message).split())
        if text not in seen:
            seen.add(text)
            log.debug("%s: reader: %s", path, text)


def read_text_lines(path: Path, encoding: str | None = None) -> tuple[list[str], str]:
    """All lines of a text file, trying UTF-8 then Latin-1 unless ``encoding`` is given."""
    if not path.is_file():
        raise ImportFormatError(f"{path}: no such file")
    tries = [encoding] if encoding else ["utf-8", "latin-1"]
    for enc in tries:
        try:
            return path.read_text(encoding=enc).splitlines(), enc
        except UnicodeDecodeError as exc:
            last = exc
    raise ImportFormatError(f"{path}: cannot be decoded as {tries}: {last}")


def read_table(*, path: Path, separator: str, header_row: int = 0) -> "pl.DataFrame":
    """Read a vendor CSV/TSV with pymovements (every column as text; types are checked per column).

    Reading as text keeps the file's own values (a column empty in its first rows is not
    mistyped) and lets :func:`numeric_column` name the line of a bad value.
    """
    from pymovements.gaze.io import from_csv

    if not path.is_file():
        raise ImportFormatError(f"{path}: no such file")
    kwargs = {"separator": separator, "infer_schema": False, "skip_rows": header_row,
              "truncate_ragged_lines": True, "quote_char": '"'}
    try:
        with library_warnings_to_log(path):
            gaze = from_csv(path, read_csv_kwargs=kwargs)
    except Exception as exc:  # noqa: BLE001 - any parse failure is reported with the file name
        raise ImportFormatError(f"{path}: cannot be read as a {'TSV' if separator == chr(9) else 'CSV'} "
                                f"table: {' '.join(str(exc).split())[:300]}") from exc
    df = gaze.samples
    df.columns = [c.strip().lstrip("\ufeff") for c in df.columns]
    return df


def find_column(columns: list[str], *candidates: str, pattern: str | None = None) -> str | None:
    """The first column named like one of ``candidates`` (case-insensitive) or matching ``pattern``."""
    low = {c.lower(): c for c in columns}
    for cand in candidates:
        if cand.lower() in low:
            return low[cand.lower()]
    if pattern:
        rx = re.compile(pattern, re.IGNORECASE)
        for c in columns:
            if rx.fullmatch(c):
                return c
    return None


def require_column(columns: list[str], path: Path, what: str, *candidates: str,
                   pattern: str | None = None) -> str:
    col = find_column(columns, *candidates, pattern=pattern)
    if col is None:
        raise ImportFormatError(f"{path}:1: no {what} column (looked for {list(candidates)}; "
                                f"the header has {columns[:40]})")
    return col


def numeric_column(*, df, column: str, path: Path, first_line: int = 2, decimal: str = ".",
                   integer: bool = False) -> np.ndarray:
    """A text column as float64 (or int64 with ``integer``), NaN for empty cells.

    A cell that is not a number raises :class:`ImportFormatError` naming the file's line
    (``first_line`` is the line of the table's first data row).
    """
    import polars as pl

    s = df[column]
    if s.dtype != pl.String:
        s = s.cast(pl.String)
    s = s.str.strip_chars()
    if decimal == ",":
        s = s.str.replace_all(",", ".", literal=True)
    empty = s.is_null() | s.is_in(["", ".", "NaN", "nan", "NA", "-"])
    vals = s.cast(pl.Int64 if integer else pl.Float64, strict=False)
    bad = ~empty & vals.is_null()
    if bad.any():
        i = int(bad.arg_true()[0])
        raise ImportFormatError(f"{path}:{first_line + i}: column {column!r} holds "
                                f"{df[column][i]!r}, not a number")
    if integer:
        if vals.null_count():
            i = int(vals.is_null().arg_true()[0])
            raise ImportFormatError(f"{path}:{first_line + i}: column {column!r} is empty")
        return np.array(vals.to_numpy(), dtype=np.int64)
    return np.array(vals.cast(pl.Float64).fill_null(float("nan")).to_numpy(), dtype=np.float64)


def validity_column(*, df, column: str, path: Path, valid_values: list | None = None,
                    first_line: int = 2) -> np.ndarray:
    """A validity column (0/1, true/false, Valid/Invalid, or the listed ``valid_values``) as bool."""
    raw = [("" if v is None else str(v).strip()) for v in df[column].to_list()]
    if valid_values is not None:
        ok = {str(v).strip().lower() for v in valid_values}
        return np.array([v.lower() in ok for v in raw], dtype=bool)
    out = np.zeros(len(raw), dtype=bool)
    for i, v in enumerate(raw):
        low = v.lower()
        if low in TRUE_WORDS:
            out[i] = True
        elif low in FALSE_WORDS or low == "":
            out[i] = False
        else:
            raise ImportFormatError(f"{path}:{first_line + i}: column {column!r} holds {v!r}; "
                                    "expected 0/1, true/false or Valid/Invalid (or set valid_values)")
    return out


def guess_separator(path: Path, lines: list[str] | None = None) -> str:
    """Tab for .tsv/.txt or a header with more tabs than commas, else comma."""
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    head = lines[0] if lines else path.open(encoding="utf-8", errors="replace").readline()
    return "\t" if head.count("\t") > head.count(",") else ","


def seconds_from_native(native: np.ndarray, per_s: float) -> tuple[np.ndarray, float]:
    """Native timestamps -> (seconds from the first, the first native value), exact for int64."""
    native = np.asarray(native)
    if native.size == 0:
        return native.astype(float), 0.0
    origin = native[0]
    if native.dtype.kind in "iu":
        return (native - origin).astype(np.float64) / per_s, float(origin)
    return (native.astype(np.float64) - float(origin)) / per_s, float(origin)


def viewer_from_path(*, path: Path, rule: str = "stem") -> str:
    """A viewer id from a file path: its ``stem``, its ``parent`` folder, or a regex with ``(?P<viewer>...)``."""
    if rule == "stem":
        return path.stem
    if rule == "parent":
        return path.parent.name
    if "(?P<viewer>" in rule:
        match = re.search(rule, path.as_posix())
        if not match:
            raise ImportFormatError(f"{path}: viewer_id regex {rule!r} does not match the path")
        return match.group("viewer")
    raise ImportFormatError(f"import config: viewer_id must be 'stem', 'parent' or a regex with "
                            f"(?P<viewer>...), got {rule!r}")
