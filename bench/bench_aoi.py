"""What evaluate spends on the AOI level per variant: ``prepare_video`` (cell shares and the AOI each
gaze sample is in) on demo-sized videos, by this tree's code and by the pre-vectorised reference
(tests/aoi_reference.py), and whether both give the same bytes.

Demo-sized: ``--videos`` test videos of ``--seconds`` s at 10 steps/s, 4 viewers, three moving face
tracks (a box keyframe per 0.1 s frame, as ``track_aois`` makes them) and one user polygon, grid
9 x 16 (``visual.grid_h/grid_w``), 4 x 4 points per cell.

Run from the repo root:  python -m bench.bench_aoi [--videos 8] [--seconds 20] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import gazelib  # noqa: F401  (first: CPU path pin)
import numpy as np



def demo_like_video(seed: int, seconds: float, viewers: int = 4) -> tuple[list, dict]:
    from gazelib.aoi.shapes import Aoi, box_verts

    rng = np.random.default_rng(seed)
    t = np.arange(0, seconds, 0.1)
    aois = []
    for k in range(3):
        cx = 0.2 + 0.3 * k + 0.05 * np.sin(t / 3 + k)
        cy = 0.4 + 0.03 * np.cos(t / 2 + k)
        boxes = np.stack([cx - 0.07, cy - 0.12, cx + 0.07, cy + 0.12], 1)
        tt = np.append(t, t[-1] + 0.1)
        verts = np.concatenate([box_verts(boxes), box_verts(boxes[-1:])])
        vis = np.append(rng.random(t.size) > 0.05, False)
        aois.append(Aoi(name=f"face{k}", kind="face", t=tt, verts=verts, visible=vis))
    aois.append(Aoi(name="logo", kind="user", t=[0.0, seconds / 2], verts=[[[0.05, 0.05], [0.3, 0.08], [0.2, 0.25]]] * 2,
                    visible=[1, 1], is_box=False))
    gaze = rng.random((viewers, t.size, 2))
    lab = {"t": t, "valid": rng.random((viewers, t.size)) > 0.1, "inout": (rng.random((viewers, t.size)) > 0.1).astype(np.int8),
           "gaze": gaze.astype(np.float32)}
    return aois, lab


def timed(fn, videos, repeat: int) -> tuple[float, list]:
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = [fn(aois=a, lab=lab, gh=9, gw=16) for a, lab in videos]
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from tests.aoi_reference import ref_prepare_video

    from gazelib.aoi.model_level import prepare_video

    videos = [demo_like_video(i, args.seconds) for i in range(args.videos)]
    ref_s, ref = timed(ref_prepare_video, videos, args.repeat)
    new_s, new = timed(prepare_video, videos, args.repeat)
    same = all(a[k].tobytes() == b[k].tobytes() and a[k].dtype == b[k].dtype and a[k].shape == b[k].shape
               for a, b in zip(ref, new) for k in ("shares", "looked", "inframe", "viewer_share"))
    res = {"videos": args.videos, "seconds": args.seconds, "reference_s": round(ref_s, 3), "now_s": round(new_s, 3),
           "speedup": round(ref_s / new_s, 1), "identical": same}
    print(json.dumps(res, indent=2))
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
