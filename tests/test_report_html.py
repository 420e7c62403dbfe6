"""The offline HTML report of a pipeline run, rendered in a real headless browser.

The run: the tiny demo corpus, ingested, with synthetic feature files (small, typed like the
extractors' own), then the real stages align, validate, train (two variants), floors, evaluate and
compare, and finally ``run_report``. Chromium (Debian's ``chromium``, installed here when missing
and possible) dumps the rendered DOM and takes a screenshot.
"""
from __future__ import annotations

import html.parser
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.tiny_pipeline import tiny_pipeline

# slow tier (scripts/test.sh runs it under GAZELIB_TEST_TIER=all): a tiny pipeline run, then the report in chromium
pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory, tiny_corpus):
    """A finished tiny pipeline run (align -> compare) and its report."""
    corpus, base = tiny_corpus
    root = tmp_path_factory.mktemp("report_run")
    p, res = tiny_pipeline(root=root, corpus=corpus, base=base, report={"clip_s": 2.0, "clip_width": 320})
    return root, p, res


def test_report_is_self_contained_and_deterministic(pipeline_run):
    from gazelib.model.bundle import load_bundle
    from gazelib.report.html import run_report

    root, params, res = pipeline_run
    page = (root / "reports" / "index.html").read_text()
    srcs = re.findall(r"""\bsrc=['"]([^'"]*)""", page)
    hrefs = re.findall(r"""\bhref=['"]([^'"]*)""", page)
    assert srcs and all(s.startswith(("data:image/png;base64,", "data:video/mp4;base64,")) for s in srcs)
    assert all(h.startswith("#") for h in hrefs)
    assert not re.search(r"<(script|link|iframe|object|embed)\b", page) and "url(" not in page
    cmp = json.loads((root / "reports" / "metrics" / "compare.json").read_text())
    n_png = sum(s.startswith("data:image/png") for s in srcs)
    n_curves = len(list((root / "reports" / "train").glob("*/seed*/curves.png")))
    n_stills = len(list((root / "reports" / "viz").glob("*/*.png")))
    n_viewers_bias = len(list((root / "reports" / "calibration").glob("*.png"))) + \
        len(list((root / "reports" / "bias").glob("*.png")))
    assert n_png == n_curves + n_stills + n_viewers_bias + 2  # + compare.png, ceiling.png (docs/benchmark.md)
    assert res["clips"] == cmp["intervals"]["test_videos"] and len(res["clips"]) == 1
    # the report stage runs after train: the model folders it wrote travel (bundle + norm stats)
    assert load_bundle(root / "models" / "content_only").modalities == ["audio", "text", "visual"]
    run_report(params=params, root=root)
    assert (root / "reports" / "index.html").read_text() == page


def test_report_clip_is_a_short_overlay_with_audio(pipeline_run, tmp_path):
    import base64

    import av

    root, params, _ = pipeline_run
    page = (root / "reports" / "index.html").read_text()
    uri = re.search(r"src='data:video/mp4;base64,([^']+)'", page).group(1)
    (tmp_path / "clip.mp4").write_bytes(base64.b64decode(uri))
    with av.open(str(tmp_path / "clip.mp4")) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (320, 180)
        assert abs(c.duration / av.time_base - params["report"]["clip_s"]) < 0.15
        assert sum(1 for _ in c.decode(video=0)) == int(params["report"]["clip_s"] * params["demo"]["fps"])


# ---------------------------------------------------------------- in a real browser
def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("no chromium and cannot install it (not root or no apt-get): the report was not checked in a "
                    "browser; install Debian's chromium to run this test")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log = []
    for cmd in (["apt-get", "install", "-y", "chromium"], ["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        log.append(f"{' '.join(cmd)}: rc {proc.returncode} {proc.stderr.strip()[-300:]}")
        if cmd[1] == "install" and proc.returncode == 0 and shutil.which("chromium"):
            return shutil.which("chromium")
    pytest.skip("chromium could not be installed, so the report was not checked in a browser:\n" + "\n".join(log))


def _browser(args: list[str], page: Path, tmp: Path) -> subprocess.CompletedProcess:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
           "--no-first-run", f"--user-data-dir={tmp / 'profile'}", *args, page.as_uri()]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


class _Text(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        self.skip += tag in ("style", "script")

    def handle_endtag(self, tag):
        self.skip -= tag in ("style", "script")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def test_report_renders_in_chromium_with_the_numbers(pipeline_run, tmp_path):
    root, params, _ = pipeline_run
    page = root / "reports" / "index.html"
    dom = _browser(["--dump-dom"], page, tmp_path)
    assert dom.returncode == 0 and "<section" in dom.stdout, dom.stderr[-2000:]
    parser = _Text()
    parser.feed(dom.stdout)
    text = " ".join(" ".join(parser.parts).split())
    cmp = json.loads((root / "reports" / "metrics" / "compare.json").read_text())
    for row, r in cmp["rows"].items():
        assert f"{r['metrics']['auc_vat']:.3f}" in text, row
        assert f"{r['metrics']['l2_vat']:.3f}" in text, row
    d = cmp["deltas"]["content_only"]["vs_baseline"]["auc_vat"]
    assert f"{d['delta']:+.3f}" in text
    if cmp["intervals"]["n_test_videos"] >= 2:
        assert f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" in text
    else:  # one test video: an estimate without interval, and the report says why nothing is marked
        assert d["ci95"] == [None, None]
    if cmp["intervals"]["significance_not_assessed"]:
        assert "No significance marks" in text and "fewer than 5" in text
    for heading in ("Comparison with intervals, floors and ceiling", "Training curves", "Validation",
                    "Per-video results", "Viewers and biases", "Overlay stills", "Overlay clips (test videos)"):
        assert heading in text
    for v in params["variants"]:  # the bias entropy of every variant, as in its metrics
        bias = json.loads((root / "reports" / "metrics" / "eval" / f"{v}.json").read_text())["bias"]
        assert f"{bias['entropy_bits']:.3f}" in text and f"{100 * bias['entropy_share']:.1f} %" in text, v
    assert len(re.findall(r"<video\b", dom.stdout)) == len(cmp["intervals"]["test_videos"])

    shot = tmp_path / "shot.png"
    res = _browser([f"--screenshot={shot}", "--window-size=1280,2400"], page, tmp_path)
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    import cv2

    img = cv2.imread(str(shot))
    assert img.shape[:2] == (2400, 1280)
    assert img.std() > 25, "screenshot is (nearly) blank"
    background = np.abs(img.astype(int) - img[-5, 5].astype(int)).sum(-1) < 12
    assert background.mean() < 0.9, "screenshot is mostly one colour"
    shutil.copy(shot, root / "reports" / "screenshot.png")  # for a look by hand
