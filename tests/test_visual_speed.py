"""extract_visual's speed paths keep every byte (issue 24).

- ``pool_grid`` pools the one-channel maps stacked, in one resize: each channel must come out as
  resizing it alone did (the per-map calls it replaced), bit for bit, at any size.
- ``in_thread`` (the reader thread: decoding, faces, grey and Lab ahead of the main loop) yields
  the items of the serial generator in order, raises its errors in the consumer and stops cleanly.
"""
from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gazelib.features.visual import GRID_CHANNELS, in_thread, pool_grid


def _pool_grid_per_map(maps: dict, gh: int, gw: int) -> np.ndarray:
    """pool_grid as it was before the stacked resize: one cv2.resize per map."""
    out = np.empty((len(GRID_CHANNELS), gh, gw), np.float32)
    lab = cv2.resize(maps["lab"], (gw, gh), interpolation=cv2.INTER_AREA)
    out[:3] = lab.reshape(gh, gw, 3).transpose(2, 0, 1) * np.float32(1 / 255.0)
    for k, c in enumerate(GRID_CHANNELS[3:], start=3):
        out[k] = cv2.resize(maps[c], (gw, gh), interpolation=cv2.INTER_AREA)
    return out


@settings(max_examples=60, deadline=None)
@given(gh=st.integers(1, 12), gw=st.integers(1, 20), kh=st.integers(1, 25), kw=st.integers(1, 25),
       extra_h=st.integers(0, 19), extra_w=st.integers(0, 19), seed=st.integers(0, 2**31))
@example(gh=9, gw=16, kh=20, kw=20, extra_h=0, extra_w=0, seed=1)     # the demo's work size and grid
@example(gh=9, gw=16, kh=20, kw=20, extra_h=1, extra_w=3, seed=2)
@example(gh=1, gw=1, kh=2, kw=2, extra_h=0, extra_w=0, seed=0)       # exact halving: OpenCV's 2x2 path
@example(gh=2, gw=2, kh=2, kw=2, extra_h=0, extra_w=0, seed=1)
@example(gh=1, gw=3, kh=2, kw=1, extra_h=0, extra_w=3, seed=0)
def test_stacked_pooling_is_the_per_map_resizes(gh, gw, kh, kw, extra_h, extra_w, seed):
    """Integer cell sizes (the demo's 320x180 to 16x9: 20 px cells) and any other size (``extra``)."""
    h, w = gh * kh + extra_h, gw * kw + extra_w
    rng = np.random.default_rng(seed)
    maps = {"lab": rng.integers(0, 256, (h, w, 3)).astype(np.float32),
            "motion": rng.random((h, w), dtype=np.float32) * np.float32(rng.uniform(0, 1)),
            "saliency": rng.random((h, w), dtype=np.float32),
            "edges": np.minimum(rng.exponential(0.3, (h, w)).astype(np.float32), np.float32(1)),
            "face": (rng.random((h, w)) < 0.3).astype(np.float32),
            "mouth_motion": np.where(rng.random((h, w)) < 0.1, rng.random((h, w)), 0).astype(np.float32)}
    got, ref = pool_grid(maps, gh, gw), _pool_grid_per_map(maps, gh, gw)
    assert got.shape == ref.shape == (len(GRID_CHANNELS), gh, gw)
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


def test_in_thread_yields_the_items_in_order():
    assert list(in_thread(iter(range(100)), depth=3, name="t")) == list(range(100))
    assert list(in_thread(iter([]), depth=3, name="t")) == []


def test_in_thread_raises_the_producers_error_in_the_consumer():
    def items():
        yield 1
        raise ValueError("corrupt frame 2")

    got = []
    with pytest.raises(ValueError, match="corrupt frame 2"):
        for x in in_thread(items(), depth=2, name="t"):
            got.append(x)
    assert got == [1]


def test_in_thread_closed_early_stops_its_thread_and_closes_the_source():
    closed = threading.Event()

    def items():
        try:
            for i in range(10**9):
                yield i
        finally:
            closed.set()

    before = threading.active_count()
    gen = in_thread(items(), depth=2, name="t")
    assert next(gen) == 0
    gen.close()
    assert closed.is_set()
    assert threading.active_count() == before


class _FailingDetector:
    name = "fails on its third call"

    def __init__(self):
        self.calls = 0

    def detect(self, rgb):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("detector broke on call 3")
        return np.zeros((0, 4), np.float32)


class _FailingEncoder:
    name = "fails"

    def encode(self, frames):
        raise RuntimeError("encoder broke")


@pytest.mark.parametrize("broken", ["detector", "encoder"])
def test_an_error_in_a_feeding_thread_fails_the_video_and_leaves_no_thread(tmp_path, broken):
    """The face and the encoder thread's errors reach the caller as they are; the decoding and face
    threads do not outlive the call (the encoder's pool is shut down when the video's encoder state is
    collected, as before the threads)."""
    from gazelib.features.visual import extract_visual_features
    from tests.test_visual import CFG, _square_video

    video = _square_video(tmp_path / "sq.mp4", n=40)
    cfg = {**CFG, "embed_batch": 2, "embed_fps": 5}
    with pytest.raises(RuntimeError, match=f"{broken} broke"):
        extract_visual_features(video_path=video, video_id="sq", cfg=cfg, detector=_FailingDetector()
                                if broken == "detector" else None,
                                encoder=_FailingEncoder() if broken == "encoder" else None)
    assert not [t.name for t in threading.enumerate() if t.name in ("visual-decode", "visual-faces")]
