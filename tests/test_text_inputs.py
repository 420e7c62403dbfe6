"""Text inputs: optional subtitles parsed only when used, errors with file and line, no source = masked."""
from __future__ import annotations

import logging
import shutil
import subprocess

import pytest

from gazelib.data.align import run_align
from gazelib.features.audio import run_extract_audio
from gazelib.features.text import run_extract_text
from gazelib.features.transcript import read_cues
from gazelib.features.visual import run_extract_visual
from gazelib.gaze.ingest import run_ingest
from gazelib.core.io import read_npz, read_table


@pytest.mark.parametrize("content, where", [
    ("1\n00:00:01,000 --> 00:00:02,000\nhello\n\n2\n00:00:03,000 -> 00:00:04,000\nworld\n",
     "line 6: cue 2 has no timing line \\('00:00:03,000 -> 00:00:04,000'\\)"),
    ("1\n00:00:01,000 --> 00:00:02,000\nhello\n\n2\n00:00:03,000 --> 00:00:04\nworld\n", "line 6: malformed cue timing"),
    ("1\n00:00:01,000 --> 00:00:02,000\nhello\n\n2\nworld\n", "line 6: cue 2 has no timing line"),
    ("1\n00:00:01,000 --> 00:0x:02,000\nhi\n", "line 2: malformed cue timing"),
])
def test_malformed_srt_names_file_and_line(tmp_path, content, where):
    p = tmp_path / "clip.srt"
    p.write_text(content)
    with pytest.raises(ValueError, match=f"v: subtitle file .*clip.srt: {where}"):
        read_cues(path=p, video_id="v")


def test_non_utf8_subtitle_names_the_line(tmp_path):
    p = tmp_path / "clip.srt"
    p.write_bytes(b"1\n00:00:01,000 --> 00:00:02,000\ncaf\xe9\n")
    with pytest.raises(ValueError, match="line 3: not UTF-8"):
        read_cues(path=p, video_id="v")


@pytest.fixture
def repo(tmp_path, tiny_corpus):
    src, params = tiny_corpus
    root = tmp_path / "repo"
    shutil.copytree(src, root / "data/raw/demo")
    return root, {**params, "visual": {**params["visual"], "image_model": "none"}}


def test_broken_optional_subtitle_does_not_cost_the_asr_transcript(repo, caplog):
    root, params = repo
    (root / "data/raw/demo/subtitles/demo001.srt").write_bytes(b"1\n00:00:01,000 --> garbage\nhi\n")
    run_ingest(params=params, root=root)
    with caplog.at_level(logging.WARNING):
        r = run_extract_text(params=params, root=root)   # sources: [asr, subtitles]
    assert r["failed"] == {} and "demo001" in r["computed"]
    assert "demo001: ASR quality not measured" in caplog.text and "line 2: malformed cue timing" in caplog.text
    _, meta = read_table(root / "data/features/text/demo001.parquet")
    assert meta["backend"] == "asr" and meta["available"]
    # with subtitles first, the same file fails that video (named), the others go on
    r2 = run_extract_text(params={**params, "text": {**params["text"], "sources": ["subtitles", "asr"]}}, root=root)
    assert list(r2["failed"]) == ["demo001"] and "line 2" in r2["failed"]["demo001"]


def test_no_audio_and_no_subtitles_masks_text(repo):
    import imageio_ffmpeg

    root, params = repo
    video = root / "data/raw/demo/videos/demo002.mp4"
    silent = video.with_name("tmp.mp4")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(video), "-an", "-c:v", "copy",
                    str(silent)], check=True)
    silent.replace(video)
    (root / "data/raw/demo/subtitles/demo002.srt").unlink()
    run_ingest(params=params, root=root)
    run_extract_text(params=params, root=root)
    _, meta = read_table(root / "data/features/text/demo002.parquet")
    assert meta["available"] is False and meta["backend"] == "none"
    run_extract_audio(params=params, root=root)
    run_extract_visual(params=params, root=root)
    run_align(params=params, root=root)
    a = read_npz(root / "data/aligned/demo002.npz")
    assert not a["mask"][:, 1].any() and a["mask"][:, 2].any()   # text masked, visual present
    assert read_npz(root / "data/aligned/demo000.npz")["mask"][:, 1].any()
