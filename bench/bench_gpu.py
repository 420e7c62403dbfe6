"""The CUDA training path on a GPU: the training step's speed and the real stage function.

1. ``--make-root DIR`` (here, on the CPU machine, after ``dvc repro align floors``): a small copy of the
   pipeline's inputs for training (the aligned files of 4 train, 1 val and 1 test video, the index with its
   metadata, the norm stats, the manifest, the floors, params.yaml), about 45 MB: what fits the transfer to
   a lent GPU machine.
2. ``python -m bench.bench_gpu DIR`` on the GPU machine: the training step as ``train_variant`` runs it
   (autocast and GradScaler on CUDA) on real windows at batch 16, 64 and 256 for baseline and multimodal
   (ms per step, windows/s), then ``run_train`` itself on CUDA (2 seeds, 4 epochs) with its checkpoints
   loaded back on the CPU and run over the test video (finite maps that sum to 1); then those checkpoints in
   eval mode on CUDA against the CPU on the same windows (padding included), and causality on CUDA (inputs
   after step k replaced, outputs at steps <= k unchanged); then each variant trained twice with the same
   seed on CUDA, its weights hashed (the same bytes?). Writes
   ``$OUT/gpu_check.json`` (or /tmp).
"""
import json, os, sys, time, traceback
from pathlib import Path
t_start = time.time()
import gazelib  # noqa: F401
import numpy as np
import torch
out = {"torch": torch.__version__, "cuda": torch.cuda.is_available(),
       "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
print(out, flush=True)
OUT = Path(os.environ.get("OUT", "/tmp"))
if "--make-root" in sys.argv:
    import shutil
    from gazelib.core.io import read_table, write_table
    dst_root = Path(sys.argv[sys.argv.index("--make-root") + 1])
    src, dst = Path("data/aligned"), dst_root / "data" / "aligned"
    dst.mkdir(parents=True, exist_ok=True)
    idx, meta = read_table(src / "index.parquet")
    keep = ([*idx[idx.split == "train"].video_id[:4]] + [*idx[idx.split == "val"].video_id[:1]]
            + [*idx[idx.split == "test"].video_id[:1]])
    write_table(dst / "index.parquet", idx[idx.video_id.isin(keep)].reset_index(drop=True), meta=meta)
    for name in [f"{v}.npz" for v in keep] + ["norm_stats.json", "feature_params.json"]:
        shutil.copy(src / name, dst / name)
    for f in ("data/interim/manifest.parquet", "models/floors/floors.json", "params.yaml"):
        (dst_root / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dst_root / f)
    print("wrote", dst_root, keep)
    sys.exit(0)
root = Path(sys.argv[1] if len(sys.argv) > 1 else "gpu/root")

def save():
    (OUT / "gpu_check.json").write_text(json.dumps(out, indent=1, default=str))

from gazelib.core.params import load_params, setup_logging
setup_logging("WARNING")
params = load_params(root / "params.yaml")
# B. the training step on real windows, as train_variant runs it (autocast + GradScaler on CUDA)
try:
    from gazelib.data.dataset import GazeWindows
    from gazelib.core.layout import index_grid, index_maps, read_index, read_norm_stats, split_files
    from gazelib.core.cells import cell_centres
    from gazelib.model.net import build_model
    from gazelib.model.train import compute_loss, make_model_config, model_inputs
    index, meta = read_index(root); stats = read_norm_stats(root); maps = index_maps(index)
    grid = index_grid(meta); gh, gw = grid[1:]
    cfg = {k: v for k, v in params["train"].items() if k != "seeds"}
    ds = GazeWindows(files=split_files(root, index, "train"), stats=stats, cfg=cfg, grid_hw=(gh, gw), fps=meta["fps"],
                     lengths=maps["length"], n_viewers=maps["viewers"])
    # the test video in whole windows: what parts C and D run the trained checkpoints over
    test = GazeWindows(files=split_files(root, index, "test"), stats=stats, cfg=cfg, grid_hw=(gh, gw), fps=meta["fps"],
                       lengths=maps["length"], n_viewers=maps["viewers"], stride_s=cfg["window_s"])
    dev = torch.device("cuda")
    centres = torch.tensor(cell_centres(gh, gw), dtype=torch.float32, device=dev)
    steps = {}
    for variant in ("baseline", "multimodal"):
        mods = params["variants"][variant]["modalities"]
        mcfg = make_model_config(variant=variant, modalities=mods, stats=stats, grid_shape=grid, model_cfg=params["model"])
        for bs in (16, 64, 256):
            torch.manual_seed(0)
            model = build_model(mcfg).to(dev)
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            scaler = torch.amp.GradScaler("cuda")
            batch = model_inputs(ds.batch([i % len(ds) for i in range(bs)]), dev)
            def step():
                with torch.autocast(device_type="cuda"):
                    o = model(batch)
                loss, _ = compute_loss({k: v.float() for k, v in o.items()}, batch, centres, cfg)
                opt.zero_grad(set_to_none=True); scaler.scale(loss).backward(); scaler.step(opt); scaler.update()
            for _ in range(5): step()
            torch.cuda.synchronize(); t0 = time.perf_counter(); n = 30
            for _ in range(n): step()
            torch.cuda.synchronize(); dt = (time.perf_counter() - t0) / n
            steps[f"{variant}_b{bs}"] = {"ms_per_step": round(dt * 1e3, 2), "windows_per_s": round(bs / dt, 1)}
            print(variant, bs, steps[f"{variant}_b{bs}"], flush=True)
    out["train_step"] = steps
except Exception:
    out["train_step_error"] = traceback.format_exc(); print(out["train_step_error"], flush=True)
save()
# C. the real stage function on CUDA: run_train (2 seeds, 4 epochs), then the checkpoint on the CPU
try:
    from gazelib.model.train import run_train
    from gazelib.model.checkpoint import model_from_checkpoint
    from gazelib.model.inference import predict
    runs = {}
    for variant in ("baseline", "multimodal"):
        p = json.loads(json.dumps(params))
        p["train"].update({"seeds": [0, 1], "seed_workers": 1, "epochs": 4})
        t0 = time.perf_counter()
        s = run_train(params=p, variant=variant, root=root)
        wall = time.perf_counter() - t0
        seeds = s["seeds"]
        win = sum(v["train_windows"] * v["epochs_run"] for v in seeds.values())
        runs[variant] = {"wall_s": round(wall, 1), "windows_per_s": round(win / wall, 1),
                         "device": {k: v["device"] for k, v in seeds.items()},
                         "best_val_loss": {k: v["best_val_loss"] for k, v in seeds.items()}}
        model, _ = model_from_checkpoint(root / "models" / variant / "seed0" / "best.pt")
        model = model.cpu()
        pr = predict(model=model, ds=test)
        runs[variant]["cpu_predict_finite"] = bool(all(np.isfinite(v["prob"]).all() for v in pr.values()))
        runs[variant]["cpu_predict_prob_sums"] = float(np.mean([v["prob"].sum(-1).mean() for v in pr.values()]))
        print(variant, runs[variant], flush=True)
    out["run_train"] = runs
except Exception:
    out["run_train_error"] = traceback.format_exc(); print(out["run_train_error"], flush=True)
# D. inference on CUDA: the seed-0 checkpoints in eval mode (the encoder's fast path, boolean causal and padding
# masks) on CUDA against the CPU over the test video's windows, short windows padded at the end; then causality
# on CUDA: every input after step k replaced by noise leaves the outputs at steps <= k unchanged
try:
    parity = {}
    for variant in ("baseline", "multimodal"):
        model, _ = model_from_checkpoint(root / "models" / variant / "seed0" / "best.pt")
        model.eval()
        batch = test.batch(list(range(min(len(test), 32))))
        # windows of a whole test video are full: pad the last fifth of every other window, as a short window is
        n_pad = batch["pad"].shape[1] // 5
        batch["pad"][::2, -n_pad:] = True
        with torch.no_grad():
            cpu = model.cpu()(batch)
            gpu = {k: v.cpu() for k, v in model.to(dev)(model_inputs(batch, dev)).items()}
            valid = ~batch["pad"]
            p_c = torch.softmax(cpu["heatmap_logits"], -1)[valid]
            p_g = torch.softmax(gpu["heatmap_logits"], -1)[valid]
            k = batch["pad"].shape[1] // 2
            pert = {n: (v.clone() if v.is_floating_point() else v) for n, v in batch.items()}
            g = torch.Generator().manual_seed(1)
            for n, v in pert.items():
                if v.is_floating_point() and v.dim() >= 2 and v.shape[1] == batch["pad"].shape[1]:
                    v[:, k + 1:] = torch.randn(v[:, k + 1:].shape, generator=g)
            gpu2 = model(model_inputs(pert, dev))["heatmap_logits"].cpu()
            unpadded = model(model_inputs({**batch, "pad": torch.zeros_like(batch["pad"])}, dev))["heatmap_logits"].cpu()
        parity[variant] = {
            "windows": int(batch["pad"].shape[0]), "padded_steps": int(batch["pad"].sum()),
            "finite_on_cuda": bool(torch.isfinite(gpu["heatmap_logits"][valid]).all()),
            "max_abs_prob_diff": float((p_c - p_g).abs().max()),
            "max_abs_inout_logit_diff": float((cpu["inout_logits"][valid] - gpu["inout_logits"][valid]).abs().max()),
            "causal_max_abs_logit_change_at_or_before_k": float((gpu2[:, :k + 1] - gpu["heatmap_logits"][:, :k + 1]).abs().max()),
            "after_k_changed": float((gpu2[:, k + 1:] - gpu["heatmap_logits"][:, k + 1:]).abs().max()),
            "padding_changes_valid_steps_on_cuda": float((unpadded[valid] - gpu["heatmap_logits"][valid]).abs().max()),
        }
        print(variant, parity[variant], flush=True)
    out["cuda_inference"] = parity
except Exception:
    out["cuda_inference_error"] = traceback.format_exc(); print(out["cuda_inference_error"], flush=True)
# E. the same seed twice on CUDA: the same weights?
try:
    import hashlib
    import shutil
    det = {}
    for variant in ("baseline", "multimodal"):
        digests = []
        for _ in range(2):
            p = json.loads(json.dumps(params))
            p["train"].update({"seeds": [0], "seed_workers": 1, "epochs": 3})
            shutil.rmtree(root / "models" / variant, ignore_errors=True)   # a rerun would resume, not train
            run_train(params=p, variant=variant, root=root)
            model, _ = model_from_checkpoint(root / "models" / variant / "seed0" / "best.pt")
            h = hashlib.sha256()
            for name, tensor in model.state_dict().items():
                h.update(name.encode()); h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            digests.append(h.hexdigest()[:16])
        det[variant] = {"weights_sha256": digests, "identical": digests[0] == digests[1]}
        print(variant, det[variant], flush=True)
    out["cuda_same_seed_twice"] = det
except Exception:
    out["cuda_same_seed_twice_error"] = traceback.format_exc(); print(out["cuda_same_seed_twice_error"], flush=True)
out["total_s"] = round(time.time() - t_start, 1)
save()
print(json.dumps(out, indent=1, default=str))
