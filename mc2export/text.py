"""Text encoders of the MobileCLIP / MobileCLIP2 family.

* :class:`TextTransformer` -- the "base" CLIP text tower (open_clip ``TextTransformer`` math and key
  names): token embedding + learned positional embedding, pre-norm residual attention blocks
  (LayerNorm eps 1e-5, exact GELU), final LayerNorm, the token at ``argmax(token ids)`` (the first
  EOT, id 49407), ``@ text_projection``.  Padding is zeros and is *not* masked; the only mask is the
  optional causal one (MobileCLIP-B / MobileCLIP2-B).
* :class:`MCtTextEncoder` -- MobileCLIP-S0's MCt text encoder (Apple ``mobileclip`` "mct"): a
  RepMixer block with 1x11 depthwise convs along the sequence, the same attention blocks, and a
  second RepMixer block.  Its RepMixer blocks fold with :func:`mc2export.blocks.reparameterize_all`.

Both are written for export: attention through ``F.scaled_dot_product_attention`` (no
``nn.MultiheadAttention`` fast path), no data-dependent Python control flow, the causal mask (if any)
is SDPA's ``is_causal`` (nothing persistent), pooling gathers with ``x[arange(B), argmax]``.  Inputs:
``tokens [B, L]`` int64 or int32 with ``L <= context_length``; output: ``[B, embed_dim]``
unnormalized features.

:func:`mc2export.checkpoint.map_apple_v1_text` renames an Apple v1 checkpoint's ``text_encoder.*`` entries to our
canonical ``text.*`` names (the open_clip names, extended for MCt's RepMixer blocks).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import RepMixerBlock, attention, split_heads, take_tokens

LN_EPS = 1e-5


class Attention(nn.Module):
    """Multi-head self-attention with open_clip / ``nn.MultiheadAttention`` parameter names.

    ``in_proj_weight`` (3W, W) stacks the q, k, v projections in that order (as both references do).
    """

    def __init__(self, width: int, heads: int, causal: bool = False):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.width, self.heads, self.head_dim = width, heads, width // heads
        self.causal = bool(causal)
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        self.fused_attn = True
        nn.init.normal_(self.in_proj_weight, std=width ** -0.5)

    def forward(self, x: torch.Tensor, query_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[B, L, W]`` -> ``[B, L, W]``; with ``query_index`` (``[B]``) only the output at that token,
        ``[B, 1, W]`` (non-causal only: a causal query would need a per-sample key mask)."""
        B, L, C = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = split_heads(qkv, self.heads)
        if query_index is not None:
            if self.causal:
                raise ValueError("query_index needs non-causal attention")
            q = take_tokens(qkv[..., :C], query_index).reshape(B, 1, self.heads, self.head_dim).transpose(1, 2)
        out = attention(q, k, v, causal=self.causal, fused=self.fused_attn)
        return self.out_proj(out.transpose(1, 2).reshape(B, q.shape[2], C))


class Mlp(nn.Module):
    """``c_fc`` -> exact GELU -> ``c_proj`` (open_clip names)."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm block ``x + attn(ln_1(x)); x + mlp(ln_2(x))`` on ``[B, L, W]``."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, causal: bool = False):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=LN_EPS)
        self.attn = Attention(width, heads, causal)
        self.ln_2 = nn.LayerNorm(width, eps=LN_EPS)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))

    def forward_token(self, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The block's output at token ``idx`` only (``[B, 1, W]``): keys and values still come from every
        token, but the output projection and the MLP run once instead of L times. For the last block of
        a pooled tower: ~6% of a 12-layer text tower's work at L = 77, exact (non-causal blocks)."""
        tok = take_tokens(x, idx) + self.attn(self.ln_1(x), query_index=idx)
        return tok + self.mlp(self.ln_2(tok))


class SeqRepMixerBlock(RepMixerBlock):
    """:class:`mc2export.blocks.RepMixerBlock` applied along the sequence of a ``[B, L, W]`` tensor.

    The sequence is viewed as a ``(B, W, 1, L)`` image, so the ``(1, k)`` depthwise kernels mix
    neighbouring tokens with zero padding at both ends (Apple ``mobileclip.modules.text.repmixer``).
    Same parameters and ``reparameterize()`` as the parent.
    """

    def __init__(self, dim: int, kernel_size: int = 11, mlp_ratio: float = 4.0):
        super().__init__(dim, mlp_ratio=mlp_ratio, kernel_size=(1, kernel_size), ffn_kernel=(1, kernel_size),
                         use_scale_branch=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, L, W = x.shape  # reshape, not (un)squeeze: XNNPACK takes no squeeze ops (ExecuTorch graph cuts)
        y = super().forward(x.transpose(1, 2).reshape(B, W, 1, L))
        return y.reshape(B, W, L).transpose(1, 2)


class Transformer(nn.Module):
    """A stack of blocks under the name ``resblocks`` (open_clip's ``transformer.resblocks.{i}``)."""

    def __init__(self, blocks):
        super().__init__()
        self.resblocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class _TextTowerBase(nn.Module):
    """Embedding, final norm, argmax pooling and projection shared by both towers."""

    def _init_common(self, width: int, embed_dim: int, context_length: int, vocab_size: int) -> None:
        self.width, self.embed_dim = width, embed_dim
        self.context_length, self.vocab_size = context_length, vocab_size
        # direct parameters first: state_dict() then starts with positional_embedding, text_projection
        # like open_clip's.
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.text_projection = nn.Parameter(torch.empty(width, embed_dim))
        self.token_embedding = nn.Embedding(vocab_size, width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        nn.init.normal_(self.text_projection, std=width ** -0.5)

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        seq_len = tokens.shape[1]
        return self.token_embedding(tokens) + self.positional_embedding[:seq_len].to(self.token_embedding.weight.dtype)

    def _pool_project(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        x = self.ln_final(x)
        idx = tokens.argmax(dim=-1)  # first occurrence of the largest id: the first EOT (49407)
        pooled = x[torch.arange(x.shape[0], device=x.device), idx]
        return pooled @ self.text_projection

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self._embed(tokens)
        x = self.transformer(x)
        return self._pool_project(x, tokens)

    encode_text = forward


class TextTransformer(_TextTowerBase):
    """open_clip's CLIP text tower (``text.*`` keys of MobileCLIP / MobileCLIP2 checkpoints).

    ``causal=True`` for MobileCLIP-B / MobileCLIP2-B (open_clip ``no_causal_mask: false``), False for
    every other MobileCLIP text tower.
    """

    def __init__(self, width: int, heads: int, layers: int, embed_dim: int, context_length: int = 77,
                 vocab_size: int = 49408, causal: bool = False, mlp_ratio: float = 4.0):
        super().__init__()
        self._init_common(width, embed_dim, context_length, vocab_size)
        self.heads, self.layers, self.causal, self.mlp_ratio = heads, layers, bool(causal), mlp_ratio
        self.transformer = Transformer(
            ResidualAttentionBlock(width, heads, mlp_ratio, causal) for _ in range(layers))
        self.ln_final = nn.LayerNorm(width, eps=LN_EPS)


class MCtTextEncoder(_TextTowerBase):
    """MobileCLIP-S0's MCt text encoder: RepMixer block, ``layers`` attention blocks, RepMixer block.

    Matches Apple's ``mobileclip.text_encoder.TextTransformer`` (variant "mct"): no embedding scaling
    (Apple computes ``embed_scale`` but never applies it), learned positional embedding added as is,
    LayerNorm eps 1e-5 (Apple's ``LayerNormFP32``: identical in fp32), no padding mask, pooling at
    ``argmax(tokens)`` after the final LayerNorm, ``@ projection``.  RepMixer blocks: ``(1, 11)``
    depthwise mixer (BN skip + one conv-BN branch, no 1x1 scale branch) minus a BN "norm", layer
    scale; ConvFFN with a ``(1, 11)`` depthwise conv-BN, 1x1 expand x``repmixer_mlp_ratio``, GELU,
    1x1 project; layer scale.
    """

    def __init__(self, width: int = 512, heads: int = 8, embed_dim: int = 512, layers: int = 4,
                 context_length: int = 77, vocab_size: int = 49408, causal: bool = False,
                 mlp_ratio: float = 4.0, repmixer_kernel: int = 11, repmixer_mlp_ratio: float = 4.0):
        super().__init__()
        self._init_common(width, embed_dim, context_length, vocab_size)
        self.heads, self.layers, self.causal, self.mlp_ratio = heads, layers, bool(causal), mlp_ratio
        blocks = [SeqRepMixerBlock(width, repmixer_kernel, repmixer_mlp_ratio)]
        blocks += [ResidualAttentionBlock(width, heads, mlp_ratio, causal) for _ in range(layers)]
        blocks += [SeqRepMixerBlock(width, repmixer_kernel, repmixer_mlp_ratio)]
        self.transformer = Transformer(blocks)
        self.ln_final = nn.LayerNorm(width, eps=LN_EPS)


# ---------------------------------------------------------------------------------------------------
# config


TEXT_CFG_DEFAULTS = {
    "transformer": dict(width=512, heads=8, layers=12, embed_dim=512, context_length=77, vocab_size=49408,
                        causal=False, mlp_ratio=4.0),
    "mct": dict(width=512, heads=8, layers=4, embed_dim=512, context_length=77, vocab_size=49408,
                causal=False, mlp_ratio=4.0, repmixer_kernel=11, repmixer_mlp_ratio=4.0),
}
TEXT_CFG_IGNORED = frozenset({"name", "description"})


def build_text_tower(cfg: dict) -> nn.Module:
    """Build a text tower from a config dict.

    ``arch`` "transformer": keys ``width, heads, layers, embed_dim, context_length, vocab_size, causal,
    mlp_ratio``.  ``arch`` "mct": the same (``layers`` = number of attention blocks between the two
    RepMixer blocks, 4 for MobileCLIP-S0) plus ``repmixer_kernel`` (11) and ``repmixer_mlp_ratio`` (4.0).
    Missing keys take the MobileCLIP defaults in :data:`TEXT_CFG_DEFAULTS`; descriptive keys
    (:data:`TEXT_CFG_IGNORED`, e.g. a card's ``name``) are ignored; any other unknown key is an error.
    """
    cfg = {k: v for k, v in cfg.items() if k not in TEXT_CFG_IGNORED}
    arch = cfg.pop("arch", "transformer")
    if arch not in TEXT_CFG_DEFAULTS:
        raise ValueError(f"unknown text arch {arch!r}; expected one of {sorted(TEXT_CFG_DEFAULTS)}")
    unknown = set(cfg) - set(TEXT_CFG_DEFAULTS[arch])
    if unknown:
        raise ValueError(f"unknown keys for text arch {arch!r}: {sorted(unknown)}")
    kwargs = {**TEXT_CFG_DEFAULTS[arch], **cfg}
    if arch == "transformer":
        return TextTransformer(**kwargs)
    return MCtTextEncoder(**kwargs)


__all__ = ["TextTransformer", "MCtTextEncoder", "ResidualAttentionBlock", "Attention", "SeqRepMixerBlock",
           "build_text_tower", "TEXT_CFG_DEFAULTS"]
