"""MCi image encoders (MCi0–MCi4): the FastViT-family hybrids of MobileCLIP / MobileCLIP2.

Layout of ``state_dict()`` keys = timm's ``fastvit_mci*`` (= open_clip's ``visual.trunk.*``).
Architecture hyper-parameters come from the model cards (``models/*.json``, key ``image``).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .blocks import (AttentionBlock, MobileOneBlock, RepConditionalPosEnc, ReparamLargeKernelConv,
                     RepMixerBlock)


class PatchEmbed(nn.Module):
    """Stage entry: 7x7/2 large-kernel depthwise conv (+3x3 branch, optional SE, GELU), then a 1x1 MobileOne.

    ``keep_precision``: compressed exports leave these weights uncompressed. Measured on the fidelity kit's
    MobileCLIP2-S4 image tower with per-channel int8 weights (fp32 compute): cosine 0.980 with every layer
    quantized, 0.997 with the downsampling layers of the two attention stages kept (< 2% of the weights);
    no other layer group moved it past 0.984."""

    keep_precision = True

    def __init__(self, in_chs: int, out_chs: int, use_se: bool, lkc_use_act: bool):
        super().__init__()
        self.proj = nn.Sequential(
            ReparamLargeKernelConv(in_chs, out_chs, 7, stride=2, groups=in_chs, small_kernel=3, use_se=use_se,
                                   use_act=lkc_use_act),
            MobileOneBlock(out_chs, out_chs, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Stage(nn.Module):
    def __init__(self, dim: int, dim_out: int, depth: int, mixer: str, mlp_ratio: float, downsample: bool,
                 se_downsample: bool, pos_emb: bool, norm: str, lkc_use_act: bool):
        super().__init__()
        self.downsample = PatchEmbed(dim, dim_out, se_downsample, lkc_use_act) if downsample else nn.Identity()
        self.pos_emb = RepConditionalPosEnc(dim_out, 7) if pos_emb else nn.Identity()
        if mixer == "repmixer":
            blocks = [RepMixerBlock(dim_out, mlp_ratio) for _ in range(depth)]
        elif mixer == "attention":
            blocks = [AttentionBlock(dim_out, mlp_ratio, norm) for _ in range(depth)]
        else:
            raise ValueError(f"unknown token mixer {mixer!r}: expected 'repmixer' or 'attention'")
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.pos_emb(self.downsample(x)))


class ClassifierHead(nn.Module):
    """Global average pool + linear CLIP projection (with bias, as timm maps Apple's ``head.proj``)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3), keepdim=True).flatten(1))  # keepdim: the 4-D pool XNNPACK takes


class MCi(nn.Module):
    """An MCi encoder: MobileOne stem, RepMixer / attention stages, expanding final conv with SE, head.

    ``static_int8_float``: children that static int8 quantization (int8 activations too: OpenVINO's NNCF
    export) leaves in float. The SE gate and global pool of the final conv meet the last activations, whose
    range static int8 cuts worst; measured on the fidelity kit's MobileCLIP2-S3 image tower (min cosine over
    the probe set): 0.969 with them quantized, 0.993 kept (no stage, the stem or the attention parts moved it
    by more than 0.001)."""

    static_int8_float = ("final_conv", "head")

    def __init__(self, layers: Sequence[int], embed_dims: Sequence[int], mlp_ratios: Sequence[float],
                 token_mixers: Sequence[str], se_downsamples: Sequence[bool], pos_embs: Sequence[bool],
                 embed_dim: int, attention_norm: str = "batchnorm", lkc_use_act: bool = True,
                 stem_use_scale_branch: bool = True, cls_ratio: float = 2.0, **_unused):
        super().__init__()
        c0 = embed_dims[0]
        self.stem = nn.Sequential(
            MobileOneBlock(3, c0, 3, stride=2, use_scale_branch=stem_use_scale_branch),
            MobileOneBlock(c0, c0, 3, stride=2, groups=c0, use_scale_branch=stem_use_scale_branch),
            MobileOneBlock(c0, c0, 1),
        )
        stages, prev = [], c0
        for i, depth in enumerate(layers):
            stages.append(Stage(prev, embed_dims[i], depth, token_mixers[i], mlp_ratios[i],
                                downsample=prev != embed_dims[i] or i > 0, se_downsample=se_downsamples[i],
                                pos_emb=pos_embs[i], norm=attention_norm, lkc_use_act=lkc_use_act))
            prev = embed_dims[i]
        self.stages = nn.Sequential(*stages)
        final = int(prev * cls_ratio)
        self.final_conv = MobileOneBlock(prev, final, 3, groups=prev, use_se=True)
        self.head = ClassifierHead(final, embed_dim)
        self.num_features = final

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_conv(self.stages(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))
