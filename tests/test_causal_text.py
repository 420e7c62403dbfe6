"""Viewer-causal text features (features.lookahead: none), through the real extractor.

Real speech (espeak-ng) in a PCM-audio video, the packaged Whisper tiny.en and MiniLM, the
real aligner: media after t0 (the audio, or the subtitle words) is replaced, and the aligned
text features at steps <= t0 - one text hop (the aligner interpolates toward the next feature
sample; docs/causality.md) must not change. With ``offline`` they do: the test can fail.
"""
from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gazelib.data.align import align_video
from gazelib.features.text import TextEmbedder, extract_text_video, text_config, text_timeline
from gazelib.features.transcript import causal_chunks, make_asr

SR = 16000
SENTENCES = {"a": "please look at the red ball", "b": "now the blue box is moving to the left side",
             "c": "a small green bird sings loudly behind the old wooden fence today"}


@pytest.fixture(scope="module")
def speech():
    """Audio (16 kHz) and word times of three sentences, synthesised once in a fixed order."""
    from scipy.signal import resample_poly

    from gazelib.demo.speech import synthesize

    out = {}
    for key, text in SENTENCES.items():
        sp = synthesize(text=text, voice="en-us", rate=160)
        out[key] = (resample_poly(sp.audio, SR, sp.sample_rate).astype(np.float32), list(sp.words))
    return out


@pytest.fixture(scope="module")
def models(base_params):
    cfg = base_params["text"]
    return {"embedder": TextEmbedder(model=cfg["embedder"], threads=cfg["embed_threads"], batch_size=cfg["embed_batch"]), "asr": make_asr(cfg)}


def _clip(speech) -> tuple[np.ndarray, float, list[dict]]:
    """0.5 s silence, sentence a, 0.8 s silence, sentence b, 0.6 s silence; t0 is 60% into b."""
    a, a_words = speech["a"]
    b, b_words = speech["b"]
    gap1, gap2 = np.zeros(int(0.5 * SR), np.float32), np.zeros(int(0.8 * SR), np.float32)
    b_at = (gap1.size + a.size + gap2.size) / SR
    audio = np.concatenate([gap1, a, gap2, b, np.zeros(int(0.6 * SR), np.float32)])
    words = [{**w, "start": w["start"] + 0.5, "end": w["end"] + 0.5} for w in a_words]
    words += [{**w, "start": w["start"] + b_at, "end": w["end"] + b_at} for w in b_words]
    t0 = round(b_at + 0.6 * b.size / SR, 2)
    return audio, t0, words


def _write_video(path, audio: np.ndarray) -> None:
    """A small video with the audio as 16-bit PCM (no lossy codec smearing samples across t0)."""
    import imageio_ffmpeg
    from scipy.io import wavfile

    wav = path.with_suffix(".wav")
    wavfile.write(wav, SR, np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16))
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"color=c=gray:s=64x36:r=10:d={audio.size / SR:.3f}", "-i", str(wav), "-map", "0:v", "-map", "1:a",
                    "-c:v", "libx264", "-c:a", "pcm_s16le", "-shortest", str(path)], check=True)


def _srt(words: list[dict]) -> str:
    def stamp(s: float) -> str:
        ms = int(round(s * 1000))
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    return "".join(f"{i + 1}\n{stamp(w['start'])} --> {stamp(w['end'])}\n{w['word']}\n\n" for i, w in enumerate(words))


def _aligned_text(*, tmp, vid: str, video, srt, duration: float, cfg: dict, models, sources) -> dict:
    item = {"video_id": vid, "video_path": str(video), "subtitle_path": str(srt) if srt else "", "has_audio": True,
            "duration_s": duration}
    res = extract_text_video(item=item, cfg=cfg, out_dir=tmp / "features" / "text", embedder=models["embedder"],
                             asr=lambda: models["asr"], sources=sources)
    no_gaze = pd.DataFrame({"t": [0.0], "x": [np.nan], "y": [np.nan], "valid": [0], "viewer_id": ["none"]})
    arr = align_video(video_id=vid, duration_s=duration, feat_dir=tmp / "features", gaze=no_gaze,
                      cfg={"fps": 10, "max_gap_s": 0.5, "gaze_max_gap_s": 0.1}, grid_shape=(1, 2, 2),
                      lookahead=cfg["lookahead"])
    return {"t": arr["t"], "text": arr["text"], "mask": arr["mask"][:, 1], "words": res["asr_words"],
            "columns": list(arr["text_columns"])}


def _compare(orig: dict, pert: dict, t0: float, hop: float) -> tuple[bool, bool]:
    """(identical at every step <= t0 - hop, identical after t0)."""
    before, after = orig["t"] <= t0 - hop + 1e-9, orig["t"] > t0
    assert orig["columns"] == pert["columns"] and (orig["mask"] == pert["mask"]).all()
    return (bool(np.array_equal(orig["text"][before], pert["text"][before])),
            bool(np.array_equal(orig["text"][after], pert["text"][after])))


@pytest.mark.parametrize("lookahead", ["none", "offline"])
def test_audio_after_t0_cannot_reach_earlier_text_features(tmp_path, speech, models, base_params, lookahead):
    audio, t0, _ = _clip(speech)
    c = speech["c"][0]
    k = int(round(t0 * SR))
    other = np.concatenate([audio[:k], c, np.zeros(max(0, audio.size - k - c.size), np.float32)])[:audio.size]
    assert np.array_equal(other[:k], audio[:k]) and not np.array_equal(other[k:], audio[k:])
    cfg = text_config({**base_params, "features": {"lookahead": lookahead}})
    got = {}
    for vid, a in (("orig", audio), ("other", other)):
        _write_video(tmp_path / f"{vid}.mkv", a)
        got[vid] = _aligned_text(tmp=tmp_path, vid=vid, video=tmp_path / f"{vid}.mkv", srt=None,
                                 duration=audio.size / SR, cfg=cfg, models=models, sources=["asr"])
    same_before, same_after = _compare(got["orig"], got["other"], t0, cfg["hop_s"])
    assert not same_after, "the replaced speech never reached the text features"
    active = got["orig"]["text"][:, got["orig"]["columns"].index("text_active")]
    if lookahead == "none":
        # the first sentence was recognised before t0 (the comparison is not over empty features) ...
        assert active[got["orig"]["t"] <= t0 - cfg["hop_s"]].any()
        w = got["orig"]["words"]
        assert (w["avail_t"] >= w["end"]).all() and "red" in set(w["word"].str.lower())
        assert same_before, "text features before t0 changed when only the audio after t0 changed"
        # ... and the words known by t0 are the same words at the same times
        known = [g["words"][g["words"]["avail_t"] <= t0][["start", "end", "word"]] for g in got.values()]
        pd.testing.assert_frame_equal(known[0], known[1])
    else:
        assert not same_before, "offline look-ahead features should see the speech after t0"


@pytest.mark.parametrize("lookahead", ["none", "offline"])
def test_subtitle_words_after_t0_cannot_reach_earlier_text_features(tmp_path, speech, models, base_params,
                                                                    lookahead):
    audio, t0, words = _clip(speech)
    c_words = speech["c"][1]
    later = [w for w in words if w["start"] >= t0]
    assert later and len(c_words) != len(later)
    span = (later[-1]["end"] - t0) / len(c_words)   # other words, another count, after t0
    other = [w for w in words if w["start"] < t0] + [
        {"word": w["word"], "start": t0 + i * span, "end": t0 + (i + 0.9) * span} for i, w in enumerate(c_words)]
    cfg = text_config({**base_params, "features": {"lookahead": lookahead}})
    _write_video(tmp_path / "clip.mkv", audio)
    got = {}
    for vid, ws in (("orig", words), ("other", other)):
        (tmp_path / f"{vid}.srt").write_text(_srt(ws))
        got[vid] = _aligned_text(tmp=tmp_path, vid=vid, video=tmp_path / "clip.mkv", srt=tmp_path / f"{vid}.srt",
                                 duration=audio.size / SR, cfg=cfg, models=models, sources=["subtitles"])
    same_before, same_after = _compare(got["orig"], got["other"], t0, cfg["hop_s"])
    assert not same_after
    if lookahead == "none":
        active = got["orig"]["text"][:, got["orig"]["columns"].index("text_active")]
        assert active[got["orig"]["t"] <= t0 - cfg["hop_s"]].any()
        assert same_before, "text features before t0 changed when only subtitle words after t0 changed"
    else:
        assert not same_before


class Lengths:
    """A transparent embedder: the text's length and word count; records its batches."""
    dim, name, backend = 2, "lengths", "test"

    def __init__(self):
        self.batches = []

    def encode(self, texts):
        self.batches.append(list(texts))
        return np.array([[len(s), len(s.split())] for s in texts], np.float32)


def test_causal_features_read_only_known_words():
    """Feature level, on a grid: the prefix embedding grows word by word as words become known,
    the rate counts known words in the trailing window, and text is current for hold_s."""
    words = pd.DataFrame({"start": [0.1, 0.5, 2.0, 2.4], "end": [0.4, 0.9, 2.3, 2.8],
                          "word": ["red", "ball", "go", "now"], "utterance_id": [0, 0, 1, 1],
                          "avail_t": [1.0, 1.0, 2.5, 3.0]})
    enc = Lengths()
    f = text_timeline(words=words, duration_s=4.5, hop_s=0.5, rate_window_s=2.0, embedder=enc, lookahead="none",
                      hold_s=1.0)
    tab = f.table.set_index("t")
    assert tab["text_active"].tolist() == [0, 0, 1, 1, 0, 1, 1, 1, 0]
    assert f.utt_emb[:, 0].tolist() == [0, 0, 8, 8, 0, 2, 6, 6, 0]        # "red ball"; "go"; "go now"
    assert f.word_emb[:, 0].tolist() == [0, 0, 4, 4, 0, 2, 3, 3, 0]       # ball; go; now
    # starts in (t - 2, t] of the words known at t
    assert tab["speaking_rate"].tolist() == pytest.approx([0, 0, 1, 1, 1, 0.5, 1, 1, 0.5])
    # one embedding batch per availability time, holding only texts known then
    assert enc.batches == [["red", "red ball", "ball"], ["go"], ["now", "go now"]]
    # a word without avail_t is known at its end (subtitles)
    g = text_timeline(words=words.drop(columns="avail_t"), duration_s=4.5, hop_s=0.5, rate_window_s=2.0,
                      embedder=Lengths(), lookahead="none", hold_s=1.0)
    assert g.utt_emb[:, 0].tolist() == [0, 3, 8, 8, 0, 2, 6, 6, 0]


@st.composite
def timed_words(draw):
    """Words in spoken order with utterance ids, known at their end or later (chunk ends)."""
    n = draw(st.integers(0, 12))
    gaps = draw(st.lists(st.floats(0.0, 1.5), min_size=n, max_size=n))
    durs = draw(st.lists(st.floats(0.05, 0.6), min_size=n, max_size=n))
    lags = draw(st.lists(st.sampled_from([0.0, 0.0, 0.3, 1.1]), min_size=n, max_size=n))
    start = 0.1 + np.cumsum(np.r_[0.0, np.array(durs[:-1]) + gaps[1:]]) if n else np.zeros(0)
    end = start + np.array(durs)
    words = pd.DataFrame({"start": start, "end": end, "avail_t": end + np.array(lags),
                          "word": [draw(st.sampled_from(["red", "ball", "go", "now", "a"])) for _ in range(n)]})
    words["utterance_id"] = np.cumsum(np.r_[True, start[1:] - end[:-1] > 0.6])[:n] - 1 if n else []
    return words


@settings(max_examples=60, deadline=None)
@given(timed_words(), timed_words(), st.floats(0.0, 8.0))
def test_words_known_after_t0_never_change_features_at_or_before_t0(words, other, t0):
    """Swap every word known after t0 for other words (also known after t0): the features at every
    grid step <= t0 are byte-identical, embeddings included (batches hold only texts known then)."""
    keep = words[words["avail_t"] <= t0]
    later = other.assign(start=other["start"] + t0, end=other["end"] + t0, avail_t=other["avail_t"] + t0 + 1e-6)
    later = later[later["start"] >= (keep["end"].max() if len(keep) else 0.0)]
    swapped = pd.concat([keep, later], ignore_index=True)
    swapped["utterance_id"] = np.r_[keep["utterance_id"].to_numpy(),
                                    later["utterance_id"].to_numpy() + (keep["utterance_id"].max() + 1 if len(keep)
                                                                        else 0)].astype(np.int64)
    kw = {"duration_s": 10.0, "hop_s": 0.04, "rate_window_s": 2.0, "lookahead": "none", "hold_s": 1.0}
    a = text_timeline(words=words, embedder=Lengths(), **kw)
    b = text_timeline(words=swapped, embedder=Lengths(), **kw)
    before = a.table["t"].to_numpy() <= t0
    pd.testing.assert_frame_equal(a.table[before], b.table[before])
    assert np.array_equal(a.utt_emb[before], b.utt_emb[before]) and np.array_equal(a.word_emb[before], b.word_emb[before])
    # everything at a step is a function of the known words: none known, nothing on
    none_known = a.table["t"].to_numpy() < (words["avail_t"].min() if len(words) else np.inf)
    assert not a.table["text_active"][none_known].any() and not a.utt_emb[none_known].any()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from([0.0, 0.2, 0.6, 0.9]), max_size=400), st.floats(0.05, 1.0), st.floats(0.3, 4.0),
       st.floats(0.0, 0.5))
@example(prob=[0.0] * 9 + [0.6], silence=1.0, cap=0.3125, pad=0.5)   # the pad once pushed chunks past the cap
@example(prob=[0.0] * 8 + [0.6, 0.0], silence=1.0, cap=0.3125, pad=0.5)
def test_chunks_of_any_prefix_are_the_chunks_closed_by_then(prob, silence, cap, pad):
    win = 0.032
    prob = np.array(prob)
    kw = {"win_s": win, "threshold": 0.5, "min_silence_s": silence, "max_chunk_s": cap, "pad_s": pad}
    chunks = causal_chunks(prob=prob, **kw)
    assert all(b - a <= cap + 1e-9 and a < b for a, b in chunks)
    assert all(c1[1] <= c2[0] + 1e-9 for c1, c2 in zip(chunks, chunks[1:]))   # no overlap
    for n in range(0, prob.size + 1, 13):
        closed = [c for c in chunks if c[1] <= n * win - 1e-9]
        assert causal_chunks(prob=prob[:n], **kw)[:len(closed)] == closed


def test_causal_chunks_decide_from_the_past_only():
    win = 0.032
    prob = np.r_[np.zeros(10), np.ones(50), np.zeros(20), np.ones(300), np.zeros(3)]
    chunks = causal_chunks(prob=prob, win_s=win, threshold=0.5, min_silence_s=0.3, max_chunk_s=6.0, pad_s=0.2)
    assert chunks[0] == pytest.approx((10 * win - 0.2, 69 * win))            # closed after 9 quiet windows
    assert chunks[1][0] == pytest.approx(80 * win - 0.2) and chunks[1][1] - chunks[1][0] <= 6.0 + 1e-9
    assert chunks[2][0] == pytest.approx(chunks[1][1]) and chunks[-1][1] == pytest.approx(prob.size * win)
    # every prefix of the probabilities gives the same closed chunks up to its end
    for n in range(0, prob.size, 7):
        part = causal_chunks(prob=prob[:n], win_s=win, threshold=0.5, min_silence_s=0.3, max_chunk_s=6.0, pad_s=0.2)
        closed = [c for c in chunks if c[1] <= n * win - 1e-9]
        assert part[:len(closed)] == closed


def test_lookahead_is_validated(base_params):
    with pytest.raises(ValueError, match="features.lookahead is 'future'; expected one of none, offline"):
        text_config({**base_params, "features": {"lookahead": "future"}})
    with pytest.raises(ValueError, match="params have no features.lookahead"):  # no silent default
        text_config({"text": base_params["text"]})
