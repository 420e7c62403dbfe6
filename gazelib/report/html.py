"""One offline HTML page of a pipeline run: ``reports/index.html``.

Self-contained: styles inline, every image a base64 ``data:`` URI, every clip an MP4 ``data:``
URI; the page fetches nothing and opens from a USB stick. It gathers what the stages wrote:

- the comparison (``reports/metrics/compare.json``): every row (variants, floors, ceiling) and every
  delta against the baseline and persistence with its 95 % interval, the bar plot, and the notes
  of ``reports/compare.md`` (intervals, protocol);
- per variant, the training curves of every seed (``reports/train/<v>/seed<k>/curves.png``) and
  ``reports/metrics/train/<v>.json``;
- the validation summary (``reports/metrics/validation.json``, ``reports/validation.md``);
- the per-video tables (``reports/eval/<v>/per_video.md``) and overlay stills (``reports/viz/<v>``);
- a short overlay clip per test video: the first ``report.clip_s`` seconds with the map of one
  variant (``report.variant``, default the variant with the best ``auc_vat``; its first seed)
  averaged over the video's viewers, the predicted point and every viewer's gaze, at
  ``report.clip_width`` pixels wide, encoded single-threaded so the page is the same bytes on
  every run.

Markdown reports are converted by a small converter (headings, pipe tables, images, lists,
paragraphs), enough for what the stages write.
"""
from __future__ import annotations

import base64
import html
import json
import logging
import re
import tempfile
from pathlib import Path

import numpy as np

from gazelib.eval.compare import interval_note
from gazelib.core.io import write_text
from gazelib.core.layout import AOI_METRICS, COMPARE, VALIDATION, eval_metrics, train_metrics

log = logging.getLogger(__name__)

MAIN_METRICS = ("auc_vat", "l2_vat", "l2_vat_deg", "hit1_cell", "nss", "cc", "sauc", "ig", "inout_ap", "out_ap")
LOWER_BETTER = ("l2_vat", "kl")

STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:12px 24px 48px}
header{background:#1d2a44;color:#fff;padding:18px 24px}header h1{margin:0;font-size:24px}
header p{margin:4px 0 0;color:#c9d3e6;font-size:14px}
nav{background:#fff;border-bottom:1px solid #dde1e7;padding:8px 24px;font-size:14px;position:sticky;top:0}
nav a{margin-right:16px;color:#2b5cab;text-decoration:none}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:18px 0;padding:8px 20px 16px}
h2{font-size:20px;border-bottom:2px solid #e4e8ee;padding-bottom:4px}h3{font-size:16px;margin-top:20px}
h4{font-size:14px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{border:1px solid #d9dde3;padding:3px 7px}
th{background:#eef1f5;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.floor td{background:#fafaf2}tr.ceiling td{background:#f2f8f2}
.sig{font-weight:600}.better{color:#11703a}.worse{color:#a3261b}
.figs{display:flex;flex-wrap:wrap;gap:12px}.figs figure{margin:0;max-width:100%}
.figs img{max-width:560px;width:100%;border:1px solid #dde1e7}figcaption{font-size:12px;color:#555}
video{max-width:100%;border:1px solid #dde1e7;background:#000}
.note{font-size:13px;color:#444}.kv td:first-child{font-weight:600}
details{margin:8px 0}summary{cursor:pointer;color:#2b5cab}
.missing{color:#a3261b;font-size:13px}
.wide{overflow-x:auto}.ci{font-size:11px;color:#555;font-weight:400}
"""


# ---------------------------------------------------------------- small helpers
def data_uri(path: Path, mime: str | None = None) -> str:
    mime = mime or {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".mp4": "video/mp4",
                    ".svg": "image/svg+xml"}.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _esc(x) -> str:
    return html.escape(str(x), quote=True)


def _inline(text: str) -> str:
    out = _esc(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def _num(x: float, digits: int = 3, sign: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "n/a"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def md_to_html(text: str, *, base_dir: Path, demote: int = 1) -> str:
    """Headings, pipe tables, images (inlined from ``base_dir``), lists and paragraphs."""
    lines = text.splitlines()
    out: list[str] = []
    para: list[str] = []
    i = 0

    def flush():
        if para:
            out.append(f"<p class='note'>{_inline(' '.join(para))}</p>")
            para.clear()

    while i < len(lines):
        line = lines[i].rstrip()
        if not line.strip():
            flush()
            i += 1
            continue
        m = re.match(r"^(#{1,6})\s+(.*)$", line)
        img = re.match(r"^!\[([^\]]*)\]\(([^)]+)\)\s*$", line.strip())
        if m:
            flush()
            lvl = min(6, len(m.group(1)) + demote)
            out.append(f"<h{lvl}>{_inline(m.group(2))}</h{lvl}>")
            i += 1
        elif img:
            flush()
            path = base_dir / img.group(2)
            out.append(f"<figure><img alt='{_esc(img.group(1))}' src='{data_uri(path)}'></figure>" if path.exists()
                       else f"<p class='missing'>image {_esc(img.group(2))} not found</p>")
            i += 1
        elif line.lstrip().startswith("|"):
            flush()
            block = []
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                block.append(lines[i].strip())
                i += 1
            out.append(_md_table(block))
        elif re.match(r"^\s*[-*]\s+", line):
            flush()
            items = []
            while i < len(lines) and re.match(r"^\s*[-*]\s+", lines[i]):
                item = re.sub(r"^\s*[-*]\s+", "", lines[i])
                items.append(f"<li>{_inline(item)}</li>")
                i += 1
            out.append("<ul class='note'>" + "".join(items) + "</ul>")
        else:
            para.append(line.strip())
            i += 1
    flush()
    return "\n".join(out)


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def _md_table(block: list[str]) -> str:
    head = _cells(block[0])
    align = []
    body = block[1:]
    if body and re.match(r"^\|?\s*:?-{2,}", body[0]):
        align = ["right" if c.endswith(":") and not c.startswith(":") else "" for c in _cells(body[0])]
        body = body[1:]
    rows = ["<tr>" + "".join(f"<th>{_inline(h)}</th>" for h in head) + "</tr>"]
    for r in body:
        cells = _cells(r)
        rows.append("<tr>" + "".join(
            f"<td class='num'>{_inline(c)}</td>" if (j < len(align) and align[j] == "right") or _looks_numeric(c)
            else f"<td>{_inline(c)}</td>" for j, c in enumerate(cells)) + "</tr>")
    return "<div class='wide'><table>" + "".join(rows) + "</table></div>"


def _looks_numeric(c: str) -> bool:
    return bool(re.match(r"^[+-]?\d+(\.\d+)?%?( \[.*\])?( \*)?$", c))


def _figure(path: Path, caption: str) -> str:
    if not path.exists():
        return f"<p class='missing'>{_esc(path.name)} not found</p>"
    return f"<figure><img alt='{_esc(caption)}' src='{data_uri(path)}'><figcaption>{_esc(caption)}</figcaption></figure>"


# ---------------------------------------------------------------- sections
def comparison_html(*, cmp: dict, order: list[str], baseline: str) -> str:
    rows = cmp["rows"]
    names = [n for n in order if n in rows] + sorted(n for n in rows if n not in order)
    metrics = [m for m in MAIN_METRICS if any(m in rows[n]["metrics"] for n in names)]
    head = "<tr><th>row</th><th>kind</th><th>seeds</th>" + "".join(f"<th>{m}</th>" for m in metrics) + "</tr>"
    body = []
    for n in names:
        r = rows[n]
        label = {"floor": " (floor)", "ceiling": " (ceiling)"}.get(r["kind"], "")
        body.append(f"<tr class='{_esc(r['kind'])}'><td>{_esc(n)}{label}</td><td>{_esc(r['kind'])}</td>"
                    f"<td class='num'>{r.get('n_seeds', '')}</td>"
                    + "".join(f"<td class='num'>{_num(r['metrics'].get(m))}</td>" for m in metrics) + "</tr>")
    parts = [f"<div class='wide'><table>{head}{''.join(body)}</table></div>"]
    b = cmp.get("intervals", {})
    for ref in (f"vs_{baseline}", "vs_persistence"):
        have = [n for n in names if ref in cmp["deltas"].get(n, {})]
        if not have:
            continue
        parts.append(f"<h3>Δ {ref.replace('vs_', 'vs ')} [95 % interval]</h3>")
        hd = "<tr><th>row</th>" + "".join(f"<th>{m}</th>" for m in metrics) + "</tr>"
        trs = []
        for n in have:
            cells = []
            for m in metrics:
                d = cmp["deltas"][n][ref].get(m)
                if d is None:
                    cells.append("<td class='num'>n/a</td>")
                    continue
                sig = d.get("significant")
                cls = ("sig " + ("better" if d["better"] else "worse")) if sig else ""
                lo, hi = d["ci95"]
                cells.append(f"<td class='num {cls}'>{_num(d['delta'], sign=True)}{' *' if sig else ''}"
                             f"<br><span class='ci'>[{_num(lo, sign=True)}, {_num(hi, sign=True)}]</span></td>")
            trs.append(f"<tr><td>{_esc(n)}</td>{''.join(cells)}</tr>")
        parts.append(f"<div class='wide'><table>{hd}{''.join(trs)}</table></div>")
    parts.append(f"<p class='note'>Test videos: {_esc(', '.join(b.get('test_videos', [])))}. "
                 f"{_esc(interval_note(b, cmp.get('lookahead', 'none')))} Bold: significant "
                 "(green: better, red: worse than the reference).</p>")
    return "\n".join(parts)


def _compare_notes(md: str, base_dir: Path) -> str:
    """The prose of compare.md (its tables are rendered from compare.json above)."""
    keep = [ln for ln in md.splitlines() if ln.strip() and not ln.lstrip().startswith(("|", "#", "!["))]
    return md_to_html("\n\n".join(keep), base_dir=base_dir)


def benchmark_html(*, root: Path) -> str:
    """The benchmark-protocol rows, deltas, ceiling curves and % of ceiling (reports/benchmark.md, from compare)."""
    md = root / "reports" / "benchmark.md"
    if not md.exists():
        return f"<p class='missing'>{_esc(md.relative_to(root))} not found (run compare)</p>"
    text = re.sub(r"^# .*\n", "", md.read_text(), count=1)   # the section has its own title
    return md_to_html(text, base_dir=md.parent, demote=1)


def training_html(*, root: Path, variants: list[str]) -> str:
    parts = []
    for v in variants:
        parts.append(f"<h3>{_esc(v)}</h3>")
        mpath = root / train_metrics(v)
        if mpath.exists():
            m = json.loads(mpath.read_text())
            rows = "".join(f"<tr><td>{_esc(k)}</td><td class='num'>{s.get('epochs_run', '')}</td>"
                           f"<td class='num'>{_num(s.get('best_val_loss'), 4)}</td>"
                           f"<td class='num'>{s.get('train_windows', '')}</td>"
                           f"<td class='num'>{s.get('n_params', '')}</td></tr>"
                           for k, s in sorted(m.get("seeds", {}).items()))
            parts.append("<table><tr><th>seed</th><th>epochs</th><th>best val loss</th><th>train windows</th>"
                         f"<th>parameters</th></tr>{rows}</table>")
        else:
            parts.append(f"<p class='missing'>{_esc(mpath.relative_to(root))} not found</p>")
        seeds = sorted((root / "reports" / "train" / v).glob("seed*/curves.png"),
                       key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0))
        parts.append("<div class='figs'>" + "".join(_figure(p, f"{v} {p.parent.name}") for p in seeds) + "</div>"
                     if seeds else "<p class='missing'>no training curves</p>")
    return "\n".join(parts)


def validation_html(*, root: Path, validation: dict) -> str:
    cov = validation.get("coverage", {})
    rows = [("passed", validation.get("passed")), ("videos", validation.get("n_videos")),
            ("hard failures", validation.get("n_failures")), ("warnings", validation.get("n_warnings")),
            ("label coverage", _num(validation.get("label_coverage")))]
    rows += [(f"coverage {k}", _num(v)) for k, v in sorted(cov.items())]
    if validation.get("excluded"):
        rows.append(("excluded", ", ".join(sorted(validation["excluded"]))))
    out = ["<table class='kv'>" + "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in rows)
           + "</table>"]
    md = root / "reports" / "validation.md"
    if md.exists():
        out.append("<details><summary>validation.md (per video)</summary>"
                   + md_to_html(md.read_text(), base_dir=md.parent, demote=2) + "</details>")
    return "\n".join(out)


def per_video_html(*, root: Path, variants: list[str]) -> str:
    out = []
    for v in variants:
        md = root / "reports" / "eval" / v / "per_video.md"
        body = md_to_html(md.read_text(), base_dir=md.parent, demote=2) if md.exists() else \
            f"<p class='missing'>{_esc(md.relative_to(root))} not found</p>"
        out.append(f"<details{' open' if v == variants[0] else ''}><summary>{_esc(v)}</summary>{body}</details>")
    return "\n".join(out)


def viewers_bias_html(*, root: Path, variants: list[str]) -> str:
    """Per variant: the few-shot calibration table and plot, and the bias entropy with its map."""
    rows, out = [], []
    for v in variants:
        path = root / eval_metrics(v)
        bias = json.loads(path.read_text()).get("bias") if path.exists() else None
        if bias:
            per = [d["entropy_bits"] for d in bias["per_seed"].values()]
            rows.append(f"<tr><td>{_esc(v)}</td><td>{_num(bias['entropy_bits'])}</td>"
                        f"<td>{_num(100 * bias['entropy_share'], 1)} %</td><td>{_num(min(per))} – {_num(max(per))}</td>"
                        f"<td>{_num(bias['max_entropy_bits'])}</td></tr>")
    out.append("<h3>Bias entropy (prediction on content-free input)</h3>")
    out.append("<p>Uniform grey frames, silence, no transcript and no gaze track, through the real extractors; "
               "entropy of the mean predicted map (bits; 100 % is a uniform map, lower is a stronger built-in bias).</p>")
    out.append("<table><tr><th>variant</th><th>entropy (bits, mean over seeds)</th><th>share of maximum</th>"
               "<th>range over seeds</th><th>maximum</th></tr>" + "".join(rows) + "</table>" if rows else
               "<p class='missing'>no bias diagnostic in reports/metrics/eval</p>")
    out.append("<div class='figs'>" + "".join(_figure(root / "reports" / "bias" / f"{v}.png", f"{v}: bias map")
                                              for v in variants if (root / "reports" / "bias" / f"{v}.png").exists())
               + "</div>")
    out.append("<h3>Few-shot viewer calibration</h3>")
    for v in variants:
        md = root / "reports" / "calibration" / f"{v}.md"
        png = md.with_suffix(".png")
        body = md_to_html(md.read_text(), base_dir=md.parent, demote=2) if md.exists() else \
            f"<p class='missing'>{_esc(md.relative_to(root))} not found</p>"
        if png.exists():
            body += _figure(png, f"{v}: auc_vat and l2_vat against calibration seconds (95 % intervals)")
        out.append(f"<details{' open' if v == variants[0] else ''}><summary>{_esc(v)}</summary>{body}</details>")
    return "\n".join(out)


def stills_html(*, root: Path, variants: list[str]) -> str:
    out = []
    for v in variants:
        pngs = sorted((root / "reports" / "viz" / v).glob("*.png"))
        out.append(f"<h3>{_esc(v)}</h3>")
        out.append("<div class='figs'>" + "".join(_figure(p, p.stem) for p in pngs) + "</div>" if pngs else
                   "<p class='missing'>no overlay stills</p>")
    return "\n".join(out)


# ---------------------------------------------------------------- clips
def choose_variant(*, cmp: dict, variants: list[str], wanted: str | None) -> str:
    if wanted:
        if wanted not in variants:
            raise KeyError(f"report.variant {wanted!r} is not a variant in params.yaml ({variants})")
        return wanted
    scored = [(cmp["rows"][v]["metrics"].get("auc_vat", -np.inf), v) for v in variants if v in cmp["rows"]]
    return max(scored, key=lambda s: (np.nan_to_num(s[0], nan=-np.inf), s[1]))[1] if scored else variants[0]


def make_clips(*, root: Path, variant: str, videos: list[str], cfg: dict) -> dict[str, str]:
    """A data URI per test video: the first ``clip_s`` seconds with ``variant``'s map (mean over viewers)."""
    from gazelib.data.dataset import GazeWindows
    from gazelib.model.inference import predict
    from gazelib.core.layout import ALIGNED, index_maps, load_manifest, read_index, read_norm_stats
    from gazelib.viz.overlay import refine_peak, render_overlay
    from gazelib.core.normalize import stats_hash
    from gazelib.model.checkpoint import model_from_checkpoint

    seeds = sorted(root.glob(f"models/{variant}/seed*/best.pt"), key=lambda p: int(re.sub(r"\D", "", p.parent.name)))
    if not seeds:
        raise FileNotFoundError(f"{root / 'models' / variant}: no seed checkpoint for the report clips")
    stats = read_norm_stats(root)
    model, state = model_from_checkpoint(seeds[0], expect={"variant": variant, "norm_stats_hash": stats_hash(stats)})
    meta = state["meta"]
    index, _ = read_index(root)
    maps = index_maps(index)
    files = [root / ALIGNED / f"{v}.npz" for v in videos]
    cm = meta["model_config"]
    gh, gw = cm["grid_h"], cm["grid_w"]
    ds = GazeWindows(files=files, stats=stats, cfg=meta["train_cfg"], grid_hw=(gh, gw), fps=meta["fps"],
                     lengths=maps["length"], n_viewers=maps["viewers"], stride_s=meta["train_cfg"]["window_s"])
    preds = predict(model=model, ds=ds)
    manifest = load_manifest(root).set_index("video_id")
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for vid in videos:
            if vid not in preds:
                log.warning("report: %s has no predictions (no viewer); no clip", vid)
                continue
            vt = ds.video(vid)
            prob = preds[vid]["prob"].mean(0).reshape(-1, gh, gw)
            ok = vt.valid.astype(bool) & (vt.inout > 0)
            gaze = np.where(ok[..., None], vt.gaze, np.nan)
            row = manifest.loc[vid]
            w = int(cfg["clip_width"])
            h = int(round(w * int(row["height"]) / int(row["width"]) / 2)) * 2
            path = Path(tmp) / f"{vid}.mp4"
            render_overlay(video_path=row["video_path"], out_path=path, t=vt.t, prob=prob,
                           p_in=preds[vid]["p_in"].mean(0), point=refine_peak(prob=prob), gaze=gaze,
                           duration_s=float(cfg["clip_s"]), width=w, height=h, crf=int(cfg["clip_crf"]),
                           threads=1, label=variant, video_id=vid)
            out[vid] = data_uri(path)
    return out


def clips_html(*, clips: dict[str, str], variant: str, cfg: dict, note: str = "") -> str:
    if not clips:
        return f"<p class='missing'>no clips{': ' + _esc(note) if note else ''}</p>"
    head = (f"<p class='note'>First {cfg['clip_s']:g} s of each test video with <b>{_esc(variant)}</b>'s predicted "
            "map (mean over the video's viewers; its first seed), the predicted point (green cross: P(in) &ge; 0.5) "
            "and every viewer's recorded gaze (cyan rings).</p>")
    items = "".join(f"<figure><video controls muted loop playsinline preload='metadata' width='{cfg['clip_width']}' "
                    f"src='{uri}'></video><figcaption>{_esc(vid)}</figcaption></figure>" for vid, uri in clips.items())
    return head + f"<div class='figs'>{items}</div>"


# ---------------------------------------------------------------- page
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>gazelib report</title><style>{style}</style></head>
<body><header><h1>gazelib pipeline report</h1><p>{subtitle}</p></header>
<nav>{nav}</nav><main>
{sections}
</main></body></html>
"""


def render_page(*, sections: list[tuple[str, str, str]], subtitle: str) -> str:
    """``sections``: (anchor, title, inner HTML)."""
    nav = "".join(f"<a href='#{a}'>{_esc(t)}</a>" for a, t, _ in sections)
    body = "\n".join(f"<section id='{a}'><h2>{_esc(t)}</h2>\n{inner}\n</section>" for a, t, inner in sections)
    return PAGE.format(style=STYLE.strip(), subtitle=subtitle, nav=nav, sections=body)


def aoi_html(*, root: Path, cmp: dict) -> str:
    """Areas of interest (stage aoi, docs/aoi.md): dwell / TTFF by AOI kind, scarf plots, truth check,
    and every row's AOI hit rate (compare)."""
    path = root / AOI_METRICS
    if not path.exists():
        return "<p class='note'>No AOI analysis (run the aoi stage).</p>"
    from gazelib.aoi.model_level import render_aoi_rows

    m = json.loads(path.read_text())
    keys = ("dwell_share", "dwell_s", "ttff_s", "latency_s", "first_fixation_s", "entries", "fixation_count")

    def cell(e):
        if e["mean"] is None:
            return "–"
        lo, hi = e["ci95"]
        return f"{e['mean']:.3f}" + ("" if lo is None else f" [{lo:.3f}, {hi:.3f}]")

    rows = ["| AOI kind | videos | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
    rows += [f"| {k} | {e['n_videos']} | " + " | ".join(cell(e[x]) for x in keys) + " |" for k, e in m["by_kind"].items()]
    out = (f"<p>Per viewer x AOI on {_esc(m['basis'])}, mean over viewers per video, then over videos with a 95 % "
           "interval over videos. latency_s: time from each activation (a speaker turn) to the first look.</p>"
           + _md_table(rows))
    t = m.get("truth")
    if t:
        acc = t["speaker_accuracy"]
        out += (f"<p>Against the demo truth: speaker AOI correct in {_num(acc['mean'])} of speech frames "
                f"(n = {acc['n']} videos), identity switches {t['id_switches_total']} in total.</p>")
    for name in m.get("scarf_plots", []):
        out += _figure(root / "reports" / "aoi" / name, f"Scarf plot {name[6:-4]}: AOI looked at per viewer over time")
    if cmp.get("aoi"):
        out += "<h3>The model at the AOI level</h3>" + md_to_html(render_aoi_rows(cmp["aoi"]), base_dir=root)
    return out


# ---------------------------------------------------------------- DVC stage
def run_report(*, params: dict, root: Path = Path(".")) -> dict:
    """Write ``reports/index.html`` from the pipeline's metrics and reports; returns what it holds."""
    from gazelib import __version__

    root = Path(root)
    cfg = params["report"]
    cmp_path, val_path = root / COMPARE, root / VALIDATION
    for p in (cmp_path, val_path):
        if not p.exists():
            raise FileNotFoundError(f"{p} not found: run the pipeline up to compare first (`dvc repro compare`)")
    cmp = json.loads(cmp_path.read_text())
    validation = json.loads(val_path.read_text())
    variants = list(params["variants"])
    baseline = params["compare"]["baseline"]
    order = variants + ["centre_prior", "persistence", "inter_observer"]
    cmp_md = root / "reports" / "compare.md"
    comparison = comparison_html(cmp=cmp, order=order, baseline=baseline)
    comparison += _figure(root / "reports" / "compare.png", "auc_vat per row: bars are the 95 % interval of the delta "
                                                            "vs the baseline; lines: persistence floor, inter-observer ceiling")
    if cmp_md.exists():
        comparison += _compare_notes(cmp_md.read_text(), cmp_md.parent)
    videos = list(cmp.get("intervals", {}).get("test_videos", []))
    clip_variant = choose_variant(cmp=cmp, variants=variants, wanted=cfg["variant"])
    clips = make_clips(root=root, variant=clip_variant, videos=videos, cfg=cfg) if videos else {}
    att_md = root / "reports" / "attribution.md"
    attribution = (md_to_html(att_md.read_text(), base_dir=att_md.parent) if att_md.exists() else
                   "<p class='note'>No attribution (run the attribution stage).</p>")
    hz_md = root / "reports" / "horizons.md"   # stage horizons (docs/horizons.md)
    horizons = (md_to_html(hz_md.read_text(), base_dir=hz_md.parent)
                + _figure(root / "reports" / "horizons.png", "each row against the forecasting horizon with 95 % "
                          "intervals; flat lines: rows that do not depend on the horizon")
                if hz_md.exists() else "<p class='note'>No horizon curve (run the horizons stage).</p>")
    sections = [
        ("attribution", "The answer: what sound and speech add", attribution),
        ("comparison", "Comparison with intervals, floors and ceiling", comparison),
        ("horizons", "Forecasting across horizons", horizons),
        ("benchmark", "Benchmark protocol and the infinite-observer ceiling", benchmark_html(root=root)),
        ("training", "Training curves", training_html(root=root, variants=variants)),
        ("validation", "Validation", validation_html(root=root, validation=validation)),
        ("per-video", "Per-video results", per_video_html(root=root, variants=variants)),
        ("aoi", "Areas of interest: who viewers look at, and whether the model knows", aoi_html(root=root, cmp=cmp)),
        ("viewers-bias", "Viewers and biases", viewers_bias_html(root=root, variants=variants)),
        ("stills", "Overlay stills", stills_html(root=root, variants=variants)),
        ("clips", "Overlay clips (test videos)", clips_html(clips=clips, variant=clip_variant, cfg=cfg,
                                                             note="no test videos in compare.json")),
    ]
    b = cmp.get("intervals", {})
    subtitle = _esc(f"gazelib {__version__} · variants {', '.join(variants)} · {b.get('n_test_videos', '?')} test videos"
                    f" · seeds {', '.join(f'{k}: {len(v)}' for k, v in sorted(b.get('seeds', {}).items()) if v != [-1])}")
    page = render_page(sections=sections, subtitle=subtitle)
    out = root / "reports" / "index.html"
    write_text(out, page)
    log.info("report: wrote %s (%.1f MB, %d clips of %s)", out, len(page) / 2 ** 20, len(clips), clip_variant)
    return {"path": out, "bytes": len(page.encode()), "clips": sorted(clips), "clip_variant": clip_variant,
            "variants": variants}
