"""One function per DVC stage: read params and inputs, call the library, write outputs.

The scripts in ``stages/`` only parse arguments and call these, so tests run the same
code. Paths are relative to ``root`` (the repo root).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from gazelib.cache import VideoCache, code_hash, hash_file, hash_obj, run_per_video
from gazelib.io import read_npz, read_table, write_json, write_npz, write_table, write_text

log = logging.getLogger(__name__)

RAW_DEMO = Path("data/raw/demo")
INTERIM = Path("data/interim")
FEATURES = Path("data/features")
ALIGNED = Path("data/aligned")


def load_manifest(root: Path) -> pd.DataFrame:
    path = root / INTERIM / "manifest.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run the ingest stage first")
    return read_table(path)[0]


def grid_shape(params: dict) -> tuple[int, int, int]:
    from gazelib.features.visual import grid_channel_names

    v = params["visual"]
    return (len(grid_channel_names(v)), v["grid_h"], v["grid_w"])


# ---------------------------------------------------------------- demo / ingest
def run_demo(*, params: dict, root: Path = Path(".")) -> dict:
    from gazelib.demo.corpus import generate_corpus

    out = root / RAW_DEMO
    return generate_corpus(out_dir=out, cfg=params["demo"])


def run_ingest(*, params: dict, root: Path = Path(".")) -> dict:
    from gazelib.ingest import ingest_corpus, write_ingest

    corpus = Path(params["data"]["corpus"])
    corpus = corpus if corpus.is_absolute() else root / corpus
    result = ingest_corpus(corpus=corpus, params=params["ingest"], on_error=params["data"]["on_error"])
    if result.manifest.empty:
        raise ValueError(f"{corpus}: no usable video (skipped: {result.skipped})")
    return write_ingest(result=result, out_dir=root / INTERIM, corpus=params["data"]["corpus"])


# ---------------------------------------------------------------- extractors
def _items(manifest: pd.DataFrame) -> list[dict]:
    return manifest.to_dict("records")


def run_extract_audio(*, params: dict, root: Path = Path(".")) -> dict:
    from gazelib.features.audio import extract_audio_features, make_audio_models, write_audio_features

    cfg = params["audio"]
    out = root / FEATURES / "audio"
    models = make_audio_models(cfg)

    def compute(item: dict) -> list[Path]:
        feats = extract_audio_features(video_path=item["video_path"], video_id=item["video_id"],
                                       duration_s=item["duration_s"], cfg=cfg, vad=models["vad"],
                                       egemaps=models["egemaps"], speech=models["speech"])
        return write_audio_features(feats=feats, out_dir=out, video_id=item["video_id"], cfg=cfg,
                                    models=models["names"])

    run = run_per_video(cache=VideoCache(out, "extract_audio"), items=_items(load_manifest(root)),
                        params={**cfg, "code": code_hash("gazelib.features.audio", "gazelib.media")},
                        compute=compute, on_error=params["data"]["on_error"])
    return run.as_dict()


def run_extract_text(*, params: dict, root: Path = Path(".")) -> dict:
    from gazelib.features.text import TextEmbedder, text_timeline, write_text_features
    from gazelib.features.transcript import asr_quality, read_cues, words_from_cues

    cfg = params["text"]
    out = root / FEATURES / "text"
    embedder = TextEmbedder(model=cfg["embedder"], batch_size=cfg["embed_batch"])
    asr_holder: dict = {}

    def asr():
        if "m" not in asr_holder:
            from gazelib.features.transcript import make_asr

            asr_holder["m"] = make_asr(cfg)
        return asr_holder["m"]

    def compute(item: dict) -> list[Path]:
        from gazelib.media import read_audio

        vid = item["video_id"]
        subs = words_from_cues(read_cues(path=item["subtitle_path"], video_id=vid), "subtitles") \
            if item["subtitle_path"] else None
        words, source, asr_words = None, "none", None
        for src in cfg["sources"]:
            if src == "subtitles" and subs is not None:
                words, source = subs, "subtitles"
            elif src == "asr" and item["has_audio"]:
                t0, audio = read_audio(path=item["video_path"], video_id=vid)
                asr_words = asr().transcribe(audio, t0=t0)
                words, source = asr_words, "asr"
            if words is not None:
                break
        if words is None:
            from gazelib.features.transcript import empty_words

            words = empty_words()
            log.info("%s: no transcript source available; text features are silent", vid)
        feats = text_timeline(words=words, duration_s=item["duration_s"], hop_s=cfg["hop_s"],
                              rate_window_s=cfg["rate_window_s"], embedder=embedder)
        paths = write_text_features(feats=feats, words=words, out_dir=out, video_id=vid, cfg=cfg, source=source,
                                    embedder=embedder, asr_model=cfg["asr_model"] if source == "asr" else "")
        if asr_words is not None and subs is not None:
            q = {"video_id": vid, **asr_quality(ref=subs, hyp=asr_words)}
            write_json(out / "asr" / f"{vid}.json", q)
            paths.append(out / "asr" / f"{vid}.json")
        return paths

    run = run_per_video(cache=VideoCache(out, "extract_text"), items=_items(load_manifest(root)),
                        params={**cfg, "code": code_hash("gazelib.features.text", "gazelib.features.transcript")},
                        compute=compute, on_error=params["data"]["on_error"])
    write_json(root / "metrics" / "asr.json", summarise_asr(out))
    return run.as_dict()


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
            "end_err_s": float(np.average([r["end_err_s"] for r in matched], weights=w)) if matched else None}


def run_extract_visual(*, params: dict, root: Path = Path(".")) -> dict:
    from gazelib.features.visual import FaceDetector, extract_visual_features, make_image_encoder, write_visual_features

    cfg = params["visual"]
    out = root / FEATURES / "visual"
    detector = FaceDetector.from_params(cfg)
    encoder = make_image_encoder(cfg)

    def compute(item: dict) -> list[Path]:
        feats = extract_visual_features(video_path=item["video_path"], video_id=item["video_id"], cfg=cfg,
                                        detector=detector, encoder=encoder)
        return write_visual_features(feats=feats, out_dir=out, video_id=item["video_id"], cfg=cfg,
                                     detector_name=detector.name)

    run = run_per_video(cache=VideoCache(out, "extract_visual"), items=_items(load_manifest(root)),
                        params={**cfg, "code": code_hash("gazelib.features.visual", "gazelib.features.image_models",
                                                         "gazelib.media")},
                        compute=compute, on_error=params["data"]["on_error"])
    return run.as_dict()


# ---------------------------------------------------------------- align / validate
def run_align(*, params: dict, root: Path = Path(".")) -> dict:
    from gazelib.align import align_video
    from gazelib.normalize import fit_norm_stats

    cfg = params["align"]
    manifest = load_manifest(root)
    out = root / ALIGNED
    feat_dir = root / FEATURES
    gshape = grid_shape(params)

    def input_hash(item: dict) -> str:
        files = [feat_dir / m / f"{item['video_id']}{ext}" for m in ("audio", "text", "visual") for ext in (".parquet", ".npz")]
        return hash_obj([item["gaze_hash"]] + [hash_file(p) if p.exists() else None for p in files])

    items = [{**it, "media_hash": input_hash(it)} for it in _items(manifest)]

    def compute(item: dict) -> list[Path]:
        gaze = read_table(root / INTERIM / "gaze" / f"{item['video_id']}.parquet")[0]
        arrays = align_video(video_id=item["video_id"], duration_s=item["duration_s"], feat_dir=feat_dir,
                             gaze=gaze, cfg=cfg, grid_shape=gshape)
        path = out / f"{item['video_id']}.npz"
        write_npz(path, **arrays)
        return [path]

    run = run_per_video(cache=VideoCache(out, "align"), items=items,
                        params={**cfg, "grid": gshape, "code": code_hash("gazelib.align")},
                        compute=compute, on_error=params["data"]["on_error"])
    ok = [it for it in items if it["video_id"] not in run.failed]
    rows, train_arrays = [], []
    for it in ok:
        a = read_npz(out / f"{it['video_id']}.npz")
        rows.append({"video_id": it["video_id"], "split": it["split"], "length": int(a["t"].size),
                     "viewers": int(a["gaze"].shape[0]), "duration_s": it["duration_s"],
                     **{f"coverage_{m}": float(a["mask"][:, i].mean()) for i, m in
                        enumerate(("audio", "text", "visual", "track"))},
                     "label_coverage": float(a["valid"].any(0).mean()) if a["valid"].size else 0.0})
        if it["split"] == "train":
            train_arrays.append(a)
    write_table(out / "index.parquet", pd.DataFrame(rows), meta={"fps": cfg["fps"], "grid": list(gshape)})
    stats = fit_norm_stats(videos=train_arrays)
    stats["fit_on"] = sorted(it["video_id"] for it in ok if it["split"] == "train")
    write_json(out / "norm_stats.json", stats)
    return run.as_dict()


def run_validate(*, params: dict, root: Path = Path(".")) -> dict:
    from gazelib.validate import ValidationError, render_report, validate_corpus

    index = read_table(root / ALIGNED / "index.parquet")[0]
    res = validate_corpus(feat_dir=root / FEATURES, aligned_dir=root / ALIGNED, video_ids=list(index["video_id"]),
                          grid_shape=grid_shape(params), cfg=params["validate"])
    metrics, md = render_report(res, params["validate"])
    write_json(root / "metrics" / "validation.json", metrics)
    write_text(root / "reports" / "validation.md", md)
    if res.failures:
        raise ValidationError("validation failed:\n" + "\n".join(
            f"  {f.video_id}: {f.check}: {f.message}" for f in res.failures))
    return metrics


# ---------------------------------------------------------------- train / evaluate / compare
def _split_files(root: Path, index: pd.DataFrame, split: str) -> list[Path]:
    vids = index.loc[(index["split"] == split) & (index["viewers"] > 0), "video_id"]
    return [root / ALIGNED / f"{v}.npz" for v in sorted(vids)]


def _index_maps(index: pd.DataFrame) -> dict:
    return {"length": dict(zip(index["video_id"], index["length"])),
            "viewers": dict(zip(index["video_id"], index["viewers"]))}


def run_train(*, params: dict, variant: str, root: Path = Path("."), max_epochs: int | None = None) -> dict:
    from gazelib.train import train_variant, write_train_metrics
    from gazelib.viz import curves

    if variant not in params["variants"]:
        raise KeyError(f"unknown variant {variant!r}; params.yaml has {list(params['variants'])}")
    index = read_table(root / ALIGNED / "index.parquet")[0]
    stats = json.loads((root / ALIGNED / "norm_stats.json").read_text())
    out_dir = root / "models" / variant
    out_dir.mkdir(parents=True, exist_ok=True)
    live = _live(root / "reports" / "train" / variant)
    result = train_variant(variant=variant, modalities=params["variants"][variant]["modalities"],
                           train_files=_split_files(root, index, "train"), val_files=_split_files(root, index, "val"),
                           index=_index_maps(index), stats=stats, grid_shape=grid_shape(params),
                           fps=params["align"]["fps"], cfg=params["train"], model_cfg=params["model"],
                           out_dir=out_dir, seed=params["seed"], live=live, max_epochs=max_epochs)
    if live is not None:
        live.end()
    write_train_metrics(root / "metrics" / "train" / f"{variant}.json", result)
    curves(path=root / "reports" / "train" / variant / "curves.png", history=result["history"], title=variant)
    return result


def _live(path: Path):
    try:
        from dvclive import Live
    except ImportError:
        return None
    return Live(dir=str(path), dvcyaml=None, save_dvc_exp=False, report=None)


def run_evaluate(*, params: dict, variant: str, root: Path = Path(".")) -> dict:
    from gazelib.dataset import GazeWindows
    from gazelib.evaluate import evaluate_all, predict, train_fixation_stats
    from gazelib.train import model_from_checkpoint, stats_hash

    index = read_table(root / ALIGNED / "index.parquet")[0]
    stats = json.loads((root / ALIGNED / "norm_stats.json").read_text())
    modalities = params["variants"][variant]["modalities"]
    model, state = model_from_checkpoint(root / "models" / variant / "best.pt", expect={
        "variant": variant, "modalities": list(modalities), "norm_stats_hash": stats_hash(stats)})
    _, gh, gw = grid_shape(params)
    test_files = _split_files(root, index, "test")
    if not test_files:
        raise ValueError("no test video with gaze recordings; check the split ratios")
    cfg = params["train"]
    maps = _index_maps(index)
    ds = GazeWindows(files=test_files, stats=stats, cfg=cfg, grid_hw=(gh, gw), fps=params["align"]["fps"],
                     lengths=maps["length"], n_viewers=maps["viewers"], stride_s=cfg["window_s"])
    preds = predict(model=model, ds=ds)
    labels = {f.stem: read_npz(f) for f in test_files}
    train_xy, inout_rate = train_fixation_stats(train_arrays=[read_npz(f) for f in _split_files(root, index, "train")])
    ev = evaluate_all(preds=preds, labels=labels, train_xy=train_xy, inout_rate=inout_rate, gh=gh, gw=gw,
                      sigma=params["evaluate"]["sal_sigma"])
    metrics = {**ev["means"], "variant": variant, "modalities": modalities, "n_test_videos": len(test_files),
               "test_videos": sorted(labels)}
    write_json(root / "metrics" / "eval" / f"{variant}.json", metrics)
    rep = root / "reports" / "eval" / variant
    write_table(rep / "per_video.parquet", ev["table"])
    write_text(rep / "per_video.md", ev["table"].round(4).to_markdown(index=False) + "\n")
    write_table(rep / "steps.parquet", ev["steps"][ev["steps"]["model"] == "model"])
    _overlays(root=root, params=params, variant=variant, preds=preds, labels=labels, gh=gh, gw=gw)
    return metrics


def _overlays(*, root: Path, params: dict, variant: str, preds: dict, labels: dict, gh: int, gw: int) -> None:
    from gazelib.media import iter_frames
    from gazelib.viz import overlay

    manifest = load_manifest(root).set_index("video_id")
    out = root / "reports" / "viz" / variant
    for old in out.glob("viz_*.png") if out.exists() else []:
        old.unlink()
    n = params["evaluate"]["viz_frames"]
    for vid in sorted(preds)[:2]:
        lab = labels[vid]
        cand = np.nonzero((lab["valid"] & (lab["inout"] > 0)).sum(0) >= 2)[0]
        if cand.size == 0:
            continue
        steps = cand[np.linspace(0, cand.size - 1, n).astype(int)]
        times = {float(lab["t"][s]): int(s) for s in steps}
        row = manifest.loc[vid]
        for t, frame in iter_frames(path=row["video_path"], sample_fps=params["align"]["fps"],
                                    width=int(row["width"]), height=int(row["height"]), video_id=vid):
            s = next((times[k] for k in times if abs(k - t) < 0.5 / params["align"]["fps"]), None)
            if s is None:
                continue
            ok = lab["valid"][:, s] & (lab["inout"][:, s] > 0)
            overlay(path=out / f"viz_{vid}_{s:05d}.png", frame=frame, prob=preds[vid]["prob"][:, s].mean(0),
                    gh=gh, gw=gw, gaze=lab["gaze"][ok, s], title=f"{variant} {vid} t={t:.1f}s")


def run_compare(*, params: dict, root: Path = Path(".")) -> dict:
    from gazelib.compare import compare_variants, render_table
    from gazelib.viz import bar_compare

    evals, steps = {}, {}
    for v in params["variants"]:
        p = root / "metrics" / "eval" / f"{v}.json"
        if not p.exists():
            raise FileNotFoundError(f"{p} missing: run evaluate@{v}")
        evals[v] = json.loads(p.read_text())
        steps[v] = read_table(root / "reports" / "eval" / v / "steps.parquet")[0]
    ecfg = params["evaluate"]
    cmp = compare_variants(evals=evals, steps=steps, baseline="baseline", n_boot=ecfg["n_bootstrap"],
                           seed=params["seed"], min_videos=ecfg["bootstrap_min_videos"],
                           block_steps=int(round(ecfg["bootstrap_block_s"] * params["align"]["fps"])),
                           block_s=ecfg["bootstrap_block_s"])
    write_json(root / "metrics" / "compare.json", cmp)
    table = render_table(cmp)
    base = cmp["variants"]["baseline"]
    names = list(cmp["variants"])
    vals = [cmp["variants"][n]["metrics"]["auc"] for n in names]
    lo = [base["metrics"]["auc"] + cmp["variants"][n]["delta_vs_baseline"].get("auc", {"ci95": [0, 0]})["ci95"][0]
          if n != "baseline" else vals[i] for i, n in enumerate(names)]
    hi = [base["metrics"]["auc"] + cmp["variants"][n]["delta_vs_baseline"].get("auc", {"ci95": [0, 0]})["ci95"][1]
          if n != "baseline" else vals[i] for i, n in enumerate(names)]
    bar_compare(path=root / "reports" / "compare.png", names=names, values=vals, lo=lo, hi=hi,
                floor=base["floor_centre_prior"]["auc"], ceiling=base["ceiling_inter_observer"]["auc"], metric="AUC")
    write_text(root / "reports" / "compare.md", "# Variant comparison (test split)\n\n" + table +
               "\n![AUC per variant](compare.png)\n")
    print(table)
    return cmp
