"""Repeated warnings are summarised: a few printed, the rest counted (gazelib.core.params.setup_logging)."""
from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import textwrap

from gazelib.core.compute import _Collect
from gazelib.core.params import WARNINGS_SHOWN, RepeatedWarnings


def _record(msg: str, *args, level: int = logging.WARNING, name: str = "gazelib.features.text") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_the_first_warnings_of_a_kind_pass_and_the_rest_are_counted():
    f = RepeatedWarnings(shown=3)
    passed = [f.filter(_record("%s: no transcript source", f"v{i:02d}")) for i in range(10)]
    assert passed == [True] * 3 + [False] * 7
    # another template, another logger, errors and info lines are their own kinds or never held
    assert f.filter(_record("%s: no audio stream", "v00"))
    assert f.filter(_record("%s: no transcript source", "v00", name="gazelib.features.audio"))
    assert all(f.filter(_record("%s: failed", f"v{i}", level=logging.ERROR)) for i in range(10))
    assert all(f.filter(_record("%s: loaded", f"v{i}", level=logging.INFO)) for i in range(10))
    lines = f.summary()
    assert lines == ["7 more warnings like the 3 above were not printed (gazelib.features.text); "
                     "the last: v09: no transcript source"]
    assert f.summary() == []   # forgotten once logged


def test_a_worker_record_keeps_its_template_for_the_driver():
    collect = _Collect()
    for i in range(WARNINGS_SHOWN + 2):
        collect.emit(_record("%s viewer %d: calibration fit failed: %s", f"demo{i:03d}", i, "ABNORMAL"))
    records = [pickle.loads(pickle.dumps(r)) for r in collect.take()]   # as they travel from a worker
    assert records[0].getMessage() == "demo000 viewer 0: calibration fit failed: ABNORMAL"
    f = RepeatedWarnings()
    assert [f.filter(r) for r in records] == [True] * WARNINGS_SHOWN + [False] * 2
    assert f.summary()[0].endswith("the last: demo004 viewer 4: calibration fit failed: ABNORMAL")


def test_a_stage_process_prints_a_few_and_the_count_when_it_exits():
    script = textwrap.dedent("""
        import logging
        from gazelib.core.params import setup_logging
        setup_logging()
        log = logging.getLogger("gazelib.features.text")
        for i in range(40):
            log.warning("%s: no transcript source (no audio for ASR, no subtitles)", f"clip{i:02d}")
        log.error("clip07: broken file")
        log.info("done")
    """)
    err = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stderr
    lines = [ln for ln in err.splitlines() if ln.strip()]
    shown = [ln for ln in lines if "no transcript source" in ln and "more warnings" not in ln]
    assert [ln.split(": ", 1)[1].split(":")[0] for ln in shown] == ["clip00", "clip01", "clip02"]
    assert any("ERROR" in ln and "clip07: broken file" in ln for ln in lines)
    assert lines[-1].endswith(f"{40 - WARNINGS_SHOWN} more warnings like the {WARNINGS_SHOWN} above were not printed "
                              "(gazelib.features.text); the last: clip39: no transcript source (no audio for ASR, "
                              "no subtitles)")


def test_faster_whispers_per_chunk_lines_are_held_back_unless_the_user_set_its_level():
    from gazelib.features.transcript import WhisperASR

    library_log = logging.getLogger("faster_whisper")
    before = library_log.level
    try:
        library_log.setLevel(logging.NOTSET)
        WhisperASR(model="tiny.en-packaged", language="en", cpu_threads=1)
        assert library_log.level == logging.WARNING
        library_log.setLevel(logging.DEBUG)
        WhisperASR(model="tiny.en-packaged", language="en", cpu_threads=1)
        assert library_log.level == logging.DEBUG
    finally:
        library_log.setLevel(before)


def test_set_up_in_a_host_with_handlers_it_leaves_them_alone(caplog):
    """Called where the root logger already has handlers (pytest's, an application's), setup_logging adds no
    filter to them: everything they capture stays captured."""
    from gazelib.core.params import setup_logging

    setup_logging()
    log = logging.getLogger("gazelib.toy")
    with caplog.at_level(logging.WARNING, logger="gazelib.toy"):
        for i in range(WARNINGS_SHOWN + 4):
            log.warning("%s: repeated", i)
    assert len([r for r in caplog.records if r.name == "gazelib.toy"]) == WARNINGS_SHOWN + 4
    assert not any(isinstance(f, RepeatedWarnings) for h in logging.getLogger().handlers for f in h.filters)


def test_a_video_without_transcript_warns_only_when_a_source_was_asked_for(tmp_path, caplog):
    """The real text extractor: a video with no sound and no subtitles warns (text.sources asked for one); the
    content-free bias clips, which ask for none, say it at info level (every demo run printed three warnings)."""
    from gazelib.core.params import load_params
    from gazelib.features.text import LazyTextEmbedder, extract_text_video, text_config

    params = load_params()
    cfg = text_config(params)
    embedder = LazyTextEmbedder(model=cfg["embedder"], threads=1, batch_size=8)   # no words: never loads
    item = {"video_id": "silent", "video_path": "", "subtitle_path": "", "has_audio": False, "duration_s": 2.0}

    def levels(sources):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="gazelib.features.text"):
            res = extract_text_video(item=item, cfg=cfg, out_dir=tmp_path / "text", embedder=embedder,
                                     asr=None, sources=sources)
        assert res["source"] == "none"
        return [r.levelno for r in caplog.records if "no transcript source" in r.getMessage()]

    assert levels(None) == [logging.WARNING]   # text.sources: [asr, subtitles], neither there
    assert levels([]) == [logging.INFO]
