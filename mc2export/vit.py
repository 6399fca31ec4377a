"""ViT image encoders: ViT-B/16 with a convolutional stem (MobileCLIP-B, MobileCLIP2-B) and ViT-L/14.

Layout of ``state_dict()`` keys = timm's ``vit_base_mci_224`` / ``vit_large_patch14_clip_224``.
The two references of ViT-B/16 differ (MISSION.md §1): Apple v1 pads the first stem conv by 1 and uses
LayerNorm eps 1e-5, timm pads by 0 and uses eps 1e-6. The card says which applies to which layout.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import ConvBN, attention, fold_affine_into_linear, reparameterize_all, split_heads


class ConvStem(nn.Module):
    """4x4/4 conv-BN-GELU, 2x2/2 conv-BN-GELU, 2x2/2 conv (keys ``backbone.{0,1,2}``)."""

    def __init__(self, embed_dim: int, first_padding: int):
        super().__init__()
        mid = embed_dim // 4
        self.backbone = nn.Sequential(
            ConvBN(3, mid, 4, stride=4, padding=(first_padding, first_padding)),
            ConvBN(mid, mid, 2, stride=2, padding=(0, 0)),
            nn.Sequential(OrderedDict(conv=nn.Conv2d(mid, embed_dim, 2, stride=2))),
        )
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        x = self.act(b[1](self.act(b[0](x))))
        return b[2](x).flatten(2).transpose(1, 2)


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int, patch_size: int, bias: bool):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.fused_attn = True

    def forward(self, x: torch.Tensor, first_only: bool = False) -> torch.Tensor:
        """``[B, N, C]`` -> ``[B, N, C]``, or ``[B, 1, C]`` (the class token's output) with ``first_only``."""
        B, N, C = x.shape
        q, k, v = split_heads(self.qkv(x), self.num_heads)
        if first_only:
            q = q[:, :, :1]
        x = attention(q, k, v, fused=self.fused_attn)
        return self.proj(x.transpose(1, 2).reshape(B, q.shape[2], C))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _fold_norm_affine(norm: nn.LayerNorm, linear: nn.Linear) -> nn.LayerNorm:
    """linear(LN(x)) with LN's affine moved into linear; returns the affine-free LayerNorm to use."""
    if not norm.elementwise_affine:
        return norm
    fold_affine_into_linear(linear, norm.weight, norm.bias)
    return nn.LayerNorm(norm.normalized_shape, eps=norm.eps, elementwise_affine=False)


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def forward_cls(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output at the class token only (``[B, 1, C]``): exact, and the output projection
        and MLP run once instead of N times (for the last block: ~6% of ViT-B/16's work)."""
        tok = x[:, :1] + self.attn(self.norm1(x), first_only=True)
        return tok + self.mlp(self.norm2(tok))

    def reparameterize(self) -> None:
        """Beyond the references: fold the LayerNorm affines into qkv and fc1 (exact)."""
        self.norm1 = _fold_norm_affine(self.norm1, self.attn.qkv)
        self.norm2 = _fold_norm_affine(self.norm2, self.mlp.fc1)


class VisionTransformer(nn.Module):
    """Class-token ViT with pre-norm blocks; ``forward`` returns the projected class token."""

    def __init__(self, width: int, layers: int, heads: int, embed_dim: int, image_size: int, patch_size: int = 16,
                 stem: str = "patch", stem_padding: int = 0, ln_eps: float = 1e-6, pre_norm: bool = False,
                 no_embed_class: bool = False, patch_bias: bool = True, mlp_ratio: float = 4.0, **_unused):
        super().__init__()
        n_patches = (image_size // patch_size) ** 2
        self.no_embed_class = no_embed_class
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + (0 if no_embed_class else 1), width))
        if stem == "conv":
            self.patch_embed = ConvStem(width, stem_padding)
        else:
            self.patch_embed = PatchEmbed(width, patch_size, patch_bias)
        self.norm_pre = nn.LayerNorm(width, eps=ln_eps) if pre_norm else nn.Identity()
        self.blocks = nn.Sequential(*[Block(width, heads, mlp_ratio, ln_eps) for _ in range(layers)])
        self.norm = nn.LayerNorm(width, eps=ln_eps)
        self.head = nn.Linear(width, embed_dim)
        self.pool_last_block = True  # the last block computes the class token only (exact; see forward)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        if self.no_embed_class:
            x = torch.cat([cls, x + self.pos_embed], dim=1)
        else:
            x = torch.cat([cls, x], dim=1) + self.pos_embed
        x = self.norm_pre(x)
        if self.pool_last_block:
            # Only the class token is pooled: the last block's projection and MLP and the final norm run on
            # it alone (exact: they work per token).
            x = self.blocks[-1].forward_cls(self.blocks[:-1](x))
        else:
            x = self.blocks(x)
        return self.head(self.norm(x[:, 0]))

    def reparameterize(self) -> None:
        """Beyond the references (which fold nothing in a ViT): the stem's conv-BN pairs, every LayerNorm
        affine that feeds a linear layer (norm1 -> qkv, norm2 -> fc1, final norm -> head). All exact."""
        reparameterize_all(self)
        self.norm = _fold_norm_affine(self.norm, self.head)


__all__ = ["VisionTransformer"]
