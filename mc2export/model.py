"""The CLIP model (image tower + optional text tower + logit scale), its factory, and folding."""
from __future__ import annotations

import copy
import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import cards
from .blocks import MobileOneBlock, RepConditionalPosEnc, ReparamLargeKernelConv, RepMixer, reparameterize_all
from .errors import UserError
from .mci import MCi
from .vit import VisionTransformer

# What the references (timm.utils.reparameterize_model, Apple's reparameterize_model) fold.
REFERENCE_FOLDS = (MobileOneBlock, ReparamLargeKernelConv, RepMixer, RepConditionalPosEnc)


def build_image_trunk(cfg: dict) -> nn.Module:
    if cfg["arch"] == "mci":
        return MCi(**cfg)
    if cfg["arch"] == "vit":
        return VisionTransformer(**cfg)
    raise ValueError(f"unknown image architecture {cfg['arch']!r}")


class VisualTower(nn.Module):
    """Holds the trunk under ``trunk`` so keys read ``visual.trunk.*`` as in open_clip."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.trunk = build_image_trunk(cfg)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.trunk(pixels)


class CLIPModel(nn.Module):
    """A MobileCLIP model. ``encode_image``/``encode_text`` return unnormalized embeddings ``[B, D]``.

    Built image-only when its checkpoint holds no text tower (``towers == ("image",)``).
    """

    def __init__(self, variant: str, layout: str = "open_clip", towers: Sequence[str] = ("image", "text")):
        super().__init__()
        card = cards.get_card(variant)
        self.variant, self.layout, self.towers = card["id"], layout, tuple(towers)
        self.embed_dim = card["embed_dim"]
        self.resolution = card["resolution"]
        self.folded: Optional[str] = None  # None, "reference" or "full"
        self.visual = VisualTower(cards.image_config(card, layout))
        if "text" in self.towers:
            from .text import build_text_tower

            self.text = build_text_tower(cards.text_config(card))
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        else:
            self.text = None
            self.logit_scale = None

    @property
    def card(self) -> dict:
        return cards.get_card(self.variant)

    @property
    def context_length(self) -> int:
        return self.card["text"]["context_length"]

    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        x = self.visual(pixels)
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        if self.text is None:
            raise UserError(f"this {self.variant} model was loaded from an image-only checkpoint: it has no text "
                            "tower; load an open_clip or Apple checkpoint to encode text")
        x = self.text(tokens)
        return F.normalize(x, dim=-1) if normalize else x

    def forward(self, pixels: torch.Tensor, tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(normalized image embeddings, normalized text embeddings, logit scale exp)."""
        return (self.encode_image(pixels, True), self.encode_text(tokens, True), self.logit_scale.exp())


def fold(model: nn.Module, *, reference_only: bool = False) -> nn.Module:
    """A folded (reparameterized) copy of ``model`` in eval mode; the input is left untouched.

    Folds what the references fold (MobileOne, large-kernel conv, RepMixer, RepCPE) and, unless
    ``reference_only``, also the ConvFFN conv-BN, the layer scales, attention BatchNorms and the affine
    part of LayerNorms that feed a linear layer. Folding a folded model is a no-op.
    """
    out = copy.deepcopy(model).eval()
    if getattr(out, "folded", None) == "full" or (reference_only and getattr(out, "folded", None)):
        return out
    reparameterize_all(out, REFERENCE_FOLDS if reference_only else None)
    for p in out.parameters():
        p.requires_grad_(False)
    if hasattr(out, "folded"):
        out.folded = "reference" if reference_only else "full"
    return out
