"""What each content modality adds: the pipeline's answer to "do sound and speech help, by how much,
and is it real?".

Two kinds of evidence, both scored by the one evaluation protocol (:mod:`gazelib.eval.evaluate`) and
both with intervals over test videos and seeds (:mod:`gazelib.stats.intervals`):

- **retrained ablations**: the full variant (``attribution.full``) against variants trained without
  some modalities (``attribution.drop``), with the same seeds. ``gain = full - ablation``.
- **controls on the trained full model** (no retraining), for the modalities in ``attribution.move``:
  ``time_shift`` circularly shifts their aligned rows within the same video by half its length
  (at least ``min_shift_s``), ``swap`` takes them from another test video (the next one in
  sorted order, tiled to length). Both keep the modality's statistics and break only its
  synchrony with this video. A real effect of synchronised sound shrinks under both:
  ``removed = full - control``, and ``share = removed / gain``.

The controls run inside evaluate (they need the trained model and the test data path); this
module builds their inputs (:func:`write_control_files`) and summarises everything
(:func:`run_attribution`).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from gazelib.eval.contrasts import compare_rows
from gazelib.core.io import NpzRows, StreamedArray, read_npz, read_table, write_json, write_npz, write_text
from gazelib.core.layout import ATTRIBUTION, eval_metrics

log = logging.getLogger(__name__)

CONTROLS = ("time_shift", "swap")
CONTENT = ("audio", "text", "visual")
ROW_KEYS = ("audio", "text", "visual", "grid")   # as gazelib.data.align.ROW_KEYS (stored uncompressed)
MASK_COLUMN = {"audio": 0, "text": 1, "visual": 2}


def control_row(variant: str, control: str) -> str:
    """The samples-table row name of a control on ``variant``."""
    return f"{variant}~{control}"


def ablations(*, params: dict) -> dict[str, dict]:
    """``attribution.drop`` resolved to variants: name -> {dropped, modalities}. Raises with the
    params to add when no variant has exactly the full variant's modalities minus a drop set."""
    acfg, variants = params["attribution"], params["variants"]
    full = acfg["full"]
    if full not in variants:
        raise KeyError(f"attribution.full {full!r} is not a variant in params.yaml ({sorted(variants)})")
    have = list(variants[full]["modalities"])
    bad = sorted(set(acfg["controls"]) - set(CONTROLS))
    if bad:
        raise ValueError(f"attribution.controls: unknown {bad}; choose from {list(CONTROLS)}")
    move = list(acfg["move"])
    if not set(move) <= set(CONTENT) or not move:
        raise ValueError(f"attribution.move must list content modalities of {list(CONTENT)}, got {move}")
    out = {}
    for drop in acfg["drop"]:
        drop = list(drop)
        if not set(drop) <= set(have) or not drop:
            raise ValueError(f"attribution.drop {drop}: not a non-empty subset of {full}'s modalities {have}")
        want = sorted(set(have) - set(drop))
        match = [v for v, c in variants.items() if sorted(c["modalities"]) == want]
        if not match:
            raise ValueError(f"attribution.drop {drop}: no variant has modalities {want}; add one to params.yaml, "
                             f"e.g. variants: {{{'_'.join(want)}: {{modalities: {want}}}}}")
        out[match[0]] = {"dropped": drop, "modalities": want}
    return out


def shift_steps(*, n_steps: int, fps: float, min_shift_s: float) -> int:
    """Circular shift of the time_shift control: half the video, at least ``min_shift_s`` where the
    video is longer than that (shorter ones: half, reported)."""
    min_steps = int(math.ceil(min_shift_s * fps - 1e-9))
    return max(n_steps // 2, min_steps) if min_steps < n_steps else n_steps // 2


def control_sources(*, control: str, lengths: dict[str, int], fps: float, min_shift_s: float) -> dict[str, dict]:
    """Per test video: where the moved modalities' rows come from: {donor, index [T] of donor rows}
    and what it means ({shift_s} or {donor}); an empty dict where the control cannot apply."""
    vids = sorted(lengths)
    out = {}
    for i, vid in enumerate(vids):
        n = lengths[vid]
        if control == "time_shift":
            k = shift_steps(n_steps=n, fps=fps, min_shift_s=min_shift_s)
            if k == 0:
                continue
            out[vid] = {"donor": vid, "index": (np.arange(n) - k) % n, "shift_s": k / fps}
        elif control == "swap":
            if len(vids) < 2:
                continue
            donor = vids[(i + 1) % len(vids)]
            out[vid] = {"donor": donor, "index": np.arange(n) % lengths[donor]}
        else:
            raise ValueError(f"unknown control {control!r}; choose from {list(CONTROLS)}")
    return out


def _runs(index: np.ndarray) -> list[tuple[int, int, int]]:
    """(dst_start, src_start, length) of the contiguous stretches of ``index``."""
    if index.size == 0:
        return []
    cut = np.nonzero(np.diff(index) != 1)[0] + 1
    starts = np.concatenate([[0], cut])
    ends = np.concatenate([cut, [index.size]])
    return [(int(a), int(index[a]), int(b - a)) for a, b in zip(starts, ends)]


def write_control_files(*, files: list[Path], control: str, move: list[str], fps: float, min_shift_s: float,
                        out_dir: Path, chunk: int = 512) -> dict:
    """Aligned files of the test videos with the ``move`` modalities' rows (and mask columns) taken
    from :func:`control_sources`; everything else as it is. Rows are streamed (memory flat in video
    length). Returns {files: [Path], applied: {vid: {...}}, skipped: {vid: why}}."""
    by_vid = {Path(f).stem: Path(f) for f in files}
    rows = {vid: NpzRows(p) for vid, p in by_vid.items()}
    lengths = {vid: r.shapes["audio"][0] for vid, r in rows.items()}
    sources = control_sources(control=control, lengths=lengths, fps=fps, min_shift_s=min_shift_s)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, applied, skipped = [], {}, {}
    for vid, path in sorted(by_vid.items()):
        src = sources.get(vid)
        if src is None:
            skipped[vid] = ("only one test video: no other video to swap from" if control == "swap"
                            else "too short to shift")
            continue
        small = read_npz(path, keys=tuple(k for k in rows[vid].names if k not in rows[vid]))
        donor_rows, donor_mask = rows[src["donor"]], read_npz(by_vid[src["donor"]], keys=("mask",))["mask"]
        mask = small["mask"].copy()
        for m in move:
            mask[:, MASK_COLUMN[m]] = donor_mask[src["index"], MASK_COLUMN[m]]
            if donor_rows.shapes[m][1:] != rows[vid].shapes[m][1:]:
                raise ValueError(f"{vid}: {control} control: {m} of {src['donor']} has shape "
                                 f"{donor_rows.shapes[m]}, this video {rows[vid].shapes[m]}")
        arrays = {**small, "mask": mask}
        for key in ROW_KEYS:
            if key not in rows[vid]:
                continue
            moved = key in move
            reader, index = (donor_rows, src["index"]) if moved else (rows[vid], np.arange(lengths[vid]))
            arrays[key] = StreamedArray(shape=rows[vid].shapes[key], dtype=rows[vid].dtypes[key],
                                        chunks=_row_chunks(reader=reader, key=key, index=index, chunk=chunk))
        dst = out_dir / path.name
        write_npz(dst, uncompressed=tuple(k for k in ROW_KEYS if k in rows[vid]), **arrays)
        written.append(dst)
        applied[vid] = {k: v for k, v in src.items() if k != "index"}
    return {"files": written, "applied": applied, "skipped": skipped}


def _row_chunks(*, reader: NpzRows, key: str, index: np.ndarray, chunk: int):
    def chunks():
        for c0 in range(0, index.size, chunk):
            part = index[c0:c0 + chunk]
            yield np.concatenate([reader.rows(key, s, s + n) for _, s, n in _runs(part)])
    return chunks


# ---------------------------------------------------------------- DVC stage
def _pct(removed: float | None, gain: float | None) -> float | None:
    if removed is None or gain is None or gain == 0:
        return None
    return removed / gain


CONTROL_WORDS = {"time_shift": "shifting them in time within the same video",
                 "swap": "taking them from another test video"}


def _sig(e: dict) -> str:
    return ("not assessed" if e.get("significant") is None else
            "significant" if e["significant"] else "not significant")


def _stated(e: dict, k: str) -> str:
    if e["delta"] is None:
        return f"{k}: not measurable"
    return f"{e['delta']:+.3f} {UNITS.get(k, k)} [{e['ci95'][0]:+.3f}, {e['ci95'][1]:+.3f}] ({_sig(e)})"


def verdict(*, gain: dict, controls: list[dict], primary: list[str], not_assessed: str | None) -> str:
    """One line from the significance of the retrained gain and of the controls' losses."""
    if not_assessed:
        return "not assessed (too few test videos)"
    gain_sig = any(gain[k].get("significant") and gain[k]["delta"] > 0 for k in primary)
    used = any(c[k].get("significant") and c[k]["delta"] > 0 for c in controls for k in primary)
    if gain_sig and used:
        return "a real effect of synchronised sound and speech"
    if gain_sig:
        return ("a gain that does not depend on synchrony with the video: no evidence that sound and speech inform "
                "gaze (extra inputs acting as a bias explain it as well)")
    if used:
        return ("the full model uses synchronised sound and speech, but a model retrained without them does as well: "
                "on this corpus what they tell about gaze is also in the other inputs")
    return "no evidence that sound and speech help predict gaze on this corpus"


def answer_sentence(att: dict) -> str:
    """The answer in words, from reports/metrics/attribution.json (the README states exactly this)."""
    full, prim = att["full"], att["primary"]
    parts = []
    for abl, e in att["ablations"].items():
        what = " and ".join(e["dropped_names"])
        line = (f"{what[0].upper() + what[1:]} add {' and '.join(_stated(e['gain'][k], k) for k in prim)} to {full} "
                f"over {abl} (retrained without them, same seeds)")
        ctrl, losses = [], []
        for c, ce in att["controls"].items():
            if ce.get("not_applicable"):
                ctrl.append(f"the {c.replace('_', '-')} control could not run ({ce['not_applicable']})")
                continue
            losses.append(ce["removed"])
            shares = ce["share_of_gain_removed"].get(abl, {})
            share = [f"{100 * shares[k]:.0f} % of the {k} gain" for k in prim
                     if shares.get(k) is not None and e["gain"][k].get("significant") and e["gain"][k]["delta"] > 0]
            ctrl.append(f"{CONTROL_WORDS[c]} ({c}) costs the trained {full} "
                        + " and ".join(_stated(ce["removed"][k], k) for k in prim)
                        + (f", i.e. {' and '.join(share)}" if share else ""))
        if ctrl:
            line += "; " + "; ".join(ctrl)
        line += (". Verdict: " + verdict(gain=e["gain"], controls=losses, primary=prim,
                                         not_assessed=att["significance_not_assessed"]))
        parts.append(line + ".")
    foot = (f" {att['n_test_videos']} test videos (the resampling unit), seeds {att['seeds']}; "
            f"95 % t intervals over videos and seeds, primary metrics {', '.join(prim)} Holm-adjusted.")
    if att["significance_not_assessed"]:
        foot += f" No significance assessed: {att['significance_not_assessed']}."
    if att["lookahead"] != "none":
        foot += (f" OFFLINE ANALYSIS (features.lookahead: {att['lookahead']}): content features saw media after the "
                 "predicted step.")
    return " ".join(parts) + foot


README_START, README_END = "<!-- attribution:start (scripts/readme_results.py) -->", "<!-- attribution:end -->"


def readme_attribution(att: dict) -> str:
    """The README's answer block: the sentence of reports/metrics/attribution.json, as it is."""
    return att["answer"]


UNITS = {"auc_vat": "auc_vat", "ig": "bits (IG)", "nss": "NSS"}
MODALITY_NAMES = {"audio": "sound", "text": "speech", "visual": "vision", "track": "the gaze track"}


def run_attribution(*, params: dict, root: Path = Path(".")) -> dict:
    """reports/metrics/attribution.json and reports/attribution.md from the evaluated samples."""
    acfg = params["attribution"]
    full = acfg["full"]
    abl = ablations(params=params)
    primary = tuple(params["compare"]["primary"])

    def samples_of(variant: str) -> pd.DataFrame:
        p = root / "reports" / "eval" / variant / "samples.parquet"
        if not p.exists():
            raise FileNotFoundError(f"{p} missing: run evaluate@{variant}")
        return read_table(p)[0]

    full_df = samples_of(full)
    ev = json.loads((root / eval_metrics(full)).read_text())
    ctrl_info = ev.get("controls", {})
    rows = {full: "variant"} | {a: "ablation" for a in abl}
    present = set(full_df["row"])
    for c in acfg["controls"]:
        if control_row(full, c) in present:
            rows[control_row(full, c)] = "control"
    tables = [full_df[full_df["row"].isin([r for r in rows if r == full or r.startswith(f"{full}~")])]]
    tables += [samples_of(a).query("row == @a") for a in abl]
    samples = pd.concat(tables, ignore_index=True)
    keys = tuple(dict.fromkeys(primary + ("auc_vat", "l2_vat", "nss", "ig")))
    cmp = compare_rows(samples=samples, rows=rows, references=list(abl) + [full], keys=keys, primary=primary)
    iv = cmp["intervals"]
    att = {"question": "do sound and speech help predict gaze, by how much, and is it real?",
           "full": full, "primary": list(primary), "lookahead": params["features"]["lookahead"],
           "n_test_videos": iv["n_test_videos"], "test_videos": iv["test_videos"],
           "seeds": iv["seeds"].get(full, []), "method": iv["method"],
           "resampling_unit": iv["unit"], "significance_not_assessed": iv["significance_not_assessed"],
           "values": {r: cmp["rows"][r]["metrics"] for r in rows},
           "ablations": {}, "controls": {}}
    for a, e in abl.items():
        gain = cmp["deltas"][full][f"vs_{a}"]
        att["ablations"][a] = {"dropped": e["dropped"], "dropped_names": [MODALITY_NAMES[m] for m in e["dropped"]],
                               "modalities": e["modalities"], "gain": gain}
    for c in acfg["controls"]:
        r = control_row(full, c)
        info = ctrl_info.get(c, {})
        if r not in rows:
            att["controls"][c] = {"not_applicable": info.get("why", "no control samples in evaluate's output"),
                                  "moved": list(acfg["move"])}
            continue
        removed = {k: _neg(v) for k, v in cmp["deltas"][r][f"vs_{full}"].items()}
        att["controls"][c] = {"moved": list(acfg["move"]), "removed": removed,
                              "share_of_gain_removed": {a: {k: _pct(removed[k]["delta"], att["ablations"][a]["gain"][k]
                                                                    ["delta"]) for k in keys} for a in abl},
                              **{k: v for k, v in info.items() if k != "why"}}
    att["answer"] = answer_sentence(att)
    write_json(root / ATTRIBUTION, att)
    write_text(root / "reports" / "attribution.md", render_attribution(att))
    print(att["answer"])
    return att


def _neg(e: dict) -> dict:
    """``full - control`` from the entry ``control - full`` (the part of the effect the control removes)."""
    lo, hi = e["ci95"]
    d = e["delta"]
    return {**e, "delta": None if d is None else -d, "ci95": [None if hi is None else -hi, None if lo is None else -lo],
            "better": None if e["better"] is None else not e["better"]}


def render_attribution(att: dict) -> str:
    """reports/attribution.md: the answer, the values, the gains and what each control removes."""
    keys = list(dict.fromkeys(att["primary"] + ["auc_vat", "l2_vat", "nss", "ig"]))

    def cell(e):
        if e["delta"] is None:
            return "–"
        mark = " *" if e.get("significant") else ""
        return f"{e['delta']:+.4f} [{e['ci95'][0]:+.4f}, {e['ci95'][1]:+.4f}]{mark}"

    lines = ["# What sound and speech add (attribution)", "", att["answer"], "",
             "| row | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for r, v in att["values"].items():
        lines.append(f"| {r} | " + " | ".join("–" if v[k] is None else f"{v[k]:.4f}" for k in keys) + " |")
    lines += ["", "| gain of the full model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for a, e in att["ablations"].items():
        lines.append(f"| {att['full']} − {a} (without {', '.join(e['dropped'])}) | "
                     + " | ".join(cell(e["gain"][k]) for k in keys) + " |")
    for c, e in att["controls"].items():
        if e.get("not_applicable"):
            lines.append(f"| {c}: not applicable ({e['not_applicable']}) |" + " |" * len(keys))
            continue
        lines.append(f"| removed by {c} ({att['full']} − control) | " + " | ".join(cell(e["removed"][k]) for k in keys)
                     + " |")
    lines += ["", f"Resampling unit: {att['resampling_unit']}; {att['n_test_videos']} test videos; {att['method']}. "
              f"* = significant on a primary metric ({', '.join(att['primary'])}), Holm-adjusted."
              + (f" {att['significance_not_assessed']}." if att["significance_not_assessed"] else ""), ""]
    return "\n".join(lines)
