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


SPLITS = ("train", "val", "test")


def check_splits(*, videos: pd.DataFrame, where: str) -> None:
    """Fail before any training when a split has no video (with ``viewers`` > 0 where known)."""
    usable = videos[videos["viewers"] > 0] if "viewers" in videos else videos
    empty = [s for s in SPLITS if not (usable["split"] == s).any()]
    if empty:
        counts = {s: int((usable["split"] == s).sum()) for s in SPLITS}
        raise ValueError(f"{where}: split {empty} has no video with gaze ({counts}); add videos or set "
                         f"splits in corpus.yaml / ingest.split_ratios so every split has at least one")


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
    check_splits(videos=result.manifest.rename(columns={"n_viewers": "viewers"}), where=f"{corpus}: ingest")
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
    check_splits(videos=pd.DataFrame(rows, columns=["video_id", "split", "viewers"]), where="align")
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
    """Train ``variant`` once per seed in ``train.seeds`` into ``models/<variant>/seed<k>/``."""
    from gazelib.train import train_variant, write_train_metrics
    from gazelib.viz import curves

    if variant not in params["variants"]:
        raise KeyError(f"unknown variant {variant!r}; params.yaml has {list(params['variants'])}")
    if variant in RESERVED_ROWS:
        raise ValueError(f"variant name {variant!r} is reserved for a floor or ceiling row; rename it")
    seeds = list(params["train"]["seeds"])
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"train.seeds must be a non-empty list of distinct seeds, got {seeds}")
    index = read_table(root / ALIGNED / "index.parquet")[0]
    stats = json.loads((root / ALIGNED / "norm_stats.json").read_text())
    cfg = {k: v for k, v in params["train"].items() if k != "seeds"}
    results = []
    for seed in seeds:
        out_dir = root / "models" / variant / f"seed{seed}"
        out_dir.mkdir(parents=True, exist_ok=True)
        live = _live(root / "reports" / "train" / variant / f"seed{seed}")
        result = train_variant(variant=variant, modalities=params["variants"][variant]["modalities"],
                               train_files=_split_files(root, index, "train"),
                               val_files=_split_files(root, index, "val"), index=_index_maps(index), stats=stats,
                               grid_shape=grid_shape(params), fps=params["align"]["fps"], cfg=cfg,
                               model_cfg=params["model"], out_dir=out_dir, seed=seed, live=live,
                               max_epochs=max_epochs)
        if live is not None:
            live.end()
        curves(path=root / "reports" / "train" / variant / f"seed{seed}" / "curves.png",
               history=result["history"], title=f"{variant} seed {seed}")
        results.append({k: v for k, v in result.items() if k != "history"} | {"seed": seed})
    summary = {"variant": variant, "seeds": {f"seed{r['seed']}": r for r in results},
               "wall_s": float(sum(r["wall_s"] for r in results)),
               "epochs_run_mean": float(np.mean([r["epochs_run"] for r in results])),
               "best_val_loss_mean": float(np.mean([r["best_val_loss"] for r in results]))}
    write_train_metrics(root / "metrics" / "train" / f"{variant}.json", summary)
    return summary


def _live(path: Path):
    try:
        from dvclive import Live
    except ImportError:
        return None
    return Live(dir=str(path), dvcyaml=None, save_dvc_exp=False, report=None)


def _labels(files: list[Path]) -> dict[str, dict]:
    from gazelib.floors import LABEL_KEYS

    return {f.stem: read_npz(f, keys=LABEL_KEYS) for f in files}


FLOORS = Path("models/floors/floors.json")
RESERVED_ROWS = ("floors", "centre_prior", "persistence", "inter_observer")


def run_fit_floors(*, params: dict, root: Path = Path(".")) -> dict:
    """Fit the centre prior, persistence and inter-observer predictors on the train split."""
    from gazelib.floors import fit_floors

    index = read_table(root / ALIGNED / "index.parquet")[0]
    train_files = _split_files(root, index, "train")
    if not train_files:
        raise ValueError("no train video with gaze recordings: floors cannot be fitted")
    ecfg = params["evaluate"]
    _, gh, gw = grid_shape(params)
    floors = fit_floors(train=list(_labels(train_files).values()), gh=gh, gw=gw,
                        horizon_s=params["train"]["horizon_s"], sigmas=ecfg["floor_sigmas"],
                        weights=ecfg["floor_weights"], eps=ecfg["prior_eps"], seed=params["seed"])
    write_json(root / FLOORS, floors)
    return floors


def run_evaluate(*, params: dict, variant: str, root: Path = Path(".")) -> dict:
    """Score every seed of ``variant``, the floors and the ceiling on the test split by one protocol."""
    from gazelib.dataset import GazeWindows
    from gazelib.evaluate import eval_map_shape, leak_check, predict, sauc_negatives, score_rows, summarise
    from gazelib.floors import floor_predictions
    from gazelib.metrics import resize_bilinear
    from gazelib.train import model_from_checkpoint, stats_hash

    index = read_table(root / ALIGNED / "index.parquet")[0]
    stats = json.loads((root / ALIGNED / "norm_stats.json").read_text())
    floors = json.loads((root / FLOORS).read_text())
    modalities = params["variants"][variant]["modalities"]
    ecfg, cfg, fps = params["evaluate"], params["train"], params["align"]["fps"]
    _, gh, gw = grid_shape(params)
    test_files = _split_files(root, index, "test")
    if not test_files:
        raise ValueError("no test video with gaze recordings; check the split ratios")
    maps = _index_maps(index)
    train_cfg = {k: v for k, v in cfg.items() if k != "seeds"}
    ds = GazeWindows(files=test_files, stats=stats, cfg=train_cfg, grid_hw=(gh, gw), fps=fps,
                     lengths=maps["length"], n_viewers=maps["viewers"], stride_s=cfg["window_s"])
    labels = _labels(test_files)
    manifest = load_manifest(root).set_index("video_id")
    prior = np.asarray(floors["prior"], np.float64).reshape(1, gh, gw)
    per_video = {}
    for vid in sorted(labels):
        hw = eval_map_shape(width=int(manifest.loc[vid, "width"]), height=int(manifest.loc[vid, "height"]),
                            saliency_width=ecfg["saliency_width"])
        per_video[vid] = {"eval_hw": hw, "prior_eval": resize_bilinear(maps=prior, out_hw=hw)[0],
                          "other_xy": sauc_negatives(labels=labels, video_id=vid, max_n=ecfg["sauc_negatives"],
                                                     seed=params["seed"])}

    def score(row: str, seed: int, preds: dict) -> pd.DataFrame:
        frames = []
        for vid in sorted(preds):
            df = score_rows(prob=preds[vid]["prob"], p_in=preds[vid]["p_in"], lab=labels[vid], gh=gh, gw=gw,
                            fixation_sigma=ecfg["fixation_map_sigma"], **per_video[vid])
            frames.append(df.assign(row=row, seed=seed, video_id=vid))
        return pd.concat(frames, ignore_index=True)

    tables, models, first_preds = [], {}, None
    for seed in cfg["seeds"]:
        model, _ = model_from_checkpoint(root / "models" / variant / f"seed{seed}" / "best.pt", expect={
            "variant": variant, "modalities": list(modalities), "norm_stats_hash": stats_hash(stats), "seed": seed})
        models[seed] = model
        preds = predict(model=model, ds=ds)
        first_preds = first_preds or preds
        tables.append(score(variant, seed, preds))
    floor_preds: dict[str, dict] = {}
    for vid in sorted(labels):
        for name, (prob, p_in) in floor_predictions(floors=floors, lab=labels[vid], gh=gh, gw=gw).items():
            floor_preds.setdefault(name, {})[vid] = {"prob": prob, "p_in": p_in}
    for name, preds in floor_preds.items():
        tables.append(score(name, -1, preds))
    samples = pd.concat(tables, ignore_index=True)
    first = sorted(labels)[0]
    leak = leak_check(model=models[cfg["seeds"][0]], arrays=read_npz(ds.files[first]), video_id=first, stats=stats,
                      cfg=train_cfg, fps=fps, grid_hw=(gh, gw), seed=params["seed"])
    log.info("%s: leak check on %s: max |dlogit| %.3g, mass moved %.3g", variant, first,
             leak["max_abs_dlogit"], leak["max_prob_mass_moved"])
    per_seed = {int(s): summarise(samples[(samples["row"] == variant) & (samples["seed"] == s)]) for s in cfg["seeds"]}
    model_mean = {k: float(np.nanmean([p[k] for p in per_seed.values()])) for k in per_seed[cfg["seeds"][0]]}
    metrics = {"model": model_mean, "model_per_seed": {f"seed{s}": v for s, v in per_seed.items()},
               **{name: summarise(samples[samples["row"] == name]) for name in floor_preds},
               "leak_check": leak, "variant": variant, "modalities": modalities, "seeds": list(cfg["seeds"]),
               "n_test_videos": len(test_files), "test_videos": sorted(labels), "protocol": PROTOCOL}
    write_json(root / "metrics" / "eval" / f"{variant}.json", metrics)
    rep = root / "reports" / "eval" / variant
    write_table(rep / "samples.parquet", samples)
    from gazelib.evaluate import MEAN_KEYS

    table = samples.groupby(["video_id", "row"], sort=True)[list(MEAN_KEYS)].mean().reset_index()
    write_text(rep / "per_video.md", f"# {variant}: per-video means (model rows averaged over seeds)\n\n"
               + table.round(4).to_markdown(index=False) + "\n")
    _overlays(root=root, params=params, variant=variant, preds=first_preds, labels=labels, gh=gh, gw=gw)
    return metrics


PROTOCOL = ("Protocol (every row alike: model seeds, centre prior, persistence, inter-observer ceiling): each row "
            "predicts a distribution over the grid cells per viewer and step. auc_vat / l2_vat follow the "
            "VideoAttentionTarget evaluation code (heatmap resized to 64x64, 19x19 positive patch, argmax on the "
            "64x64 map), on valid in-frame samples; hit1_cell / hit5_cell on the grid itself. The saliency family "
            "(NSS, CC, SIM, KL, AUC-Judd, sAUC, IG over the train centre prior) follows pysaliency, per fixation: "
            "the map a row predicts for one viewer at one frame, resized bilinearly to a 64-column evaluation map, "
            "against that viewer's fixation. inout_ap (in-frame positive, as published) and out_ap pool all valid "
            "samples.")


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
    """Every variant, floor and the ceiling; deltas vs the baseline and persistence with intervals."""
    from gazelib.compare import compare_rows, render_report
    from gazelib.viz import bar_compare

    ccfg = params["compare"]
    variants = list(params["variants"])
    if ccfg["baseline"] not in variants:
        raise KeyError(f"compare.baseline {ccfg['baseline']!r} is not a variant in params.yaml ({variants})")
    tables, protocol = [], None
    for v in variants:
        p = root / "reports" / "eval" / v / "samples.parquet"
        if not p.exists():
            raise FileNotFoundError(f"{p} missing: run evaluate@{v}")
        df = read_table(p)[0]
        keep = df["row"] == v if v != ccfg["baseline"] else np.ones(len(df), bool)  # floors from one file
        tables.append(df[keep])
        protocol = json.loads((root / "metrics" / "eval" / f"{v}.json").read_text())["protocol"]
    samples = pd.concat(tables, ignore_index=True)
    rows = {v: "variant" for v in variants} | {"centre_prior": "floor", "persistence": "floor",
                                                "inter_observer": "ceiling"}
    cmp = compare_rows(samples=samples, rows=rows, references=[ccfg["baseline"], "persistence"],
                       n_boot=params["evaluate"]["n_bootstrap"], seed=params["seed"])
    write_json(root / "metrics" / "compare.json", cmp)
    md = render_report(cmp, protocol or "")
    names = list(rows)
    key = "auc_vat"
    vals = [cmp["rows"][n]["metrics"][key] for n in names]
    base = cmp["rows"][ccfg["baseline"]]["metrics"][key]
    ref = f"vs_{ccfg['baseline']}"
    lo = [base + cmp["deltas"][n][ref][key]["ci95"][0] if ref in cmp["deltas"][n] else vals[i]
          for i, n in enumerate(names)]
    hi = [base + cmp["deltas"][n][ref][key]["ci95"][1] if ref in cmp["deltas"][n] else vals[i]
          for i, n in enumerate(names)]
    bar_compare(path=root / "reports" / "compare.png", names=names, values=vals, lo=lo, hi=hi,
                floor=cmp["rows"]["persistence"]["metrics"][key], ceiling=cmp["rows"]["inter_observer"]["metrics"][key],
                metric=key)
    write_text(root / "reports" / "compare.md", "# Variant comparison (test split)\n\n" + md +
               f"\n![{key} per row](compare.png)\n")
    print(md)
    return cmp
