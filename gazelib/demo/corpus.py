"""Generate the demo corpus: mp4 videos with speech, SRT subtitles, gaze CSVs and truth.

Deterministic from ``seed``: every random draw comes from a generator seeded with
``(seed, video_index)``, and the mp4 encoder runs single-threaded and bit-exact.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import resample_poly

from gazelib.demo.scene import COLOURS, SHIRTS, SKIN, Ball, Character, make_background, render_frame
from gazelib.demo.speech import synthesize
from gazelib.demo.viewers import SceneEvents, simulate_viewer
from gazelib.core.io import atomic_path, write_json, write_npz, write_text
from gazelib.core.media import write_mp4
from gazelib.core.layout import RAW_DEMO

log = logging.getLogger(__name__)

FILLERS = [
    "hello there, how are you today",
    "I think it will rain later",
    "that was a very long meeting",
    "we should go for a walk",
    "my brother likes to cook dinner",
    "the music was too loud last night",
    "please tell me about your trip",
    "I have never seen anything like it",
    "let us meet again next week",
    "this is a really nice place",
    "where did you put the keys",
    "I could not sleep at all",
]
NAMED = [
    "look at the {c} ball",
    "can you see the {c} ball",
    "watch the {c} ball now",
    "the {c} ball is moving",
]
VOICES = [("en-us", 40), ("en-us+f2", 75), ("en-us+m3", 55)]
VIEWER_KEYS = ("gaze_hz", "latency_s", "p_speaker", "p_named", "p_dark_out", "follow_s",
               "free_fixation_s", "saccade_tau_s", "drift_sd", "tracker_noise_sd",
               "blink_rate_hz", "blink_s", "p_lost")


@dataclass
class DemoVideo:
    video_id: str
    duration_s: float
    characters: list[Character]
    balls: list[Ball]
    sentences: list[dict]
    dark: list[tuple[float, float]]
    audio: np.ndarray
    sample_rate: int
    mouth_env: np.ndarray       # [n_chars, n_env] mouth opening in [0, 1]
    env_hop_s: float


def _layout(rng: np.random.Generator, width: int, height: int) -> tuple[list[Character], list[Ball]]:
    n_chars = int(rng.integers(2, 4))
    slots = [0.2, 0.5, 0.8] if n_chars == 3 else sorted(rng.choice([0.22, 0.5, 0.78], 2, replace=False))
    chars = [Character(cx=float(x + rng.uniform(-0.03, 0.03)), cy=float(rng.uniform(0.3, 0.36)),
                       h=float(rng.uniform(0.34, 0.4)), skin=SKIN[i % 3], shirt=SHIRTS[i % 3])
             for i, x in enumerate(slots)]
    n_balls = int(rng.integers(2, 5))
    colours = rng.choice(list(COLOURS), n_balls, replace=False)
    balls = [Ball(colour=str(c), radius=float(rng.uniform(0.05, 0.07)),
                  centre=np.array([rng.uniform(0.3, 0.7), rng.uniform(0.6, 0.8)]),
                  amp=np.array([rng.uniform(0.05, 0.25, 2), rng.uniform(0.03, 0.12, 2)]),
                  freq=rng.uniform(0.03, 0.15, (2, 2)), phase=rng.uniform(0, 2 * np.pi, (2, 2)))
             for c in colours]
    return chars, balls


def _speech_track(rng, chars, balls, duration_s, cfg) -> tuple[np.ndarray, int, list[dict], np.ndarray]:
    sr_out = cfg["audio_sample_rate"]
    audio = np.zeros(int(duration_s * sr_out), np.float32)
    env_hop = 0.02
    env = np.zeros((len(chars), int(duration_s / env_hop) + 1), np.float32)
    sentences = []
    t = float(rng.uniform(0.4, 1.2))
    speaker = int(rng.integers(len(chars)))
    while t < duration_s - 2.5:
        named = None
        if rng.uniform() < cfg["p_named_sentence"]:
            named = str(balls[int(rng.integers(len(balls)))].colour)
            text = str(rng.choice(NAMED)).format(c=named)
        else:
            text = str(rng.choice(FILLERS))
        voice, pitch = VOICES[speaker % len(VOICES)]
        sp = synthesize(text=text, voice=voice, pitch=pitch, rate=int(rng.integers(150, 185)))
        wav = resample_poly(sp.audio, sr_out, sp.sample_rate).astype(np.float32)
        if t + wav.size / sr_out > duration_s - 0.3:
            break
        i0 = int(round(t * sr_out))
        audio[i0: i0 + wav.size] += wav
        words = [{"word": w["word"], "start": round(t + w["start"], 3), "end": round(t + w["end"], 3)}
                 for w in sp.words]
        hop = int(env_hop * sr_out)
        n_env = wav.size // hop
        rms = np.sqrt(np.mean(wav[: n_env * hop].reshape(n_env, hop) ** 2, axis=1))
        k0 = int(round(t / env_hop))
        env[speaker, k0: k0 + n_env] = np.minimum(1.0, rms / (rms.max() + 1e-9) * 1.3)
        named_t = next((w["start"] for w in words if w["word"].lower() == named), None)
        sentences.append({"speaker": speaker, "start": round(t, 3), "end": words[-1]["end"],
                          "text": text, "words": words, "named": named, "named_t": named_t})
        t = words[-1]["end"] + float(rng.uniform(*cfg["silence_s"]))
        speaker = int((speaker + rng.integers(1, len(chars))) % len(chars))
    audio += rng.normal(0, 10 ** (cfg["noise_db"] / 20), audio.size).astype(np.float32)
    return np.clip(audio, -1, 1), sr_out, sentences, env


def _dark_intervals(rng, duration_s, cfg) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for _ in range(int(rng.integers(cfg["n_dark"][0], cfg["n_dark"][1] + 1))):
        for _try in range(20):
            d0 = float(rng.uniform(2.0, max(2.1, duration_s - 2.0)))
            d1 = d0 + float(rng.uniform(*cfg["dark_s"]))
            if all(d1 + 1 < a or d0 > b + 1 for a, b in out):
                out.append((round(d0, 3), round(d1, 3)))
                break
    return sorted(out)


def _brightness(t: float, dark: list[tuple[float, float]], ramp: float = 0.15) -> float:
    b = 1.0
    for d0, d1 in dark:
        if d0 - ramp <= t <= d1 + ramp:
            edge = min(t - (d0 - ramp), (d1 + ramp) - t) / ramp
            b = min(b, 1.0 - 0.94 * float(np.clip(edge, 0, 1)))
    return b


def build_video(*, video_id: str, rng: np.random.Generator, cfg: dict) -> DemoVideo:
    chars, balls = _layout(rng, cfg["width"], cfg["height"])
    audio, sr, sentences, env = _speech_track(rng, chars, balls, cfg["duration_s"], cfg)
    return DemoVideo(video_id=video_id, duration_s=cfg["duration_s"], characters=chars, balls=balls,
                     sentences=sentences, dark=_dark_intervals(rng, cfg["duration_s"], cfg),
                     audio=audio, sample_rate=sr, mouth_env=env, env_hop_s=0.02)


def _frames(video: DemoVideo, background: np.ndarray, fps: float, boxes: dict):
    n = int(round(video.duration_s * fps))
    h, w = background.shape[:2]
    for i in range(n):
        t = i / fps
        k = min(int(t / video.env_hop_s), video.mouth_env.shape[1] - 1)
        boxes["t"].append(t)
        boxes["balls"].append([b.box(t, w, h) for b in video.balls])
        yield render_frame(background=background, characters=video.characters,
                           mouth_open=list(video.mouth_env[:, k]), balls=video.balls, t=t,
                           brightness=_brightness(t, video.dark))


def _srt_time(s: float) -> str:
    ms = int(round(s * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def subtitles_srt(sentences: list[dict]) -> str:
    """One cue per spoken word, timed by the synthesizer's word events."""
    cues = []
    for s in sentences:
        for w in s["words"]:
            cues.append(f"{len(cues) + 1}\n{_srt_time(w['start'])} --> {_srt_time(w['end'])}\n{w['word']}\n")
    return "\n".join(cues)


def write_video(*, video: DemoVideo, root: Path, rng: np.random.Generator, cfg: dict) -> dict:
    w, h, fps = cfg["width"], cfg["height"], cfg["fps"]
    background = make_background(rng, w, h)
    boxes: dict = {"t": [], "balls": []}
    write_mp4(path=root / "videos" / f"{video.video_id}.mp4", frames=_frames(video, background, fps, boxes),
              width=w, height=h, fps=fps, audio=video.audio, sample_rate=video.sample_rate)
    write_text(root / "subtitles" / f"{video.video_id}.srt", subtitles_srt(video.sentences))
    events = SceneEvents(
        duration_s=video.duration_s,
        face_centres=[(c.cx, c.cy) for c in video.characters],
        face_sizes=[(c.face_box(w, h)[2] - c.face_box(w, h)[0], c.h) for c in video.characters],
        ball_position=[b.position for b in video.balls], ball_colours=[b.colour for b in video.balls],
        sentences=video.sentences, dark=video.dark)
    viewer_cfg = {k: cfg[k] for k in VIEWER_KEYS}
    latencies = {}
    for v in range(cfg["n_viewers"]):
        viewer_id = f"viewer{v:02d}"
        g = simulate_viewer(events=events, rng=rng, cfg=viewer_cfg)
        latencies[viewer_id] = round(g["latency"], 4)
        df = pd.DataFrame({"t": g["t"], "x": g["x"], "y": g["y"], "valid": g["valid"]})
        with atomic_path(root / "gaze" / video.video_id / f"{viewer_id}.csv") as tmp:
            df.to_csv(tmp, index=False, float_format="%.6f", na_rep="")
    truth = {
        "video_id": video.video_id, "duration_s": video.duration_s,
        "faces": [{"character": i, "box": [round(v, 5) for v in c.face_box(w, h)]}
                  for i, c in enumerate(video.characters)],
        "balls": [b.colour for b in video.balls], "sentences": video.sentences,
        "dark": video.dark, "viewer_latency_s": latencies,
    }
    write_json(root / "truth" / f"{video.video_id}.json", truth)
    write_npz(root / "truth" / f"{video.video_id}_boxes.npz", t=np.array(boxes["t"]),
              ball_boxes=np.array(boxes["balls"], dtype=np.float32))
    return truth


def _generate_one(out_dir: str, cfg: dict, i: int) -> tuple[str, int, int]:
    video_id = f"demo{i:03d}"
    rng = np.random.default_rng([cfg["seed"], i])
    video = build_video(video_id=video_id, rng=rng, cfg=cfg)
    write_video(video=video, root=Path(out_dir), rng=rng, cfg=cfg)
    return video_id, len(video.sentences), sum(s["named"] is not None for s in video.sentences)


def generate_corpus(*, out_dir: str | Path, cfg: dict, workers: int = 2, start_method: str | None = None) -> dict:
    """Write the whole demo corpus under ``out_dir``; returns a summary dict.

    Each video is made in a fresh process, so the speech synthesizer's hidden state never leaks
    from one video (or one call of this function) into another. The process is forked where the
    platform can (this process has imported the generator's modules but never synthesised, so a
    fork starts as fresh as a spawn, without spawn's ~2 s of imports per video: 30 videos took
    51 s with spawn on 2 cores); elsewhere it is spawned. ``start_method`` forces one
    (``bench/bench_workers.py`` compares them).
    """
    import multiprocessing as mp
    from functools import partial

    from tqdm import tqdm

    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    summary: dict = {"videos": [], "n_sentences": 0, "n_named": 0}
    method = start_method or ("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    # multiprocessing's Pool (not concurrent.futures, which refuses fork with one task per child)
    with mp.get_context(method).Pool(processes=max(1, workers), maxtasksperchild=1) as pool:
        done = pool.imap(partial(_generate_one, str(root), cfg), range(cfg["n_videos"]))
        for video_id, n_sent, n_named in tqdm(done, total=cfg["n_videos"], desc="demo", leave=False):
            summary["videos"].append(video_id)
            summary["n_sentences"] += n_sent
            summary["n_named"] += n_named
            log.info("demo: wrote %s (%d sentences, %d naming a ball)", video_id, n_sent, n_named)
    splits = demo_splits(n_videos=cfg["n_videos"], counts=cfg["split_counts"], seed=cfg["seed"])
    summary["splits"] = splits
    yaml_splits = "" if splits is None else "splits:\n" + "".join(
        f"  {s}: [{', '.join(splits[s])}]\n" for s in ("train", "val", "test"))
    write_text(root / "corpus.yaml", f"coords: normalized\ntime_unit: s\nsynthetic: \"{DEMO_SYNTHETIC}\"\n" + yaml_splits)
    return summary


DEMO_SYNTHETIC = ("gazelib demo corpus: rendered scenes, synthesised speech and simulated viewers (docs/demo.md); "
                  "a model trained on it is not a model of real viewers")


def demo_splits(*, n_videos: int, counts: dict, seed: int) -> dict[str, list[str]] | None:
    """Exact split sizes for the demo (``counts`` for val and test, the rest train), drawn
    from a permutation seeded by ``seed``; written into corpus.yaml, which ingest honours."""
    n_val, n_test = int(counts["val"]), int(counts["test"])
    if n_val < 1 or n_test < 1 or n_videos - n_val - n_test < 1:
        log.warning("demo: split_counts %s do not fit %d videos; ingest assigns splits from its ratios",
                    counts, n_videos)
        return None
    order = np.random.default_rng([seed, 1_000_003]).permutation(n_videos)
    ids = [f"demo{i:03d}" for i in order]
    return {"test": sorted(ids[:n_test]), "val": sorted(ids[n_test:n_test + n_val]),
            "train": sorted(ids[n_test + n_val:])}


# ---------------------------------------------------------------- DVC stage
def run_demo(*, params: dict, root: Path = Path(".")) -> dict:
    out = root / RAW_DEMO
    return generate_corpus(out_dir=out, cfg=params["demo"])
