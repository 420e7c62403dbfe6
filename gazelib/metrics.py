r"""Gaze metrics: one module, the math of every metric written down here.

Conventions
-----------
Points are normalised frame coordinates ``(x, y)``, x to the right, y down, in [0, 1].
Every public function takes keyword arguments, is vectorised over ``N`` samples and
returns a dict of numpy arrays (one value per sample) unless said otherwise. Work that
would need an ``[N, H, W]`` intermediate is done in chunks of at most ``CHUNK`` samples
(fewer for large maps), so memory stays bounded for N = 60,000. Nothing is random.

Grid cells
----------
A grid of Gh x Gw cells is indexed row-major; cell (i, j) has centre
((j + 0.5) / Gw, (i + 0.5) / Gh). A point falls in cell
(min(int(y Gh), Gh - 1), min(int(x Gw), Gw - 1)) (clipped into the frame).

``cell_hits``: with s the N x (Gh Gw) cell scores and c the gaze cell,
rank(c) = #{k : s_k > s_c} + #{k < c : s_k = s_c} (the position of c in
``argsort(-s, kind="stable")``); hit1_cell = [rank(c) < 1], hit5_cell = [rank(c) < 5].

1. VideoAttentionTarget protocol (Chong et al., CVPR 2020)
---------------------------------------------------------
Replicates ``eval_on_videoatttarget.py`` of ejcgt/attention-target-detection for
in-frame samples, with output resolution R = ``res`` = 64 and sigma = 3:

Positive mask (``utils/imutils.py: draw_labelmap`` then ``> 0``): with
p = (x R, y R) and ``int`` truncating toward zero,
    ul = (int(p_x - 3 sigma), int(p_y - 3 sigma)),
    br = (int(p_x + 3 sigma + 1), int(p_y + 3 sigma + 1)),
the unnormalised Gaussian exp(-d^2 / (2 sigma^2)) on a (6 sigma + 1)^2 patch (every
entry >= exp(-9) > 0) is pasted into rows [max(0, ul_y), min(br_y, R)) and columns
[max(0, ul_x), min(br_x, R)). The mask is exactly that rectangle: 19 x 19 = 361 cells
when the patch is not clipped (9 <= p < R - 9 on both axes), fewer at the borders:
an axis keeps min(int(p + 10), R) - max(0, int(p - 9)) cells, e.g. p = (0, 0): ul =
(-9, -9), br = (10, 10), 10 x 10 = 100 cells; p = (64, 64) (gaze (1, 1)): ul = (55, 55),
9 x 9 = 81 cells. (The truncation of a negative ul toward zero is replicated but cannot
change the mask, since only max(0, ul) is used.) The early exit of draw_labelmap (patch
entirely outside, impossible for in-frame points) leaves an empty mask.

``auc_vat``: the heatmap is resized like ``scipy.misc.imresize(h, (R, R),
interp='bilinear')`` (scipy <= 1.2): ``bytescale`` to uint8,
    b = uint8(clip((h - min h) * (255 / c), 0, 255) + 0.5),  c = max h - min h (1 if 0),
computed in the heatmap's floating dtype, then PIL ``Image.resize((R, R), BILINEAR)`` of
the 'L' image. Then ``roc_auc_score(mask.ravel(), b.ravel())``, computed exactly from
per-level histograms (Mann-Whitney, ties count one half):
    AUC = sum_l P_l (N_{<l} + N_l / 2) / (|P| |N|),
with P_l, N_l the number of positive / negative pixels at level l and N_{<l} the number
of negatives below l. nan when the mask has no positive or no negative pixel (sklearn
raises there).

``l2_vat``: the reference takes the argmax of the model's native 64 x 64 output; ours is
a Gh x Gw grid, so it is first resized to R x R by PIL bilinear in mode 'F' (float32,
no uint8 quantisation); (row, col) = first maximum in row-major order (``np.argmax``),
pred = (col / R, row / R) exactly as ``argmax_pts`` (no + 0.5), and
    l2_vat = sqrt((x - col / R)^2 + (y - row / R)^2).

2. In / out of frame
--------------------
``average_precision`` equals ``sklearn.metrics.average_precision_score`` (with
``sample_weight``): sort by score descending, one threshold per distinct score value
t_1 > t_2 > ..., TP_k = sum_{s_i >= t_k} w_i y_i, FP_k = sum_{s_i >= t_k} w_i (1 - y_i),
    AP = sum_k (TP_k - TP_{k-1}) / TP_K * TP_k / (TP_k + FP_k)
(precision 0 where TP_k + FP_k = 0); nan when TP_K = 0 (no weighted positive).
``inout_metrics``: inout_ap = AP(is_in, prob_in) (in-frame positive, as VAT reports),
out_ap = AP(1 - is_in, 1 - prob_in), inout_acc = mean([prob_in >= 0.5] = is_in);
nan when a class is absent.

3. Saliency, pysaliency definitions (matthias-k/pysaliency, metrics.py and
   saliency_map_models.py), one value per fixation
-------------------------------------------------------------------------------
Sample n is one fixation (x, y) with its predicted map S (H x W). Its pixel is
x_px = min(int(x W), W - 1), y_px = min(int(y H), H - 1) (also clipped to >= 0), as
pysaliency's ``x_int``/``y_int``. Literal pysaliency formulas:

    convert_saliency_map_to_density(s, minimum_value=0):
        if s.min() < 0: s = s - s.min()
        s = s + minimum_value
        s = s / s.sum() if s.sum() else ones / (H W)
    NSS(s, xs, ys):  (s[ys, xs] - s.mean()) / s.std()   (no division if s.std() == 0)
    auc_for_one_positive(pos, negs):
        (#{neg < pos} + 0.5 #{neg == pos}) / len(negs)
    AUCs(nonfixations='uniform')  [Judd AUC]: negs = s.flatten() (all H W pixels, the
        fixated pixel included)
    AUCs(nonfixations='shuffled') [sAUC]: negs = s at the pixels of the fixations on
        other images (here ``other_xy``, K points, pixels by the same int rule)
    CC(s1, s2): normalise each (minus mean, divided by std if std); if s1 constant and
        s2 not: 0.0, else np.corrcoef(s1.ravel(), s2.ravel())[0, 1]
    SIM(s1, s2): sum(min(density(s1), density(s2)))
    MIT_KLDiv(s1, s2): S' = density(s1), G' = density(s2),
        sum(G' * log(2.2204e-16 + G' / (S' + 2.2204e-16)))

Here:
- nss = NSS(S, x_px, y_px); a constant S gives 0.0 (constancy is tested exactly,
  max S == min S, see below).
- auc_judd = auc_for_one_positive(S[y_px, x_px], S.ravel()).
- sauc = auc_for_one_positive(S[y_px, x_px], S[other pixels]); nan when K = 0.
- ig = log2(p[y_px, x_px] + EPS) - log2(q[y_px, x_px] + EPS), in bits per fixation,
  with p = density(S), q = density(prior) and EPS = 1e-12 guarding log(0) (so a model
  with p = 0 at a fixation is charged about log2(1e-12) ~ -40 bits, not -inf).
- the empirical map of one fixation is G[i, j] = exp(-((j + 0.5 - (x_px + 0.5))^2 +
  (i + 0.5 - (y_px + 0.5))^2) / (2 sigma_px^2)) at pixel centres, sigma_px =
  fixation_sigma * W (fixation_sigma is in units of the map width); then
  cc = CC(S, G), sim = SIM(S, G), kl = MIT_KLDiv(S, G). G is never constant unless
  H W = 1 or sigma_px is so large that exp rounds to 1 everywhere; there np.corrcoef
  (and so cc) is nan.

Constancy: pysaliency tests ``std == 0``; numpy's std of a constant float map is often
a rounding residue ~1e-17 rather than 0, which would turn NSS and CC into noise. Here a
map is constant iff max == min, and then nss = 0.0 and cc = 0.0 (what pysaliency
computes whenever its std is exactly 0).
"""
from __future__ import annotations

import numpy as np

from gazelib.core.cells import gaze_cell

EPS = 1e-12
KL_EPS = 2.2204e-16  # pysaliency MIT_KLDiv log_regularization = quotient_regularization
CHUNK = 2000
_ELEMENT_BUDGET = 4_000_000  # elements per [chunk, H*W] intermediate
_RESIZE_BLOCK_PIXELS = 1 << 22  # pixels per map block of :func:`_pil_resize_each` (its PIL images' size)


# Names of the per-sample metrics (means over samples) and of the pooled ones, as every
# report and the comparison use them.
STEP_KEYS = ("auc_vat", "l2_vat", "l2_diag", "l2_vat_deg", "hit1_cell", "hit5_cell")
FRAME_KEYS = ("nss", "cc", "sim", "kl", "auc_judd", "sauc", "ig")
MEAN_KEYS = STEP_KEYS + FRAME_KEYS
POOLED_KEYS = ("inout_ap", "out_ap", "inout_acc")
LOWER_IS_BETTER = frozenset({"l2_vat", "l2_diag", "l2_vat_deg", "kl", "bench_kl"})



# ----------------------------------------------------------------------------- checks

def _points(name: str, xy, n: int | None = None, *, unit: bool = False) -> np.ndarray:
    a = np.asarray(xy, np.float64)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"{name} must have shape [N, 2], got {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} rows, expected {n}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite")
    if unit and ((a < 0) | (a > 1)).any():
        raise ValueError(f"{name} must lie in [0, 1] (in-frame samples only)")
    return a


def _maps(name: str, maps, *, keep_float_dtype: bool = False) -> np.ndarray:
    a = np.asarray(maps)
    if a.ndim != 3 or a.shape[1] < 1 or a.shape[2] < 1:
        raise ValueError(f"{name} must have shape [N, H, W] with H, W >= 1, got {a.shape}")
    if not (keep_float_dtype and a.dtype in (np.float32, np.float64)):
        a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite")
    return a


def _out_hw(out_hw) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in out_hw)
    except (TypeError, ValueError):
        raise ValueError(f"out_hw must be a pair of ints (H, W), got {out_hw!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"out_hw must be positive, got {out_hw!r}")
    return h, w


def _positive_int(name: str, v) -> int:
    if isinstance(v, bool) or int(v) != v or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _binary(name: str, y, n: int) -> np.ndarray:
    a = np.asarray(y)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape [{n}], got {a.shape}")
    if not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must be 0/1")
    return a.astype(np.float64)


def _chunk_for(elements_per_sample: int) -> int:
    return max(1, min(CHUNK, _ELEMENT_BUDGET // max(1, elements_per_sample)))


def _pixels(xy: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """x_px = min(int(x W), W - 1), y_px = min(int(y H), H - 1), both clipped to >= 0."""
    x = np.clip(xy[:, 0] * w, 0, w - 1).astype(np.int64)
    y = np.clip(xy[:, 1] * h, 0, h - 1).astype(np.int64)
    return x, y


# --------------------------------------------------------------- 1. VideoAttentionTarget

def _bytescale(data: np.ndarray) -> np.ndarray:
    """scipy.misc.bytescale(data) (cmin = min, cmax = max, low = 0, high = 255)."""
    t = data.dtype.type
    cmin, cmax = data.min(), data.max()
    cscale = cmax - cmin
    if cscale == 0:
        cscale = t(1)
    scale = t(255) / cscale
    bytedata = (data - cmin) * scale + t(0)
    return (bytedata.clip(t(0), t(255)) + t(0.5)).astype(np.uint8)


def _bytescale_maps(a: np.ndarray) -> np.ndarray:
    """:func:`_bytescale` of every map of ``a`` [N, h, w] at once: the same elementwise operations in
    the maps' dtype, with each map's own min and max, so the same bytes as map by map."""
    t = a.dtype.type
    cmin = a.min(axis=(1, 2), keepdims=True)
    cscale = a.max(axis=(1, 2), keepdims=True) - cmin
    cscale[cscale == 0] = t(1)
    scale = t(255) / cscale
    bytedata = (a - cmin) * scale + t(0)
    return (bytedata.clip(t(0), t(255)) + t(0.5)).astype(np.uint8)


def _pil_resize_each(a: np.ndarray, mode: str, out_hw: tuple[int, int]) -> np.ndarray:
    """``Image.resize((W, H), BILINEAR)`` of each map of C-contiguous ``a`` [N, h, w] as a PIL image of
    ``mode`` ('L': uint8, 'F': float32): the same bytes as one call per map, made in two PIL calls per
    block of maps (evaluate resizes ~10^6 small maps per variant, 9 x 16 -> 64 x 64 and -> 36 x 64).

    Why that is the same arithmetic: PIL resizes in two separable passes, horizontal into a temporary
    image of the input's mode (so 'L' rounds to uint8 and 'F' to float32 between the passes), then
    vertical (``ImagingResampleInner``). A horizontal output pixel reads one input row, with
    coefficients from the input and output widths only; a vertical one reads one column, with
    coefficients from the heights only. So the maps are stacked one above the other for the horizontal
    pass (width w -> W, height kept: PIL runs only that pass) and side by side for the vertical one
    (height h -> H, width kept), and every pixel gets the same operations in the same order as in its
    own call. A pass whose size does not change is skipped, as PIL skips it. The Pillow installed here
    runs the vertical pass first for some vertical reductions (measured; never when the height grows),
    so a map shrunk vertically is still resized by its own call. Pixels come back through
    ``np.asarray`` (``tobytes`` encodes in pieces and joins them: twice as slow on large images)."""
    from PIL import Image

    h, w = out_hw
    n, ih, iw = a.shape
    out = np.empty((n, h, w), a.dtype)
    if h < ih and iw != w:   # the pass order is PIL's choice here: one call per map
        flat = out.reshape(n, -1)
        for i in range(n):
            img = Image.frombuffer(mode, (iw, ih), a[i], "raw", mode, 0, 1)
            flat[i] = np.frombuffer(img.resize((w, h), resample=Image.Resampling.BILINEAR).tobytes(), a.dtype)
        return out
    block = max(1, _RESIZE_BLOCK_PIXELS // (max(ih, h) * max(iw, w)))   # bounds each PIL image's size
    for s in range(0, n, block):
        m = np.ascontiguousarray(a[s:s + block])
        b = m.shape[0]
        if iw != w:   # horizontal pass: the maps one above the other, [b ih, iw] -> [b ih, w]
            img = Image.frombuffer(mode, (iw, b * ih), m, "raw", mode, 0, 1)
            m = np.asarray(img.resize((w, b * ih), resample=Image.Resampling.BILINEAR)).reshape(b, ih, w)
        if ih != h:   # vertical pass: the maps side by side, [ih, b w] -> [h, b w]
            side = np.ascontiguousarray(m.transpose(1, 0, 2)).reshape(ih, b * w)
            img = Image.frombuffer(mode, (b * w, ih), side, "raw", mode, 0, 1)
            m = np.asarray(img.resize((b * w, h), resample=Image.Resampling.BILINEAR)).reshape(h, b, w).transpose(1, 0, 2)
        out[s:s + b] = m
    return out


def imresize_uint8(*, maps, out_hw) -> np.ndarray:
    """``scipy.misc.imresize(m, out_hw, interp='bilinear')`` for each map: uint8 [N, H, W].

    ``maps`` [N, h, w]; float32 / float64 are bytescaled in their own dtype (as scipy did),
    other dtypes as float64. The resize is PIL's own ``Image.resize`` (BILINEAR) on the
    'L' image, which is what scipy called.
    """
    a = _maps("maps", maps, keep_float_dtype=True)
    h, w = _out_hw(out_hw)
    return _pil_resize_each(np.ascontiguousarray(_bytescale_maps(a)), "L", (h, w))


def resize_bilinear(*, maps, out_hw) -> np.ndarray:
    """PIL bilinear resize of each map in mode 'F' (float32 inside PIL): float64 [N, H, W]."""
    a = _maps("maps", maps)
    h, w = _out_hw(out_hw)
    return _pil_resize_each(np.ascontiguousarray(a, dtype=np.float32), "F", (h, w)).astype(np.float64)


def _vat_rect(gaze: np.ndarray, res: int, sigma: int):
    """Row/column ranges [lo, hi) pasted by draw_labelmap, per sample (empty if skipped)."""
    p = gaze * res
    ul = np.trunc(p - 3 * sigma).astype(np.int64)  # Python int(): toward zero
    br = np.trunc(p + 3 * sigma + 1).astype(np.int64)
    skip = (ul[:, 0] >= res) | (ul[:, 1] >= res) | (br[:, 0] < 0) | (br[:, 1] < 0)
    lo = np.maximum(0, ul)
    hi = np.minimum(br, res)
    hi = np.where(skip[:, None], lo, np.maximum(hi, lo))
    return lo, hi  # columns [:, 0], rows [:, 1]


def vat_positive_mask(*, gaze, res: int = 64, sigma: int = 3) -> np.ndarray:
    """``draw_labelmap(zeros(res, res), gaze * res, sigma) > 0``: bool [N, res, res]."""
    res, sigma = _positive_int("res", res), _positive_int("sigma", sigma)
    g = _points("gaze", gaze)
    lo, hi = _vat_rect(g, res, sigma)
    r = np.arange(res)
    rows = (r[None, :] >= lo[:, 1:2]) & (r[None, :] < hi[:, 1:2])
    cols = (r[None, :] >= lo[:, 0:1]) & (r[None, :] < hi[:, 0:1])
    return rows[:, :, None] & cols[:, None, :]


def _auc_uint8(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-row ROC AUC of uint8 scores [n, P] against bool labels [n, P] (ties = 1/2)."""
    n = values.shape[0]
    # per-row histograms of every pixel and of the positive ones (neg = all - pos): the same counts as one
    # bincount over (level, label, row), with a third of the index arithmetic over all pixels
    idx = values + (256 * np.arange(n, dtype=np.intp))[:, None]
    counts = np.bincount(idx.ravel(), minlength=256 * n).reshape(n, 256)
    pos_counts = np.bincount(idx[mask], minlength=256 * n).reshape(n, 256)
    neg, pos = (counts - pos_counts).astype(np.float64), pos_counts.astype(np.float64)
    neg_below = np.cumsum(neg, 1) - neg
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    u = (pos * (neg_below + 0.5 * neg)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = u / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


def vat_metrics(*, heatmaps, gaze, res: int = 64, sigma: int = 3) -> dict:
    """VideoAttentionTarget AUC and L2 per in-frame sample (see the module docstring).

    heatmaps: [N, Gh, Gw] real scores; gaze: [N, 2] normalised, in [0, 1].
    Returns {"auc_vat": [N], "l2_vat": [N], "pred_xy": [N, 2]} (the argmax point L2 is measured from).
    """
    res, sigma = _positive_int("res", res), _positive_int("sigma", sigma)
    hm = _maps("heatmaps", heatmaps, keep_float_dtype=True)
    g = _points("gaze", gaze, hm.shape[0], unit=True)
    n = hm.shape[0]
    auc = np.empty(n)
    l2 = np.empty(n)
    pred = np.empty((n, 2))
    step = _chunk_for(res * res)
    for s in range(0, n, step):
        sl = slice(s, min(n, s + step))
        scaled = imresize_uint8(maps=hm[sl], out_hw=(res, res)).reshape(-1, res * res)
        mask = vat_positive_mask(gaze=g[sl], res=res, sigma=sigma).reshape(-1, res * res)
        auc[sl] = _auc_uint8(scaled, mask)
        # resize_bilinear's float32 pixels before its float64 copy: the copy is exact and keeps the order, so
        # the same argmax, without 2 x 32 MB of copies per chunk
        up = _pil_resize_each(np.ascontiguousarray(hm[sl], dtype=np.float32), "F", (res, res)).reshape(-1, res * res)
        row, col = np.divmod(np.argmax(up, axis=1), res)
        px, py = col / res, row / res
        l2[sl] = np.sqrt((g[sl, 0] - px) ** 2 + (g[sl, 1] - py) ** 2)
        pred[sl, 0], pred[sl, 1] = px, py
    return {"auc_vat": auc, "l2_vat": l2, "pred_xy": pred}


def l2_diag(*, pred_xy, gaze, width: float, height: float) -> np.ndarray:
    """Aspect-true distance: the error in frame pixels over the frame diagonal,

        sqrt((dx W)^2 + (dy H)^2) / sqrt(W^2 + H^2),   dx, dy in normalised units,

    so an error means the same share of the picture on 16:9 and 4:3 video (the normalised
    ``l2_vat`` counts a unit of x as a unit of y whatever the frame's shape). Range [0, 1]."""
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    d = np.asarray(pred_xy, np.float64) - np.asarray(gaze, np.float64)
    return np.hypot(d[..., 0] * width, d[..., 1] * height) / np.hypot(width, height)


def cell_hits(*, heatmaps, gaze, gh: int, gw: int) -> dict:
    """Gaze cell among the top-1 / top-5 cells (stable order, ties to the lower index).

    heatmaps: [N, Gh*Gw] (or [N, Gh, Gw]) row-major cell scores; gaze: [N, 2] normalised.
    Returns {"hit1_cell": [N], "hit5_cell": [N]} as 0.0 / 1.0.
    """
    gh, gw = _positive_int("gh", gh), _positive_int("gw", gw)
    s = np.asarray(heatmaps, np.float64)
    if s.ndim == 3:
        s = s.reshape(s.shape[0], -1)
    if s.ndim != 2 or s.shape[1] != gh * gw:
        raise ValueError(f"heatmaps must have shape [N, {gh * gw}] or [N, {gh}, {gw}], got {np.shape(heatmaps)}")
    if not np.isfinite(s).all():
        raise ValueError("heatmaps must be finite")
    g = _points("gaze", gaze, s.shape[0])
    cell = gaze_cell(g, gh, gw)
    sc = s[np.arange(s.shape[0]), cell][:, None]
    before = np.arange(gh * gw)[None, :] < cell[:, None]
    rank = (s > sc).sum(1) + ((s == sc) & before).sum(1)
    return {"hit1_cell": (rank < 1).astype(np.float64), "hit5_cell": (rank < 5).astype(np.float64)}


# ------------------------------------------------------------------------- 2. In / out

def average_precision(*, scores, labels, weights=None):
    """sklearn ``average_precision_score(labels, scores, sample_weight=w)``.

    scores [N] finite, labels [N] 0/1, weights None, [N] or [B, N] (non-negative, e.g.
    bootstrap multiplicities). Returns a float for None / [N] weights and [B] for [B, N];
    nan where the weighted positives sum to 0. Sorted once, cumulative sums per weight
    row, rows processed in chunks so [rows, N] intermediates stay small.
    """
    s = np.asarray(scores, np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must have shape [N], got {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    n = s.shape[0]
    y = _binary("labels", labels, n)
    if weights is None:
        w, single = np.ones((1, n)), True
    else:
        w = np.asarray(weights, np.float64)
        single = w.ndim == 1
        if w.ndim not in (1, 2) or w.shape[-1] != n:
            raise ValueError(f"weights must have shape [{n}] or [B, {n}], got {w.shape}")
        w = w.reshape(-1, n)
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("weights must be finite and non-negative")
    if n == 0:
        out = np.full(w.shape[0], np.nan)
        return float(out[0]) if single else out
    order = np.argsort(-s, kind="stable")
    ss, ys = s[order], y[order]
    starts = np.r_[0, np.flatnonzero(ss[1:] != ss[:-1]) + 1]  # one group per distinct score
    out = np.empty(w.shape[0])
    step = max(1, _ELEMENT_BUDGET // n)
    for b in range(0, w.shape[0], step):
        wb = w[b:b + step][:, order]
        pos = np.add.reduceat(wb * ys, starts, axis=1)
        neg = np.add.reduceat(wb * (1.0 - ys), starts, axis=1)
        tps, fps = np.cumsum(pos, 1), np.cumsum(neg, 1)
        ps = tps + fps
        prec = np.divide(tps, ps, out=np.zeros_like(tps), where=ps != 0)
        total = tps[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            ap = (pos * prec).sum(1) / total
        ap[total == 0] = np.nan
        out[b:b + step] = ap
    return float(out[0]) if single else out


def inout_metrics(*, prob_in, is_in) -> dict:
    """{"inout_ap", "out_ap", "inout_acc"} (0-d float64 arrays); nan where a class is absent."""
    p = np.asarray(prob_in, np.float64)
    if p.ndim != 1:
        raise ValueError(f"prob_in must have shape [N], got {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("prob_in must be finite")
    y = _binary("is_in", is_in, p.shape[0])
    nan = np.float64(np.nan)
    if p.size == 0:
        return {"inout_ap": nan, "out_ap": nan, "inout_acc": nan}
    both = 0 < y.sum() < y.size
    return {
        "inout_ap": np.float64(average_precision(scores=p, labels=y)) if both else nan,
        "out_ap": np.float64(average_precision(scores=1.0 - p, labels=1.0 - y)) if both else nan,
        "inout_acc": np.float64(((p >= 0.5) == (y == 1)).mean()),
    }


# ------------------------------------------------------------------------- 3. Saliency

def _density(flat: np.ndarray) -> np.ndarray:
    """pysaliency convert_saliency_map_to_density(minimum_value=0), row-wise on [n, P]."""
    mn = flat.min(1, keepdims=True)
    d = np.where(mn < 0, flat - mn, flat)
    tot = d.sum(1, keepdims=True)
    uniform = (tot == 0)[:, 0]
    d = d / np.where(tot == 0, 1.0, tot)
    d[uniform] = 1.0 / flat.shape[1]
    return d


def saliency_metrics(*, maps, fix_xy, prior, other_xy, fixation_sigma: float) -> dict:
    """Per-fixation NSS, Judd AUC, shuffled AUC, IG, CC, SIM, KL (module docstring).

    maps: [N, H, W] prediction for each fixation's viewer and frame (non-negative);
    fix_xy: [N, 2] normalised fixations; prior: [H, W] (density or non-negative map)
    for IG; other_xy: [K, 2] normalised fixations of other frames / videos (sAUC
    negatives, shared by all N); fixation_sigma: Gaussian sigma of the empirical map in
    units of the map width. Returns {"nss", "auc_judd", "sauc", "ig", "cc", "sim", "kl"},
    each [N].
    """
    m = _maps("maps", maps, keep_float_dtype=True)
    n, h, w = m.shape
    fx = _points("fix_xy", fix_xy, n)
    q = np.asarray(prior, np.float64)
    if q.shape != (h, w):
        raise ValueError(f"prior must have shape {(h, w)}, got {q.shape}")
    if not np.isfinite(q).all():
        raise ValueError("prior must be finite")
    ox = _points("other_xy", other_xy)
    sigma = float(fixation_sigma)
    if not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"fixation_sigma must be positive, got {fixation_sigma!r}")
    sigma_px = sigma * w

    px, py = _pixels(fx, h, w)
    fidx = py * w + px
    qd = _density(q.reshape(1, -1))[0]
    k = ox.shape[0]
    if k:
        ox_px, oy_px = _pixels(ox, h, w)
        other_counts = np.bincount(oy_px * w + ox_px, minlength=h * w).astype(np.float64)
    cols, rows = np.arange(w, dtype=np.float64) + 0.5, np.arange(h, dtype=np.float64) + 0.5

    out = {key: np.empty(n) for key in ("nss", "auc_judd", "sauc", "ig", "cc", "sim", "kl")}
    step = _chunk_for(h * w)
    for s in range(0, n, step):
        sl = slice(s, min(n, s + step))
        c = sl.stop - sl.start
        flat = m[sl].reshape(c, h * w).astype(np.float64)
        sf = flat[np.arange(c), fidx[sl]]
        mean, std = flat.mean(1), flat.std(1)
        const = flat.max(1) == flat.min(1)
        centred = sf - mean
        out["nss"][sl] = np.where(const, 0.0, centred / np.where(const, 1.0, std))

        less = flat < sf[:, None]
        equal = flat == sf[:, None]
        out["auc_judd"][sl] = (less.sum(1) + 0.5 * equal.sum(1)) / (h * w)
        if k:
            out["sauc"][sl] = (less @ other_counts + 0.5 * (equal @ other_counts)) / k
        else:
            out["sauc"][sl] = np.nan
        del less, equal

        p = _density(flat)
        out["ig"][sl] = np.log2(p[np.arange(c), fidx[sl]] + EPS) - np.log2(qd[fidx[sl]] + EPS)

        dx2 = (cols[None, :] - (px[sl] + 0.5)[:, None]) ** 2
        dy2 = (rows[None, :] - (py[sl] + 0.5)[:, None]) ** 2
        g = np.exp(-(dy2[:, :, None] + dx2[:, None, :]) / (2 * sigma_px ** 2)).reshape(c, h * w)
        g_const = g.max(1) == g.min(1)
        gd = g / g.sum(1, keepdims=True)

        a = flat - mean[:, None]
        b = g - g.mean(1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))
        r = np.clip(r, -1.0, 1.0)
        r = np.where(const, 0.0, r)
        out["cc"][sl] = np.where(g_const, np.nan, r)
        del a, b

        out["sim"][sl] = np.minimum(p, gd).sum(1)
        out["kl"][sl] = (gd * np.log(KL_EPS + gd / (p + KL_EPS))).sum(1)
    return out
