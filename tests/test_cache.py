"""Per-video cache: adding a video recomputes only that video; interrupted work resumes."""
from __future__ import annotations

import shutil

import pytest

from gazelib.core.cache import VideoCache, cache_key, read_stage_report, run_per_video
from gazelib.demo.corpus import generate_corpus
from gazelib.features.audio import run_extract_audio
from gazelib.features.text import run_extract_text
from gazelib.features.visual import run_extract_visual
from gazelib.gaze.ingest import run_ingest

EXTRACT = ("extract_audio", "extract_text", "extract_visual")


STAGE_RUNS = {"extract_audio": run_extract_audio, "extract_text": run_extract_text,
              "extract_visual": run_extract_visual}


def test_adding_a_video_recomputes_only_that_video(tmp_path, tiny_corpus):
    src, params = tiny_corpus
    root = tmp_path / "repo"
    shutil.copytree(src, root / "data/raw/demo")
    run_ingest(params=params, root=root)
    first = {s: STAGE_RUNS[s](params=params, root=root) for s in EXTRACT}
    assert all(sorted(r["computed"]) == ["demo000", "demo001", "demo002"] for r in first.values())
    mtimes = {p: p.stat().st_mtime_ns for p in (root / "data/features").rglob("demo00[012]*")}

    # same seed, one more video: demo003 is new, the others are byte-identical
    extra = tmp_path / "extra"
    generate_corpus(out_dir=extra, cfg={**params["demo"], "n_videos": 4})
    for sub in ("videos/demo003.mp4", "subtitles/demo003.srt", "gaze/demo003"):
        (shutil.copytree if (extra / sub).is_dir() else shutil.copy)(extra / sub, root / "data/raw/demo" / sub)
    run_ingest(params=params, root=root)
    second = {s: STAGE_RUNS[s](params=params, root=root) for s in EXTRACT}
    for s, r in second.items():
        assert r["computed"] == ["demo003"], (s, r)
        assert sorted(r["cached"]) == ["demo000", "demo001", "demo002"], (s, r)
    assert all(p.stat().st_mtime_ns == m for p, m in mtimes.items())

    # a changed stage param recomputes every video of that stage only
    params2 = {**params, "visual": {**params["visual"], "cut_threshold": 0.5}}
    r = run_extract_visual(params=params2, root=root)
    assert sorted(r["computed"]) == ["demo000", "demo001", "demo002", "demo003"]


def test_interrupted_run_resumes(tmp_path):
    out = tmp_path / "out"
    cache = VideoCache(out, "stage")
    items = [{"video_id": f"v{i}", "media_hash": str(i)} for i in range(4)]
    calls = []

    def compute(item, fail_on=None):
        if item["video_id"] == fail_on:
            raise KeyboardInterrupt  # the run dies mid-way
        calls.append(item["video_id"])
        p = out / f"{item['video_id']}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
        return [p]

    with pytest.raises(KeyboardInterrupt):
        run_per_video(cache=cache, items=items, params={}, compute=lambda it: compute(it, "v2"), progress=False)
    assert calls == ["v0", "v1"]
    calls.clear()
    run = run_per_video(cache=cache, items=items, params={}, compute=compute, progress=False)
    assert calls == ["v2", "v3"] and run.cached == ["v0", "v1"]
    # a deleted output invalidates its record
    (out / "v0.txt").unlink()
    run = run_per_video(cache=cache, items=items, params={}, compute=compute, progress=False)
    assert run.computed == ["v0"]
    # videos that left the manifest lose their outputs
    run = run_per_video(cache=cache, items=items[:2], params={}, compute=compute, progress=False)
    assert sorted(run.removed) == ["v2", "v3"] and not (out / "v3.txt").exists()
    assert cache_key(stage="a", input_hash="h", params={"x": 1}) != cache_key(stage="a", input_hash="h",
                                                                              params={"x": 2})


def test_skip_mode_reports_and_keeps_going(tmp_path):
    out = tmp_path / "o"
    items = [{"video_id": f"v{i}", "media_hash": str(i)} for i in range(3)]

    def compute(item):
        if item["video_id"] == "v1":
            raise ValueError("v1: broken file")
        p = out / f"{item['video_id']}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
        return [p]

    run = run_per_video(cache=VideoCache(out, "s"), items=items, params={}, compute=compute, on_error="skip",
                        progress=False)
    assert run.computed == ["v0", "v2"] and "broken" in run.failed["v1"]


def test_a_failing_video_loses_its_old_outputs_and_is_reported(tmp_path):
    """v1 succeeded before; now its input changed and it fails: its outputs (also a side table and
    a file the failed attempt left) and its record are gone, and the stage report says why."""
    out = tmp_path / "o"
    items = [{"video_id": f"v{i}", "media_hash": "a"} for i in range(3)]

    def compute(item, out=out):
        vid = item["video_id"]
        (out / "side").mkdir(parents=True, exist_ok=True)
        (out / f"{vid}.parquet").write_text("x")
        (out / "side" / f"{vid}.json").write_text("{}")
        if vid == "v1" and item["media_hash"] == "b":
            (out / f"{vid}.npz").write_text("half")   # written before the failure
            raise ValueError(f"{vid}: decoder error")
        return [out / f"{vid}.parquet", out / "side" / f"{vid}.json"]

    run_per_video(cache=VideoCache(out, "s"), items=items, params={}, compute=compute, progress=False)
    assert (out / "v1.parquet").exists() and (out / "_cache/v1.json").exists()
    items[1] = {"video_id": "v1", "media_hash": "b"}
    run = run_per_video(cache=VideoCache(out, "s"), items=items, params={}, compute=compute, on_error="skip",
                        progress=False)
    assert list(run.failed) == ["v1"]
    assert not any((out / f).exists() for f in ("v1.parquet", "v1.npz", "side/v1.json", "_cache/v1.json"))
    assert (out / "v0.parquet").exists() and (out / "v10.parquet").exists() is False
    report = read_stage_report(out)
    assert report == {"stage": "s", "videos": ["v0", "v2"], "failed": {"v1": "ValueError: v1: decoder error"}}
    last = read_stage_report(out, last_run=True)
    assert last["reused"] == ["v0", "v2"] and last["computed"] == [] and list(last["failed"]) == ["v1"]
    # the tracked report does not depend on the cache's history: a fresh run writes the same bytes
    fresh = tmp_path / "fresh"
    shutil.copytree(out, fresh)
    shutil.rmtree(fresh / "_cache")
    run_per_video(cache=VideoCache(fresh, "s"), items=items, params={}, compute=lambda it: compute(it, fresh),
                  on_error="skip", progress=False)
    assert (fresh / "_report.json").read_bytes() == (out / "_report.json").read_bytes()
    assert read_stage_report(fresh, last_run=True)["computed"] == ["v0", "v2"]
    # the same failure with on_error=raise: outputs removed too, then the error propagates
    run_per_video(cache=VideoCache(out, "s"), items=[{"video_id": "v1", "media_hash": "a"}], params={},
                  compute=compute, progress=False)
    with pytest.raises(ValueError, match="decoder error"):
        run_per_video(cache=VideoCache(out, "s"), items=[{"video_id": "v1", "media_hash": "b"}], params={},
                      compute=compute, progress=False)
    assert not (out / "v1.parquet").exists()


def test_align_masks_a_modality_whose_extractor_failed(tmp_path, tiny_corpus, caplog):
    """A video whose audio extraction fails keeps no stale audio; align masks audio and says so."""
    import logging

    from gazelib.data.align import run_align
    from gazelib.core.io import read_npz

    src, params = tiny_corpus
    root = tmp_path / "repo"
    shutil.copytree(src, root / "data/raw/demo")
    params = {**params, "visual": {**params["visual"], "image_model": "none"}}
    run_ingest(params=params, root=root)
    run_extract_audio(params=params, root=root)
    run_extract_visual(params=params, root=root)
    assert (root / "data/features/audio/demo001.parquet").exists()
    # demo001's video is now truncated (a new input, so a new cache key): audio extraction fails
    video = root / "data/raw/demo/videos/demo001.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    manifest_path = root / "data/interim/manifest.parquet"
    from gazelib.core.io import read_table, write_table

    m, meta = read_table(manifest_path)
    m.loc[m["video_id"] == "demo001", "media_hash"] = "changed"   # its input changed since the last run
    write_table(manifest_path, m, meta=meta)
    r = run_extract_audio(params=params, root=root)
    assert list(r["failed"]) == ["demo001"]
    assert not (root / "data/features/audio/demo001.parquet").exists()
    with caplog.at_level(logging.WARNING):
        run_align(params=params, root=root)
    assert "demo001: extract_audio failed" in caplog.text and "audio is masked" in caplog.text
    a = read_npz(root / "data/aligned/demo001.npz")
    assert not a["mask"][:, 0].any() and a["mask"][:, 2].any()
    assert "demo001" in read_stage_report(root / "data/aligned")["masked_upstream"]


# ---------------------------------------------------------------- keys on what the stage runs
def _package_copy(tmp_path):
    """A copy of the gazelib package to edit (the registry reads code from ``root``)."""
    from gazelib.core.closure import PACKAGE, ROOT

    root = tmp_path / "src"
    shutil.copytree(ROOT / PACKAGE, root / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _append(path, text="\n# edited\n"):
    with open(path, "a") as fh:
        fh.write(text)


def test_stage_code_follows_the_import_closure(tmp_path, base_params):
    """An edit anywhere in a stage's closure (io.py is in every one) changes its key; an edit
    outside it (compare.py) changes none; transcript.py is text's alone."""
    from gazelib.core.closure import STAGES, stage_code

    root = _package_copy(tmp_path)
    from gazelib.features.text import text_config

    cfg = {"extract_audio": base_params["audio"], "extract_text": text_config(base_params),
           "extract_visual": base_params["visual"], "align": base_params["align"],
           "predict_audio": base_params["audio"], "predict_text": text_config(base_params),
           "predict_visual": base_params["visual"], "predict_align": base_params["align"]}

    def digests():
        return {s: stage_code(stage=s, cfg=cfg.get(s, {}), root=root).digest for s in STAGES}

    before = digests()
    _append(root / "gazelib/eval/compare.py")
    assert digests() == before
    _append(root / "gazelib/features/transcript.py")
    after = digests()
    assert {s for s in STAGES if after[s] != before[s]} == {"extract_text", "predict_text", "predict"}
    _append(root / "gazelib/core/io.py")
    assert all(v != after[k] for k, v in digests().items())


def test_predict_keys_come_from_the_stage_registry(base_params):
    """predict's feature caches key on the same closure as the pipeline stage, plus serve/extract.py."""
    from gazelib.core.closure import stage_code

    from gazelib.features.text import text_config

    for part, cfg in (("audio", base_params["audio"]), ("text", text_config(base_params)),
                      ("visual", base_params["visual"]), ("align", base_params["align"])):
        stage = stage_code(stage="align" if part == "align" else f"extract_{part}", cfg=cfg)
        pred = stage_code(stage=f"predict_{part}", cfg=cfg)
        assert set(stage.code) < set(pred.code) and "gazelib/serve/extract.py" in pred.code, part
        assert set(stage.weights) <= set(pred.weights), part
    assert "gazelib/features/transcript.py" in stage_code(stage="extract_text", cfg=text_config(base_params)).code


def test_weight_resolvers_run_only_code_in_the_stage_closure(monkeypatch):
    from gazelib.core import closure

    monkeypatch.setitem(closure.STAGES, "sneaky", closure.Stage(
        ("core/media.py",), weights=lambda cfg, use: {"m": use("model/train.py", "train_variant")()}))
    with pytest.raises(RuntimeError, match="outside the stage's code"):
        closure.stage_code(stage="sneaky")
    with pytest.raises(KeyError, match="no stage 'nope'"):
        closure.stage_code(stage="nope")


def test_weight_files_hash_once_per_process(tmp_path, monkeypatch):
    import os

    from gazelib.core import closure

    calls = []
    real = closure.hash_file
    monkeypatch.setattr(closure, "hash_file", lambda p: calls.append(p) or real(p))
    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(b"a" * 64)
    (model / ".lock").write_text("ignored")
    first = closure.weight_digests("m", model)
    assert list(first) == ["m/w.bin"] and closure.weight_digests("m", model) == first and len(calls) == 1
    st = (model / "w.bin").stat()
    (model / "w.bin").write_bytes(b"b" * 64)                       # same size...
    os.utime(model / "w.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # ...a later mtime
    assert closure.weight_digests("m", model) != first and len(calls) == 2
    with pytest.raises(FileNotFoundError, match="m: weight file or model folder"):
        closure.weight_digests("m", tmp_path / "absent")


def test_code_packages_and_weights_invalidate_exactly_the_affected_stage(tmp_path, base_params, monkeypatch,
                                                                          caplog):
    """Two stages over the same three videos, keyed by the registry: an edited module of audio's
    closure, a (simulated) upgrade of a package only audio imports and a changed weight file of
    audio each recompute all of audio's videos, outputs rewritten, and none of visual's."""
    import logging

    from gazelib.core import closure

    root = _package_copy(tmp_path)
    speech = tmp_path / "speech_model"
    speech.mkdir()
    (speech / "weights.bin").write_bytes(b"w0")
    cfgs = {"extract_audio": {**base_params["audio"], "speech_model": str(speech)},
            "extract_visual": base_params["visual"]}
    items = [{"video_id": f"v{i}", "media_hash": str(i)} for i in range(3)]
    runs = {s: 0 for s in cfgs}

    def run_all():
        out = {}
        for stage, cfg in cfgs.items():
            runs[stage] += 1
            odir = tmp_path / "out" / stage

            def compute(item, stage=stage, odir=odir):
                p = odir / f"{item['video_id']}.txt"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(f"run {runs[stage]}")
                return [p]
            code = closure.stage_code(stage=stage, cfg=cfg, root=root)
            r = run_per_video(cache=VideoCache(odir, stage), items=items, params=cfg, compute=compute,
                              progress=False, code=code)
            out[stage] = (sorted(r.computed), sorted(r.cached))
        return out

    every, none = ["v0", "v1", "v2"], []
    assert run_all() == {"extract_audio": (every, none), "extract_visual": (every, none)}
    assert run_all() == {"extract_audio": (none, every), "extract_visual": (none, every)}
    caplog.set_level(logging.INFO, logger="gazelib.core.cache")

    _append(root / "gazelib/features/audio.py")
    assert run_all() == {"extract_audio": (every, none), "extract_visual": (none, every)}
    assert "file gazelib/features/audio.py changed" in caplog.text
    assert (tmp_path / "out/extract_audio/v1.txt").read_text() == f"run {runs['extract_audio']}"

    audio_pk = closure.stage_code(stage="extract_audio", cfg=cfgs["extract_audio"], root=root).packages
    visual_pk = closure.stage_code(stage="extract_visual", cfg=cfgs["extract_visual"], root=root).packages
    assert "librosa" in audio_pk and "librosa" not in visual_pk
    real = closure.package_version
    monkeypatch.setattr(closure, "package_version", lambda n: "99.0" if n == "librosa" else real(n))
    assert run_all() == {"extract_audio": (every, none), "extract_visual": (none, every)}
    assert f"package librosa {audio_pk['librosa']} -> 99.0" in caplog.text

    (speech / "weights.bin").write_bytes(b"w1")
    st = (speech / "weights.bin").stat()
    import os
    os.utime(speech / "weights.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert run_all() == {"extract_audio": (every, none), "extract_visual": (none, every)}
    assert "weights audio.speech_model/weights.bin changed" in caplog.text
    assert run_all() == {"extract_audio": (none, every), "extract_visual": (none, every)}
