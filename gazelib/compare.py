"""Compare variants, floors and the ceiling with a cluster bootstrap over test videos and seeds.

A row r (a variant trained with seeds S_r, or a floor / the ceiling, one deterministic
"seed") has per seed s and test video i the sum and count of each per-sample metric over
its in-frame samples. Its value for a metric m is the mean over seeds of the pooled mean over
videos::

    m_r = 1/|S_r| sum_s  (sum_i sum_{r,s,i}) / (sum_i count_{r,s,i})

and for the pooled metrics (``inout_ap``, ``out_ap``, ``inout_acc``) the mean over seeds of
the metric over all valid samples. One bootstrap draw b resamples the **test videos** with
replacement (multiplicities M_b,i, shared by every row, so deltas are paired over videos) and,
independently for each row, its **training seeds** with replacement (multiplicities N_b,s),
and recomputes every row's value with those weights. The delta of r against a reference R is
``m_r - m_R`` per draw; the 95 % interval is its 2.5 / 97.5 percentiles. Resampling videos
makes the interval speak to new videos, resampling seeds to a new training run.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from gazelib.metrics import LOWER_IS_BETTER, MEAN_KEYS, POOLED_KEYS, average_precision
import json
from pathlib import Path
from gazelib.io import read_table, write_json, write_text

ALL_KEYS = MEAN_KEYS + POOLED_KEYS


def _draws(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """[n_boot, n] multiplicities of n units drawn n times with replacement."""
    idx = rng.integers(0, n, size=(n_boot, n))
    return np.stack([np.bincount(r, minlength=n) for r in idx]).astype(np.float64)


def _row_values(df: pd.DataFrame, videos: list[str], seeds: list, w_video: np.ndarray,
                w_seed: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of one row under weights: w_video [B, n_videos], w_seed [B, n_seeds] -> [B]."""
    vid_pos = {v: i for i, v in enumerate(videos)}
    out: dict[str, np.ndarray] = {}
    per_seed: dict[str, list[np.ndarray]] = {k: [] for k in ALL_KEYS}
    for s in seeds:
        d = df[df["seed"] == s]
        vi = d["video_id"].map(vid_pos).to_numpy()
        for k in MEAN_KEYS:
            x = d[k].to_numpy(np.float64)
            ok = np.isfinite(x)
            sums = np.bincount(vi[ok], weights=x[ok], minlength=len(videos))
            cnts = np.bincount(vi[ok], minlength=len(videos)).astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                per_seed[k].append((w_video @ sums) / (w_video @ cnts))
        w = w_video[:, vi]
        y = d["inout"].to_numpy().astype(int)
        p = d["p_in"].to_numpy(np.float64)
        per_seed["inout_ap"].append(np.asarray(average_precision(scores=p, labels=y, weights=w), np.float64))
        per_seed["out_ap"].append(np.asarray(average_precision(scores=1 - p, labels=1 - y, weights=w), np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            per_seed["inout_acc"].append((w @ ((p >= 0.5) == y).astype(np.float64)) / w.sum(1))
    for k in ALL_KEYS:
        vals = np.stack(per_seed[k], 1)                  # [B, n_seeds]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[k] = np.nansum(vals * w_seed, 1) / (np.isfinite(vals) * w_seed).sum(1)
    return out


def compare_rows(*, samples: pd.DataFrame, rows: dict[str, str], references: list[str], n_boot: int, seed: int,
                 chunk: int = 100) -> dict:
    """``samples``: per-sample table with columns row, seed, video_id, inout, p_in and the metrics;
    ``rows``: row name -> kind (variant | floor | ceiling). Returns values and deltas with intervals."""
    missing = [r for r in list(rows) + references if r not in set(samples["row"])]
    if missing:
        raise ValueError(f"compare: no samples for {missing}; rows present: {sorted(set(samples['row']))}")
    videos = sorted(samples["video_id"].unique())
    seeds = {r: sorted(samples.loc[samples["row"] == r, "seed"].unique()) for r in rows}
    rng = np.random.default_rng(seed)
    w_video = _draws(rng, len(videos), n_boot)
    w_seed = {r: _draws(rng, len(seeds[r]), n_boot) for r in rows}
    by_row = {r: samples[samples["row"] == r] for r in rows}
    point = {r: _row_values(by_row[r], videos, seeds[r], np.ones((1, len(videos))), np.ones((1, len(seeds[r]))))
             for r in rows}
    boot: dict[str, dict[str, list]] = {r: {k: [] for k in ALL_KEYS} for r in rows}
    for b0 in range(0, n_boot, chunk):
        for r in rows:
            vals = _row_values(by_row[r], videos, seeds[r], w_video[b0:b0 + chunk], w_seed[r][b0:b0 + chunk])
            for k in ALL_KEYS:
                boot[r][k].append(vals[k])
    boot_arr = {r: {k: np.concatenate(v) for k, v in d.items()} for r, d in boot.items()}
    out = {"bootstrap": {"unit": "test videos (cluster, paired across rows) x training seeds (per row)",
                         "n_test_videos": len(videos), "test_videos": videos, "n_boot": n_boot, "ci": 0.95,
                         "seeds": {r: [int(s) for s in seeds[r]] for r in rows}},
           "rows": {}, "deltas": {}}
    for r, kind in rows.items():
        out["rows"][r] = {"kind": kind, "n_seeds": len(seeds[r]),
                          "metrics": {k: _f(point[r][k][0]) for k in ALL_KEYS}}
        out["deltas"][r] = {}
        for ref in references:
            if ref == r:
                continue
            entry = {}
            for k in ALL_KEYS:
                d = boot_arr[r][k] - boot_arr[ref][k]
                d = d[np.isfinite(d)]
                delta = point[r][k][0] - point[ref][k][0]
                lo, hi = (np.percentile(d, [2.5, 97.5]) if d.size else (np.nan, np.nan))
                entry[k] = {"delta": _f(delta), "ci95": [_f(lo), _f(hi)],
                            "excludes_zero": bool(d.size and (lo > 0 or hi < 0)),
                            "better": None if not np.isfinite(delta) else bool((delta < 0) == (k in LOWER_IS_BETTER))}
            out["deltas"][r][f"vs_{ref}"] = entry
    return out


def _f(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


TABLE_KEYS = ("auc_vat", "l2_vat", "hit1_cell", "nss", "cc", "sauc", "ig", "inout_ap", "out_ap")


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def _fmt_delta(e: dict) -> str:
    if e["delta"] is None:
        return "–"
    lo, hi = e["ci95"]
    ci = "" if lo is None else f" [{lo:+.3f}, {hi:+.3f}]"
    return f"{e['delta']:+.3f}{ci}{' *' if e['excludes_zero'] else ''}"


def render_report(cmp: dict, protocol: str) -> str:
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
    b = cmp["bootstrap"]
    foot = (f"Intervals: 95 % percentile bootstrap ({b['n_boot']} draws) over {b['n_test_videos']} test videos "
            f"(cluster bootstrap, paired across rows) and, per row, its training seeds "
            f"({', '.join(f'{r}: {len(s)}' for r, s in b['seeds'].items())}). * = the interval excludes 0. "
            f"l2_vat and kl: lower is better.\n\n{protocol}\n")
    return "\n\n".join(parts) + "\n\n" + foot


README_KEYS = ("auc_vat", "l2_vat", "nss", "cc", "sauc", "ig", "inout_ap", "out_ap")
README_START, README_END = "<!-- results:start (scripts/readme_results.py) -->", "<!-- results:end -->"


def readme_results(cmp: dict, baseline: str, floor: str = "persistence") -> str:
    """The README's results block: every row's values, then the deltas of every other variant
    vs ``baseline`` and vs ``floor`` for the headline metrics, with their intervals."""
    b = cmp["bootstrap"]
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
    lines += ["", f"{b['n_test_videos']} test videos, {'/'.join(map(str, seeds))} training seeds per variant; "
              f"95 % intervals from a cluster bootstrap over test videos and seeds ({b['n_boot']} draws); "
              "* = the interval excludes 0; l2_vat: lower is better."]
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    """Put ``block`` between the README's results markers."""
    if README_START not in text or README_END not in text:
        raise ValueError(f"README has no results markers ({README_START} ... {README_END})")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_START}\n{block}\n{README_END}{tail}"


# ---------------------------------------------------------------- DVC stage
def run_compare(*, params: dict, root: Path = Path(".")) -> dict:
    """Every variant, floor and the ceiling; deltas vs the baseline and persistence with intervals."""
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
