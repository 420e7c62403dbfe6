"""Multimodal gaze transformer: where (heatmap over grid cells) and whether (in/out of frame).

Per step t: each modality m in the variant is embedded to ``d_model`` (Linear, GELU,
dropout) and fused; a temporal transformer encoder with a **causal** mask (step t attends
to steps <= t only) and a padding mask gives a context h_t. The spatial head scores cell c as

    s_{t,c} = <W_q h_t, k_{t,c}> / sqrt(d_c) + w^T k_{t,c},   k_{t,c} = GELU(W_f f_{t,c} + pos_c)

(one layer of width ``cell_dim`` on the cell side keeps the [B, T, cells, d_c] work small;
the context side carries the depth)
where f_{t,c} holds the cell's grid features (visual variants). Track variants add
a_t m_{t,c}: m the map of the last known gaze (the track_map input), a_t a linear map of h_t
(starting at 0). The keys are then content only (``track_in_keys: false``, the default since
0.4.0), so the keys of one window are computed once for all its viewers in a batch
(``content_index``: the batch's content rows are the distinct windows and each item names its row;
:func:`gazelib.data.dataset.window_batch`), and without the grid they are one [cells, d_c] table:
the [B, T, cells, d_c] work no longer grows with the viewers. Checkpoints that predate the option
(``track_in_keys: true``) put m_{t,c} into f_{t,c} instead (per viewer keys) and load as they were.
The in/out head is a linear map of h_t.

**Persistence path** (``persistence: true``, variants with the track): the heatmap is a mixture
that contains the persistence floor (:mod:`gazelib.model.floors`) as a special case,

    p_t = (1 - w_t) N(g_t; sigma_t) + w_t softmax(s_t + b),

with g_t the last seen gaze (the track input, seen at t - horizon), N a Gaussian on the cell
centres (per-axis width sigma_t) normalised over the cells, b a fixed log prior over the cells,
and (logit w_t, log sigma_t) a linear map of [h_t, track age] whose bias starts at (logit
``persistence_prior_weight``, log ``persistence_sigma``), or, in training, at the persistence floor
fitted on train (:meth:`GazeTransformer.init_persistence`: its width, weight and centre prior as b,
and s_t = 0 at the start, so the model starts as the floor itself;
b stays fixed, the floor's centre prior is fitted leave-one-video-out and a learned per-cell bias
overfits a small train split, the head s_t learns any residual).
The spatial head alone would have to place a sharp peak at an arbitrary point through a dot product
with learned cell keys, and in practice it does not (docs/model.md): the mixture starts the model
at persistence and leaves it to learn where to improve on it (w_t -> 1: the head's map; sigma_t by
track age and context). Where the last gaze is unknown or out of frame
the map is softmax(s_t + b). The returned logits are log p_t.

Fusion (masked modalities contribute nothing in every mode):
- ``gated``: sum_m mask_m * sigmoid(W_g e_m) * e_m
- ``concat``: W [mask_1 e_1; ...; mask_M e_M]
- ``add``: sum_m mask_m e_m
- ``cross_attention``: a learned query attends over the available modality tokens
  (plus an always-present null token, so a step with nothing available is defined)

Leak-proof by construction: fusion and both heads work within one step, and the only
operator that mixes steps is the causal encoder, so the output at t depends on inputs at
steps <= t only; the track input at step t holds gaze from before t - horizon (see
:mod:`gazelib.data.dataset`). ``content_context="bidirectional"`` (offline analysis only) adds
a bidirectional encoder over the *content* embeddings (audio, text, visual), whose output
is added to them before fusion; the track embedding never enters it, so the track path
stays causal in every option.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

FUSIONS = ("gated", "concat", "add", "cross_attention")
CONTENT_CONTEXTS = ("causal", "bidirectional")
CONTENT_MODALITIES = ("audio", "text", "visual")
MODALITY_INDEX = {"audio": 0, "text": 1, "visual": 2, "track": 3}
# numerical guards on the persistence path's learned log width (normalised units: 1e-3 .. e^2)
LOG_SIGMA_MIN, LOG_SIGMA_MAX = math.log(1e-3), 2.0


@dataclass
class ModelConfig:
    modalities: list[str]
    input_dims: dict[str, int]          # per modality feature width (track included)
    grid_channels: int
    grid_h: int
    grid_w: int
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    dim_ff: int = 128
    dropout: float = 0.1
    fusion: str = "gated"
    content_context: str = "causal"     # causal | bidirectional (offline analysis; never the track)
    cell_dim: int = 32                  # width of the per-cell keys (the [B, T, cells, .] work)
    track_in_keys: bool = False         # the last gaze's map in the cell keys (true: checkpoints before 0.4.0,
                                        # gazelib.model.checkpoint); false: content-only keys, shared by a window's viewers
    max_len: int = 4096
    persistence: bool = False           # the persistence path (track variants); params.yaml sets it
    persistence_sigma: float = 0.05     # its initial Gaussian width (normalised units), then learned
    persistence_prior_weight: float = 0.5   # its initial weight of the spatial head's map, then learned
    extra: dict = field(default_factory=dict)


def build_model(config: ModelConfig | dict) -> "GazeTransformer":
    cfg = config if isinstance(config, ModelConfig) else ModelConfig(**config)
    if cfg.fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {cfg.fusion!r}; choose one of {FUSIONS}")
    if cfg.content_context not in CONTENT_CONTEXTS:
        raise ValueError(f"unknown content_context {cfg.content_context!r}; choose one of {CONTENT_CONTEXTS}")
    if not (cfg.persistence_sigma > 0 and math.isfinite(cfg.persistence_sigma)):
        raise ValueError(f"model.persistence_sigma must be a positive width, got {cfg.persistence_sigma!r}")
    if not 0 < cfg.persistence_prior_weight < 1:
        raise ValueError(f"model.persistence_prior_weight must lie in (0, 1), got {cfg.persistence_prior_weight!r}")
    if not isinstance(cfg.track_in_keys, bool):
        raise ValueError(f"model.track_in_keys must be true or false, got {cfg.track_in_keys!r}")
    if not isinstance(cfg.persistence, bool):
        raise ValueError(f"model.persistence must be true or false, got {cfg.persistence!r}")
    unknown = set(cfg.modalities) - set(MODALITY_INDEX)
    if unknown or not cfg.modalities:
        raise ValueError(f"variant modalities {cfg.modalities} invalid; choose from {list(MODALITY_INDEX)}")
    return GazeTransformer(cfg)


def sinusoidal(n: int, d: int) -> torch.Tensor:
    pos = torch.arange(n).unsqueeze(1).float()
    div = torch.exp(torch.arange(0, d, 2).float() * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)
    return pe


class Fusion(nn.Module):
    def __init__(self, mode: str, n_mod: int, d: int, n_heads: int, dropout: float):
        super().__init__()
        self.mode = mode
        if mode == "gated":
            self.gates = nn.ModuleList([nn.Linear(d, d) for _ in range(n_mod)])
        elif mode == "concat":
            self.proj = nn.Linear(n_mod * d, d)
        elif mode == "cross_attention":
            self.query = nn.Parameter(torch.randn(1, 1, d) * 0.02)
            self.null = nn.Parameter(torch.zeros(1, 1, d))
            self.attn = nn.MultiheadAttention(d, n_heads, dropout=dropout, batch_first=True)

    def forward(self, embs: list[torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
        """``embs``: M tensors [B, T, d]; ``masks``: [B, T, M] float availability."""
        if self.mode == "gated":
            return sum(masks[..., i:i + 1] * torch.sigmoid(g(e)) * e for i, (g, e) in enumerate(zip(self.gates, embs)))
        if self.mode == "add":
            return sum(masks[..., i:i + 1] * e for i, e in enumerate(embs))
        if self.mode == "concat":
            return self.proj(torch.cat([masks[..., i:i + 1] * e for i, e in enumerate(embs)], -1))
        b, t, d = embs[0].shape
        tokens = torch.stack(embs, 2).reshape(b * t, len(embs), d)
        tokens = torch.cat([self.null.expand(b * t, 1, d), tokens], 1)
        avail = torch.cat([torch.ones(b * t, 1, device=masks.device), masks.reshape(b * t, -1)], 1)
        out, _ = self.attn(self.query.expand(b * t, 1, d), tokens, tokens, key_padding_mask=avail < 0.5)
        return out.reshape(b, t, d)


class GazeTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.modalities = list(cfg.modalities)
        self.embed = nn.ModuleDict({m: nn.Sequential(nn.Linear(cfg.input_dims[m], d), nn.GELU(),
                                                     nn.Dropout(cfg.dropout)) for m in self.modalities})
        self.fusion = Fusion(cfg.fusion, len(self.modalities), d, cfg.n_heads, cfg.dropout)
        self.register_buffer("pos", sinusoidal(cfg.max_len, d), persistent=False)
        layer = nn.TransformerEncoderLayer(d, cfg.n_heads, cfg.dim_ff, cfg.dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.content = [m for m in self.modalities if m in CONTENT_MODALITIES]
        self.content_encoder = None
        if cfg.content_context == "bidirectional" and self.content:
            c_layer = nn.TransformerEncoderLayer(d, cfg.n_heads, cfg.dim_ff, cfg.dropout, batch_first=True,
                                                 norm_first=True)
            self.content_encoder = nn.TransformerEncoder(c_layer, 1, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        n_cells = cfg.grid_h * cfg.grid_w
        self.use_grid = "visual" in self.modalities
        self.use_track_map = "track" in self.modalities
        dc = cfg.cell_dim
        self.cell_pos = nn.Parameter(torch.randn(n_cells, dc) * 0.02)
        self.cell_proj = nn.Linear(cfg.grid_channels, dc) if self.use_grid else None
        self.legacy_keys = cfg.track_in_keys    # per item keys, as checkpoints before 0.4.0
        self.track_proj = nn.Parameter(torch.randn(dc) * 0.1) if self.use_track_map and self.legacy_keys else None
        self.track_gain = None   # a_t = W h_t + b: the last gaze's map in the cell scores
        if self.use_track_map and not self.legacy_keys:
            self.track_gain = nn.Linear(d, 1)
            nn.init.zeros_(self.track_gain.weight)
            nn.init.zeros_(self.track_gain.bias)
        self.query = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, dc))
        self.cell_bias = nn.Linear(dc, 1)
        self.inout_head = nn.Linear(d, 1)
        self.use_persistence = cfg.persistence and self.use_track_map
        if self.use_persistence:
            ys, xs = torch.meshgrid((torch.arange(cfg.grid_h) + 0.5) / cfg.grid_h,
                                    (torch.arange(cfg.grid_w) + 0.5) / cfg.grid_w, indexing="ij")
            # as gazelib.metrics.cell_centres: (x, y), row-major
            self.register_buffer("centres", torch.stack([xs.reshape(-1), ys.reshape(-1)], 1), persistent=False)
            self.persist_head = nn.Linear(d + 1, 3)   # [h_t, age] -> logit w, log sigma_x, log sigma_y
            self.register_buffer("prior_logit", torch.zeros(n_cells))   # the floor's log centre prior, fixed
            # the floor's in-frame logit by the last gaze's state (in, out, none), added to the in/out head's
            self.register_buffer("inout_floor_logit", torch.zeros(3))
            nn.init.zeros_(self.persist_head.weight)
            self.init_persistence(prior=None, sigma=cfg.persistence_sigma, weight=cfg.persistence_prior_weight)

    @torch.no_grad()
    def init_persistence(self, *, prior, sigma: float, weight: float, p_in=None) -> None:
        """Start the persistence path at a fitted persistence floor (:func:`gazelib.model.floors.fit_floors`):
        its Gaussian width ``sigma``, its weight ``weight`` of the centre prior ``prior`` [cells] (added
        to the head's map as a fixed log prior, a buffer saved with the weights; None: uniform). The head's
        own scores start at exactly zero (its last query layer and the cell bias zeroed, as ReZero does: the
        keys are not zero, so their gradients are not either), so the heatmap is the floor's mixture to
        float32 rounding, and training can only move it from there. ``p_in``: the floor's in-frame
        probability given the last seen gaze in frame, out of frame, none
        (``p_in_given_last_in_out_none``); the in/out head then starts at zero on top of those logits,
        so the flag starts as the floor's too."""
        if not self.use_persistence:
            raise ValueError("init_persistence: this model has no persistence path (model.persistence, track)")
        if not (0 < weight < 1 and sigma > 0):
            raise ValueError(f"init_persistence: need 0 < weight < 1 and sigma > 0, got weight {weight}, sigma {sigma}")
        if prior is not None:
            prior = torch.as_tensor(prior, dtype=torch.float32).reshape(-1)
            if prior.numel() != self.prior_logit.numel() or not bool((prior > 0).all()):
                raise ValueError(f"init_persistence: prior needs {self.prior_logit.numel()} positive cells, "
                                 f"got {prior.numel()}")
            self.prior_logit.copy_(torch.log(prior / prior.sum()))
        self.persist_head.bias.copy_(torch.tensor([math.log(weight / (1 - weight)), math.log(sigma), math.log(sigma)]))
        for p in (self.query[-1].weight, self.query[-1].bias, self.cell_bias.weight, self.cell_bias.bias):
            p.zero_()
        if p_in is not None:
            p_in = torch.as_tensor(p_in, dtype=torch.float64).reshape(-1)
            if p_in.numel() != 3 or not bool(((p_in > 0) & (p_in < 1)).all()):
                raise ValueError(f"init_persistence: p_in needs 3 probabilities in (0, 1) (last gaze in, out, none), "
                                 f"got {p_in.tolist()}")
            self.inout_floor_logit.copy_(torch.logit(p_in).float())
            self.inout_head.weight.zero_()
            self.inout_head.bias.zero_()

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``batch``: per-modality [B,T,D], ``grid`` [B,T,Gh*Gw,C] (cells row-major), ``track_map`` [B,T,Gh*Gw],
        ``mask`` [B,T,4] availability, ``pad`` [B,T] True on padding. With ``content_index`` [B] (long) the
        content inputs (audio, text, visual, grid) hold U <= B distinct rows and item b uses row
        ``content_index[b]``: the same numbers as the rows repeated, computed once per row.
        Returns ``heatmap_logits`` [B,T,Gh*Gw] and ``inout_logits`` [B,T]."""
        mask = batch["mask"].float()
        b, t = mask.shape[:2]
        ci = batch.get("content_index")
        if ci is None:
            first, expand = None, (lambda x: x)
        else:   # each content row's first item: its content availability (mask columns 0-2 are the window's)
            first = torch.full((int(ci.max()) + 1,), b, dtype=ci.dtype, device=ci.device).scatter_reduce(
                0, ci, torch.arange(b, device=ci.device), "amin")
            expand = (lambda x: x.index_select(0, ci))
        embs = {m: self.embed[m](batch[m]) if m == "track" else expand(self.embed[m](batch[m]))
                for m in self.modalities}
        mods = torch.stack([mask[..., MODALITY_INDEX[m]] for m in self.modalities], -1)
        if self.content_encoder is not None:
            embs = self._content_context(embs, mask, batch["pad"])
        x = self.fusion([embs[m] for m in self.modalities], mods)
        x = x + self.pos[:t].unsqueeze(0)
        # True above the diagonal: step t attends to steps <= t. Boolean like the padding mask (torch turns
        # both into the same 0 / -inf float masks; a float mask beside a boolean one is deprecated)
        causal = torch.ones((t, t), dtype=torch.bool, device=x.device).triu(diagonal=1)
        h = self.norm(self.encoder(x, mask=causal, src_key_padding_mask=batch["pad"]))
        # <W_q h, k> / sqrt(dc) + w^T k + b in one contraction over dc
        q = self.query(h) / math.sqrt(self.cfg.cell_dim) + self.cell_bias.weight[0]
        if self.legacy_keys:
            logits = self._legacy_logits(batch, mask, q, expand)
        elif self.use_grid:
            vis = mask[..., 2] if first is None else mask.index_select(0, first)[..., 2]
            keys = nn.functional.gelu(self.cell_pos + self.cell_proj(batch["grid"] * vis[..., None, None]))
            if ci is None:
                logits = torch.einsum("btcd,btd->btc", keys, q)
            elif torch.equal(ci, torch.arange(keys.shape[0], device=ci.device).repeat_interleave(b // keys.shape[0])):
                # window-major batch (each window's viewers side by side, as many for each): no [B,T,cells,dc]
                u = keys.shape[0]
                logits = torch.einsum("utcd,uvtd->uvtc", keys, q.reshape(u, b // u, t, -1)).reshape(b, t, -1)
            else:
                logits = torch.einsum("btcd,btd->btc", keys.index_select(0, ci), q)
        else:   # no grid: the keys are one table for every step
            logits = q @ nn.functional.gelu(self.cell_pos).T
        logits = logits + self.cell_bias.bias
        if self.track_gain is not None:
            logits = logits + self.track_gain(h) * batch["track_map"]
        inout = self.inout_head(h).squeeze(-1)
        if self.use_persistence:
            track = batch["track"]
            # the last seen gaze's state: known (this viewer's track available) and in frame or not
            known = (mask[..., MODALITY_INDEX["track"]] > 0.5) & (track[..., 4] > 0.5)
            last_in = track[..., 2] > 0.5
            logits = self._persistence(logits, h, track, known & last_in)
            f = self.inout_floor_logit
            inout = inout + torch.where(known, torch.where(last_in, f[0], f[1]), f[2])
        return {"heatmap_logits": logits, "inout_logits": inout}

    def _legacy_logits(self, batch: dict, mask: torch.Tensor, q: torch.Tensor, expand) -> torch.Tensor:
        """The cell scores of a ``track_in_keys`` model (checkpoints before 0.4.0; the last gaze's map in
        the keys of track variants): keys per item, the same operations in the same order as then."""
        b, t = mask.shape[:2]
        keys = self.cell_pos.expand(b, t, -1, -1)                # [B,T,cells,dc]
        if self.use_grid:
            keys = keys + self.cell_proj(expand(batch["grid"]) * mask[..., 2, None, None])
        if self.use_track_map:
            keys = keys + batch["track_map"].unsqueeze(-1) * self.track_proj
        keys = nn.functional.gelu(keys)
        return torch.einsum("btcd,btd->btc", keys, q)

    def _persistence(self, logits: torch.Tensor, h: torch.Tensor, track: torch.Tensor,
                     on: torch.Tensor) -> torch.Tensor:
        """log((1 - w) N(last gaze, sigma) + w softmax(logits + prior)) where ``on`` (the last gaze is known
        and in frame), else log softmax(logits + prior). Within one step: causal as the track input is."""
        out = self.persist_head(torch.cat([h, track[..., 3:4]], -1))
        sigma = torch.exp(out[..., 1:3].clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX))        # [B,T,2]
        z = (self.centres - track[..., None, 0:2]) / sigma[..., None, :]             # [B,T,cells,2]
        log_g = torch.log_softmax(-0.5 * (z * z).sum(-1), -1)
        log_base = torch.log_softmax(logits + self.prior_logit, -1)
        w = out[..., 0:1]
        mixed = torch.logsumexp(torch.stack([nn.functional.logsigmoid(-w) + log_g,
                                             nn.functional.logsigmoid(w) + log_base]), 0)
        return torch.where(on[..., None], mixed, log_base)

    def _content_context(self, embs: dict, mask: torch.Tensor, pad: torch.Tensor) -> dict:
        """Add a bidirectional context over the available content embeddings (never the track)."""
        avail = [mask[..., MODALITY_INDEX[m], None] for m in self.content]
        n = torch.clamp(sum(avail), min=1.0)
        mean = sum(a * embs[m] for a, m in zip(avail, self.content)) / n
        ctx = self.content_encoder(mean + self.pos[:mean.shape[1]].unsqueeze(0), src_key_padding_mask=pad)
        return {m: embs[m] + ctx if m in self.content else embs[m] for m in embs}
