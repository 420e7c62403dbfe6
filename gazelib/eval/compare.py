"""Compare variants, floors and the ceiling: the report, plot and README block of the intervals
in :mod:`gazelib.stats.intervals` (what varies, how, and why is written there)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from gazelib.eval.headline import answer_headline, rows_headline
from gazelib.eval.contrasts import compare_rows
from gazelib.core.io import read_table, write_json, write_text
from gazelib.core.layout import ANSWER, ASR, ATTRIBUTION, COMPARE, ROWS, VALIDATION, eval_metrics
from gazelib.metrics import MEAN_KEYS, POOLED_KEYS

log = logging.getLogger(__name__)

TABLE_KEYS = ("auc_vat", "l2_vat", "hit1_cell", "nss", "cc", "sauc", "ig", "inout_ap", "out_ap")


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def _fmt_delta(e: dict) -> str:
    """delta [lo, hi], with * where a primary metric is significant (Holm-adjusted; see gazelib.stats.intervals)."""
    if e["delta"] is None:
        return "–"
    lo, hi = e["ci95"]
    ci = "" if lo is None else f" [{lo:+.3f}, {hi:+.3f}]"
    return f"{e['delta']:+.3f}{ci}{' *' if e.get('significant') else ''}"


def interval_note(iv: dict, lookahead: str = "none") -> str:
    """One paragraph: how the intervals were made, what a mark means, and why there are none."""
    seeds = ", ".join(f"{r}: {len(s)}" for r, s in iv["seeds"].items())
    marks = (f"No significance marks: {iv['significance_not_assessed']}." if iv["significance_not_assessed"] else
             f"* = significant for a primary metric ({', '.join(iv['primary']) or 'none named'}; compare.primary, "
             "named before the run), Holm-adjusted within each comparison at 5 %; every other metric is "
             "descriptive (interval only).")
    offline = ("" if lookahead == "none" else
               f" OFFLINE ANALYSIS (features.lookahead: {lookahead}): content features may use media after the "
               "predicted step; these are not forecasting results.")
    return (f"Intervals: 95 % {iv['method']}, over {iv['n_test_videos']} test videos (clusters) and each row's "
            f"training seeds ({seeds}). {marks} l2_vat, l2_diag and kl: lower is better.{offline}")


def render_report(cmp: dict, protocol: str, lookahead: str = "none") -> str:
    """Markdown: values of every row, then every metric's delta vs each reference with its interval."""
    rows = cmp["rows"]
    lines = ["| row | kind | seeds | " + " | ".join(TABLE_KEYS) + " |", "|---" * (len(TABLE_KEYS) + 3) + "|"]
    for r, e in rows.items():
        lines.append(f"| {r} | {e['kind']} | {e['n_seeds']} | " + " | ".join(_fmt(e["metrics"][k]) for k in TABLE_KEYS) + " |")
    refs = sorted({ref for d in cmp["deltas"].values() for ref in d})
    parts = ["\n".join(lines)]
    for ref in refs:
        name = ref.removeprefix("vs_")
        for keys in (MEAN_KEYS[:4] + POOLED_KEYS[:2], MEAN_KEYS[4:]):
            head = f"| Δ vs {name} | " + " | ".join(keys) + " |"
            body = [head, "|---" * (len(keys) + 1) + "|"]
            for r, d in cmp["deltas"].items():
                if ref in d:
                    body.append(f"| {r} | " + " | ".join(_fmt_delta(d[ref][k]) for k in keys) + " |")
            parts.append("\n".join(body))
    foot = f"{interval_note(cmp['intervals'], lookahead)}\n\n{protocol}\n"
    return "\n\n".join(parts) + "\n\n" + foot


README_KEYS = ("auc_vat", "l2_vat", "nss", "cc", "sauc", "ig", "inout_ap", "out_ap")
README_START, README_END = "<!-- results:start (scripts/readme_results.py) -->", "<!-- results:end -->"


def readme_results(cmp: dict, baseline: str, floor: str = "persistence") -> str:
    """The README's results block: every row's values, then the deltas of every other variant
    vs ``baseline`` and vs ``floor`` for the headline metrics, with their intervals."""
    b = cmp["intervals"]
    kinds = ("variant", "floor", "ceiling")
    order = sorted(cmp["rows"], key=lambda r: (kinds.index(cmp["rows"][r]["kind"]), r != baseline, r))
    lines = ["| row | " + " | ".join(README_KEYS) + " |", "|---" * (len(README_KEYS) + 1) + "|"]
    for r in order:
        e = cmp["rows"][r]
        label = r if e["kind"] == "variant" else f"{r} ({e['kind']})"
        lines.append(f"| {label} | " + " | ".join(_fmt(e["metrics"][k]) for k in README_KEYS) + " |")
    lines += ["", "| delta [95% CI] | " + " | ".join(README_KEYS[:2] + ("ig", "out_ap")) + " |",
              "|---" * 5 + "|"]
    for r in order:
        if cmp["rows"][r]["kind"] != "variant":
            continue
        for ref in (baseline, floor):
            d = cmp["deltas"][r].get(f"vs_{ref}")
            if d is None:
                continue
            lines.append(f"| {r} vs {ref} | " + " | ".join(_fmt_delta(d[k]) for k in ("auc_vat", "l2_vat", "ig",
                                                                                       "out_ap")) + " |")
    seeds = sorted({len(s) for r, s in b["seeds"].items() if cmp["rows"][r]["kind"] == "variant"})
    marks = (f"no significance marks ({b['significance_not_assessed']})" if b["significance_not_assessed"] else
             f"* = significant on a primary metric ({', '.join(b['primary'])}), Holm-adjusted")
    lines += ["", f"{b['n_test_videos']} test videos, {'/'.join(map(str, seeds))} training seeds per variant; "
              f"95 % t intervals over test videos (jackknife) and seeds; {marks}; l2_vat: lower is better."]
    return "\n".join(lines)


def replace_block(text: str, block: str, start: str = README_START, end: str = README_END) -> str:
    """Put ``block`` between the README's markers ``start`` ... ``end``."""
    if start not in text or end not in text:
        raise ValueError(f"README has no results markers ({start} ... {end})")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{block}\n{end}{tail}"


# ---------------------------------------------------------------- DVC stage
def write_headline(*, root: Path, cmp: dict, params: dict) -> None:
    """The numbers dvc.yaml declares as metrics (gazelib.eval.headline): each row's primary metrics, and
    the answer (attribution's gains and controls, the full model vs the baseline, health)."""
    primary = list(params["compare"]["primary"])
    write_json(root / ROWS, rows_headline(cmp=cmp, primary=primary), sort_keys=False)
    path = root / ATTRIBUTION
    att = json.loads(path.read_text()) if path.exists() else None
    if att is None:  # the DVC graph always runs attribution first; a library run may not
        log.warning("%s missing: metrics/answer.json holds the content gain and health only", path)
    full = params["attribution"]["full"]
    gain = cmp["deltas"].get(full, {}).get("vs_baseline", {})
    asr = json.loads((root / ASR).read_text()) if (root / ASR).exists() else None
    val = json.loads((root / VALIDATION).read_text()) if (root / VALIDATION).exists() else {}
    iv = cmp["intervals"]
    write_json(root / ANSWER, answer_headline(att=att, content_gain={k: gain[k] for k in primary if k in gain},
                                              n_test_videos=iv["n_test_videos"], n_seeds=len(iv["seeds"].get(full, [])),
                                              asr=asr, validation=val), sort_keys=False)


def run_compare(*, params: dict, root: Path = Path(".")) -> dict:
    """Every variant, floor and the ceiling; deltas vs the baseline and persistence with intervals."""
    from gazelib.viz.plots import bar_compare

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
        protocol = json.loads((root / eval_metrics(v)).read_text())["protocol"]
    samples = pd.concat(tables, ignore_index=True)
    rows = {v: "variant" for v in variants} | {"centre_prior": "floor", "persistence": "floor",
                                                "inter_observer": "ceiling"}
    cmp = compare_rows(samples=samples, rows=rows, references=[ccfg["baseline"], "persistence"],
                       primary=tuple(ccfg["primary"]))
    cmp["lookahead"] = params["features"]["lookahead"]
    from gazelib.aoi.model_level import aoi_rows, render_aoi_rows
    from gazelib.eval.benchmark import compare_block, render_markdown, saturating_curve
    from gazelib.viz.plots import ceiling_plot

    cmp["aoi"] = aoi_rows(samples=samples, rows=rows, references=[ccfg["baseline"], "persistence"])
    cmp.update(compare_block(root=root, variants=variants, baseline=ccfg["baseline"], per_viewer_rows=cmp["rows"],
                             per_viewer_samples=samples))
    write_json(root / COMPARE, cmp)
    write_headline(root=root, cmp=cmp, params=params)
    ceiling_plot(path=root / "reports" / "ceiling.png", ceiling=cmp["ceiling"],
                 fit=saturating_curve)
    write_text(root / "reports" / "benchmark.md", "# Benchmark protocol and the infinite-observer ceiling (test split)"
               "\n\n" + render_markdown(cmp) + "\n![ceiling curves](ceiling.png)\n")
    md = render_report(cmp, protocol or "", lookahead=cmp["lookahead"])
    if cmp["aoi"]:
        md += "\n## At the AOI level (face identities + user AOIs; docs/aoi.md)\n\n" + render_aoi_rows(cmp["aoi"]) + "\n"
    names = list(rows)
    key = "auc_vat"
    vals = [cmp["rows"][n]["metrics"][key] for n in names]
    base = cmp["rows"][ccfg["baseline"]]["metrics"][key]
    ref = f"vs_{ccfg['baseline']}"
    def bound(n, i, side):   # no interval (one test video): the bar has no whisker
        ci = cmp["deltas"][n][ref][key]["ci95"] if ref in cmp["deltas"][n] else [None, None]
        return vals[i] if ci[side] is None or base is None else base + ci[side]

    lo = [bound(n, i, 0) for i, n in enumerate(names)]
    hi = [bound(n, i, 1) for i, n in enumerate(names)]
    bar_compare(path=root / "reports" / "compare.png", names=names, values=vals, lo=lo, hi=hi,
                floor=cmp["rows"]["persistence"]["metrics"][key], ceiling=cmp["rows"]["inter_observer"]["metrics"][key],
                metric=key)
    write_text(root / "reports" / "compare.md", "# Variant comparison (test split)\n\n" + md +
               f"\n![{key} per row](compare.png)\n")
    print(md)
    return cmp
