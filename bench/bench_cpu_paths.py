"""The CPU-dependent models of the pipeline on fixed inputs, to compare instruction-set paths.

    python -m bench.bench_cpu_paths inputs VIDEO OUT.npz            # decode frames + audio once
    python -m bench.bench_cpu_paths run OUT.npz RESULT.npz           # run the models on them
    python -m bench.bench_cpu_paths compare A.npz B.npz              # largest differences
    python -m bench.bench_cpu_paths whisper OUT.npz RESULT.npz       # the recogniser's steps alone

``run`` under ``qemu-x86_64 -cpu Haswell`` (Debian's qemu-user) sees a real AVX2-only CPU, which is
how docs/reproducibility.md measured what the libraries without a switch (onnxruntime's MLAS) do
on such a CPU, and checked that the pinned ones (CTranslate2, torch) give the same bytes there.
Not part of the test suite: emulation is slow (minutes), and qemu 7.2 crashes in numpy's FFT.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import gazelib.core.cpu  # noqa: F401  (first: the CPU path, before numpy / torch load)
import numpy as np


def make_inputs(video: Path, out: Path, n_frames: int = 8) -> None:
    from gazelib.core.media import iter_audio, iter_frames

    frames = [rgb for _, (_, rgb) in zip(range(n_frames), iter_frames(path=video, sample_fps=2.0, width=320,
                                                                          height=180))]
    audio = np.concatenate([x for _, x in iter_audio(path=video, sample_rate=16000)]).astype(np.float32)
    np.savez(out, frames=np.stack(frames), audio=audio)


def run_models(inp: Path, out: Path) -> None:
    import cv2
    import torch

    from gazelib.features.audio import SileroVAD
    from gazelib.features.transcript import WhisperASR
    from gazelib.features.faces import CenterFaceDetector

    data = np.load(inp)
    frames, audio = data["frames"], data["audio"]
    res, secs = {}, {}
    t0 = time.perf_counter()
    vad = SileroVAD()
    res["vad_prob"] = vad.probs(audio)
    secs["vad"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    det = CenterFaceDetector()
    heats = []
    for i, rgb in enumerate(frames):
        rh = int(round(rgb.shape[0] * 160 / rgb.shape[1]))
        x = np.zeros((-(-rh // 32) * 32, 160, 3), np.float32)
        x[:rh] = cv2.resize(rgb, (160, rh), interpolation=cv2.INTER_AREA)
        heat, scale, offset, _ = det.session.run(None, {"input.1": x.transpose(2, 0, 1)[None]})
        heats.append(heat)
        res[f"face_scale_{i}"], res[f"face_boxes_{i}"] = scale, det.detect(rgb)
    res["face_heat"] = np.stack(heats)
    secs["faces"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    torch.manual_seed(0)
    a, b = torch.randn(64, 257), torch.randn(257, 129)
    conv = torch.nn.Conv2d(3, 8, 3)
    res["torch_mm"] = (a @ b).numpy()
    res["torch_conv"] = conv(torch.from_numpy(frames[:2].astype(np.float32) / 255).permute(0, 3, 1, 2)).detach().numpy()
    res["torch_softmax_exp"] = torch.softmax(a, 1).exp().numpy()
    secs["torch"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    from gazelib.features.image_models import ImageEncoder

    emb, grid = ImageEncoder(model="efficientnet-lite0", grid_hw=(9, 16), threads=1).encode(
        np.stack([cv2.resize(f, (224, 128), interpolation=cv2.INTER_AREA) for f in frames[:2]]))
    res["image_emb"], res["image_grid"] = emb, grid
    secs["image_encoder"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    res["train_weights"] = train_steps()
    secs["train_steps"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    asr = WhisperASR(model="tiny.en-packaged", language="en")
    words = asr.transcribe(audio)
    res["asr_start"], res["asr_end"] = words["start"].to_numpy(), words["end"].to_numpy()
    res["asr_prob"], res["asr_words"] = words["probability"].to_numpy(), words["word"].to_numpy().astype(str)
    secs["asr"] = time.perf_counter() - t0
    np.savez(out, **res)
    print(json.dumps({"seconds": {k: round(v, 2) for k, v in secs.items()}, "cpu": gazelib.core.cpu.describe()}))


def train_steps(steps: int = 3) -> np.ndarray:
    """The weights of the gaze model (all modalities, persistence path, dropout) after ``steps``
    training steps on a fixed random batch: forward, the loss, backward, clipping and the optimiser's
    step as gazelib.model.train runs them."""
    import torch

    from gazelib.model.net import ModelConfig, build_model
    from gazelib.model.train import build_optimizer, compute_loss

    torch.manual_seed(0)
    torch.set_num_threads(1)
    b, t, cells, ch = 4, 30, 144, 8
    cfg = ModelConfig(modalities=["track", "audio", "text", "visual"],
                      input_dims={"track": 5, "audio": 6, "text": 7, "visual": 8}, grid_channels=ch, grid_h=9,
                      grid_w=16, d_model=32, n_heads=4, dim_ff=64, persistence=True)
    model = build_model(cfg)
    batch = {"track": torch.rand(b, t, 5), "audio": torch.randn(b, t, 6), "text": torch.randn(b, t, 7),
             "visual": torch.randn(b, t, 8), "grid": torch.randn(b, t, cells, ch), "track_map": torch.rand(b, t, cells),
             "mask": torch.ones(b, t, 4), "pad": torch.zeros(b, t, dtype=torch.bool), "gaze": torch.rand(b, t, 2),
             "inout": torch.ones(b, t), "valid": torch.ones(b, t, dtype=torch.bool)}
    tcfg = {"lr": 0.002, "weight_decay": 0.01, "heatmap_sigma": 0.06, "heatmap_target": "cell",
            "lambda_heatmap": 1.0, "lambda_inout": 0.5}
    opt = build_optimizer(model, tcfg)
    centres = model.centres
    for _ in range(steps):
        loss, _ = compute_loss(model(batch), batch, centres, tcfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()


def whisper_steps(inp: Path, out: Path, seconds: float = 10.0) -> None:
    """The speech recogniser's steps apart, on the first ``seconds`` of the audio: the log-mel features
    (numpy), the encoder's output for that 30 s window (CTranslate2: oneDNN's convolutions and GEMMs,
    its own kernels), then the words of the whole audio as the text stage decodes it (one thread).
    Tells where two CPUs part: under emulation a few minutes, where ``run`` takes twenty."""
    import ctranslate2
    from faster_whisper.audio import pad_or_trim

    from gazelib.features.transcript import WhisperASR

    audio = np.load(inp)["audio"]
    asr = WhisperASR(model="tiny.en-packaged", language="en", cpu_threads=1)
    feats = asr.model.feature_extractor(audio[: int(seconds * 16000)])
    window = np.ascontiguousarray(pad_or_trim(feats)[None].astype(np.float32))
    enc = np.array(asr.model.model.encode(ctranslate2.StorageView.from_array(window)))
    words = asr.transcribe(audio)
    np.savez(out, mel=feats, encoder=enc, asr_start=words["start"].to_numpy(), asr_end=words["end"].to_numpy(),
             asr_prob=words["probability"].to_numpy(), asr_words=words["word"].to_numpy().astype(str))
    print(json.dumps({"words": len(words), "cpu": gazelib.core.cpu.describe()}))


def compare(a: Path, b: Path) -> dict:
    za, zb = np.load(a), np.load(b)
    out = {}
    for k in sorted(set(za.files) | set(zb.files)):
        u, v = za[k], zb[k]
        if u.shape != v.shape:
            out[k] = f"shape {u.shape} vs {v.shape}"
        elif u.dtype.kind in "US":
            out[k] = "equal" if np.array_equal(u, v) else f"{int(np.sum(u != v))} differ"
        else:
            d = float(np.max(np.abs(u.astype(np.float64) - v.astype(np.float64)), initial=0.0))
            out[k] = "identical" if u.tobytes() == v.tobytes() else d
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("inputs")
    p.add_argument("video", type=Path)
    p.add_argument("out", type=Path)
    p = sub.add_parser("run")
    p.add_argument("inp", type=Path)
    p.add_argument("out", type=Path)
    p = sub.add_parser("whisper")
    p.add_argument("inp", type=Path)
    p.add_argument("out", type=Path)
    p = sub.add_parser("compare")
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "inputs":
        make_inputs(args.video, args.out)
    elif args.cmd == "run":
        run_models(args.inp, args.out)
    elif args.cmd == "whisper":
        whisper_steps(args.inp, args.out)
    else:
        print(json.dumps(compare(args.a, args.b), indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
