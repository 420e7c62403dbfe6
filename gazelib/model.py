"""Multimodal gaze transformer: where (heatmap over grid cells) and whether (in/out of frame).

Per step t: each modality m in the variant is embedded to ``d_model`` (Linear, GELU,
dropout) and fused; a temporal transformer encoder (padding mask, optional causal mask)
gives a context h_t. The spatial head scores cell c as

    s_{t,c} = <W_q h_t, k_{t,c}> / sqrt(d) + w^T k_{t,c},   k_{t,c} = GELU(W_f f_{t,c} + pos_c)

(one layer on the cell side keeps the [B, T, cells, d] work small; the context side
carries the depth)
where f_{t,c} holds the cell's grid features (visual variants) and the map of the last
known gaze (track variants). The in/out head is a linear map of h_t.

Fusion (masked modalities contribute nothing in every mode):
- ``gated``: sum_m mask_m * sigmoid(W_g e_m) * e_m
- ``concat``: W [mask_1 e_1; ...; mask_M e_M]
- ``add``: sum_m mask_m e_m
- ``cross_attention``: a learned query attends over the available modality tokens
  (plus an always-present null token, so a step with nothing available is defined)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

FUSIONS = ("gated", "concat", "add", "cross_attention")
MODALITY_INDEX = {"audio": 0, "text": 1, "visual": 2, "track": 3}


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
    causal: bool = False
    max_len: int = 4096
    extra: dict = field(default_factory=dict)


def build_model(config: ModelConfig | dict) -> "GazeTransformer":
    cfg = config if isinstance(config, ModelConfig) else ModelConfig(**config)
    if cfg.fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {cfg.fusion!r}; choose one of {FUSIONS}")
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
        self.norm = nn.LayerNorm(d)
        n_cells = cfg.grid_h * cfg.grid_w
        self.use_grid = "visual" in self.modalities
        self.use_track_map = "track" in self.modalities
        cell_in = (cfg.grid_channels if self.use_grid else 0) + (1 if self.use_track_map else 0)
        self.cell_pos = nn.Parameter(torch.randn(n_cells, d) * 0.02)
        self.cell_proj = nn.Linear(cell_in, d) if cell_in else None
        self.query = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.cell_bias = nn.Linear(d, 1)
        self.inout_head = nn.Linear(d, 1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``batch``: per-modality [B,T,D], ``grid`` [B,T,C,Gh,Gw], ``track_map`` [B,T,Gh*Gw],
        ``mask`` [B,T,4] availability, ``pad`` [B,T] True on padding.
        Returns ``heatmap_logits`` [B,T,Gh*Gw] and ``inout_logits`` [B,T]."""
        mask = batch["mask"].float()
        embs = [self.embed[m](batch[m]) for m in self.modalities]
        mods = torch.stack([mask[..., MODALITY_INDEX[m]] for m in self.modalities], -1)
        x = self.fusion(embs, mods)
        b, t, d = x.shape
        x = x + self.pos[:t].unsqueeze(0)
        attn_mask = None
        if self.cfg.causal:
            attn_mask = torch.triu(torch.full((t, t), float("-inf"), device=x.device), diagonal=1)
        h = self.norm(self.encoder(x, mask=attn_mask, src_key_padding_mask=batch["pad"]))
        keys = self.cell_pos.unsqueeze(0).unsqueeze(0)
        feats = []
        if self.use_grid:
            g = batch["grid"] * mask[..., 2, None, None, None]
            feats.append(g.flatten(3).transpose(2, 3))          # [B,T,cells,C]
        if self.use_track_map:
            feats.append(batch["track_map"].unsqueeze(-1))
        keys = nn.functional.gelu(keys + self.cell_proj(torch.cat(feats, -1))) if feats else \
            nn.functional.gelu(keys).expand(b, t, -1, -1)
        q = self.query(h)                                        # [B,T,d]
        logits = torch.einsum("btcd,btd->btc", keys, q) / math.sqrt(d) + self.cell_bias(keys).squeeze(-1)
        return {"heatmap_logits": logits, "inout_logits": self.inout_head(h).squeeze(-1)}
