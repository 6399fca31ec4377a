"""Reparameterizable building blocks of the MCi image encoders and the MCt text encoder.

Parameter names follow timm's FastViT (``conv_kxk``, ``conv_scale``, ``identity``, ``large_conv``,
``layer_scale.gamma`` ...), so the open_clip and timm checkpoints load without renaming; Apple's v1
names are mapped in :mod:`mc2export.checkpoint`.

Each block owns an idempotent ``reparameterize()`` that rewrites it into its inference form in place.
:func:`mc2export.fold` walks a copy of a model and calls them; a second call is a no-op.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

Kernel = Union[int, Tuple[int, int]]


def _pair(k: Kernel) -> Tuple[int, int]:
    return (k, k) if isinstance(k, int) else (int(k[0]), int(k[1]))


def _same_padding(k: Kernel) -> Tuple[int, int]:
    kh, kw = _pair(k)
    return kh // 2, kw // 2


def fuse_conv_bn(kernel: torch.Tensor, bn: nn.BatchNorm2d, conv_bias: Optional[torch.Tensor] = None):
    """The (kernel, bias) of ``bn(conv(x))`` as one convolution (BatchNorm in eval mode)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = bn.bias - bn.running_mean * scale
    if conv_bias is not None:
        bias = bias + conv_bias * scale
    return kernel * scale.reshape(-1, 1, 1, 1), bias


def identity_kernel(channels: int, groups: int, kernel: Kernel, like: torch.Tensor) -> torch.Tensor:
    """A (grouped) convolution kernel that maps x to x."""
    kh, kw = _pair(kernel)
    in_per_group = channels // groups
    w = torch.zeros(channels, in_per_group, kh, kw, dtype=like.dtype, device=like.device)
    idx = torch.arange(channels, device=like.device)
    w[idx, idx % in_per_group, kh // 2, kw // 2] = 1.0
    return w


def _new_conv(weight: torch.Tensor, bias: torch.Tensor, stride, padding, groups: int) -> nn.Conv2d:
    out_c, in_per_group, kh, kw = weight.shape
    conv = nn.Conv2d(in_per_group * groups, out_c, (kh, kw), stride=stride, padding=padding,
                     groups=groups, bias=True, device=weight.device, dtype=weight.dtype)
    conv.weight.data.copy_(weight.detach())
    conv.bias.data.copy_(bias.detach())
    return conv


class ConvBN(nn.Module):
    """Convolution without bias followed by BatchNorm; folds into one biased convolution."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: Kernel, stride: int = 1, groups: int = 1,
                 padding: Optional[Tuple[int, int]] = None):
        super().__init__()
        pad = _same_padding(kernel_size) if padding is None else padding
        self.conv = nn.Conv2d(in_chs, out_chs, _pair(kernel_size), stride=stride, padding=pad,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "reparam_conv"):
            return self.reparam_conv(x)
        return self.bn(self.conv(x))

    def fused(self) -> Tuple[torch.Tensor, torch.Tensor]:
        if hasattr(self, "reparam_conv"):
            return self.reparam_conv.weight, self.reparam_conv.bias
        return fuse_conv_bn(self.conv.weight, self.bn)

    def reparameterize(self) -> None:
        if hasattr(self, "reparam_conv"):
            return
        w, b = self.fused()
        conv = self.conv
        self.reparam_conv = _new_conv(w, b, conv.stride, conv.padding, conv.groups)
        del self.conv, self.bn


class SqueezeExcite(nn.Module):
    """Global-average squeeze, ReLU bottleneck, sigmoid gate (timm ``SEModule`` layout)."""

    def __init__(self, channels: int, rd_channels: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, rd_channels, 1, bias=True)
        self.fc2 = nn.Conv2d(rd_channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.fc2(F.relu(self.fc1(s)))
        return x * torch.sigmoid(s)


def se_channels(channels: int, ratio: float, divisor: int) -> int:
    """Bottleneck width, rounded to a multiple of ``divisor`` as timm's ``make_divisible(round_limit=0)``."""
    v = channels * ratio
    return max(divisor, int(v + divisor / 2) // divisor * divisor)


class MobileOneBlock(nn.Module):
    """MobileOne block: kxk conv-BN branches + 1x1 conv-BN scale branch + BN identity, then SE and act.

    Folds into a single kxk convolution (RepVGG-style).
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: Kernel, stride: int = 1, groups: int = 1,
                 use_se: bool = False, use_act: bool = True, use_scale_branch: bool = True,
                 num_conv_branches: int = 1):
        super().__init__()
        self.in_chs, self.out_chs, self.groups, self.stride = in_chs, out_chs, groups, stride
        self.kernel_size = _pair(kernel_size)
        self.padding = _same_padding(kernel_size)
        self.identity = nn.BatchNorm2d(in_chs) if (in_chs == out_chs and stride == 1) else None
        self.conv_kxk = (nn.ModuleList(ConvBN(in_chs, out_chs, kernel_size, stride, groups)
                                       for _ in range(num_conv_branches))
                         if num_conv_branches > 0 else None)
        self.conv_scale = (ConvBN(in_chs, out_chs, 1, stride, groups, padding=(0, 0))
                           if max(self.kernel_size) > 1 and use_scale_branch else None)
        self.se = SqueezeExcite(out_chs, se_channels(out_chs, 1 / 16, 1)) if use_se else nn.Identity()
        self.act = nn.GELU() if use_act else nn.Identity()

    def branches_sum(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "reparam_conv"):
            return self.reparam_conv(x)
        out = 0
        if self.identity is not None:
            out = self.identity(x)
        if self.conv_scale is not None:
            out = out + self.conv_scale(x)
        if self.conv_kxk is not None:
            for branch in self.conv_kxk:
                out = out + branch(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.se(self.branches_sum(x)))

    def fused(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """(kernel, bias) of the sum of all branches."""
        if hasattr(self, "reparam_conv"):
            return self.reparam_conv.weight, self.reparam_conv.bias
        kh, kw = self.kernel_size
        ref = next(self.parameters())
        kernel = torch.zeros(self.out_chs, self.in_chs // self.groups, kh, kw, dtype=ref.dtype, device=ref.device)
        bias = torch.zeros(self.out_chs, dtype=ref.dtype, device=ref.device)
        if self.identity is not None:
            k, b = fuse_conv_bn(identity_kernel(self.in_chs, self.groups, self.kernel_size, ref), self.identity)
            kernel, bias = kernel + k, bias + b
        if self.conv_scale is not None:
            k, b = self.conv_scale.fused()
            kernel, bias = kernel + F.pad(k, [kw // 2, kw // 2, kh // 2, kh // 2]), bias + b
        if self.conv_kxk is not None:
            for branch in self.conv_kxk:
                k, b = branch.fused()
                kernel, bias = kernel + k, bias + b
        return kernel, bias

    def reparameterize(self) -> None:
        if hasattr(self, "reparam_conv"):
            return
        w, b = self.fused()
        self.reparam_conv = _new_conv(w, b, self.stride, self.padding, self.groups)
        self.identity = self.conv_kxk = self.conv_scale = None


class ReparamLargeKernelConv(nn.Module):
    """Large-kernel conv-BN plus a small-kernel conv-BN branch, then SE and activation (RepLKNet-style)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, groups: int,
                 small_kernel: Optional[int] = 3, use_se: bool = False, use_act: bool = True):
        super().__init__()
        self.kernel_size, self.small_kernel = kernel_size, small_kernel
        self.large_conv = ConvBN(in_chs, out_chs, kernel_size, stride, groups)
        self.small_conv = ConvBN(in_chs, out_chs, small_kernel, stride, groups) if small_kernel else None
        self.se = SqueezeExcite(out_chs, se_channels(out_chs, 0.25, 8)) if use_se else nn.Identity()
        self.act = nn.GELU() if use_act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "reparam_conv"):
            out = self.reparam_conv(x)
        else:
            out = self.large_conv(x)
            if self.small_conv is not None:
                out = out + self.small_conv(x)
        return self.act(self.se(out))

    def reparameterize(self) -> None:
        if hasattr(self, "reparam_conv"):
            return
        w, b = self.large_conv.fused()
        if self.small_conv is not None:
            ks, bs = self.small_conv.fused()
            p = (self.kernel_size - self.small_kernel) // 2
            w, b = w + F.pad(ks, [p, p, p, p]), b + bs
        conv = self.large_conv.conv
        self.reparam_conv = _new_conv(w, b, conv.stride, conv.padding, conv.groups)
        del self.large_conv
        self.small_conv = None


class LayerScale2d(nn.Module):
    """Per-channel scale of an NCHW tensor (``gamma`` of shape (C, 1, 1))."""

    def __init__(self, dim: int, init_value: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(init_value * torch.ones(dim, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def fold_scale_into_conv(conv: nn.Conv2d, scale: torch.Tensor) -> None:
    """conv(x) * scale (per output channel) -> conv'(x); exact up to float rounding."""
    s = scale.detach().reshape(-1)
    conv.weight.data.mul_(s.reshape(-1, *([1] * (conv.weight.dim() - 1))))
    if conv.bias is None:
        conv.bias = nn.Parameter(torch.zeros_like(s))
    else:
        conv.bias.data.mul_(s)


def fold_scale_into_linear(linear: nn.Linear, scale: torch.Tensor) -> None:
    """linear(x) * scale (per output feature) -> linear'(x)."""
    s = scale.detach().reshape(-1)
    linear.weight.data.mul_(s.reshape(-1, 1))
    if linear.bias is None:
        linear.bias = nn.Parameter(torch.zeros_like(s))
    else:
        linear.bias.data.mul_(s)


class RepMixer(nn.Module):
    """Token mixer ``x + gamma * (mixer(x) - norm(x))`` with depthwise convs; folds to one depthwise conv."""

    def __init__(self, dim: int, kernel_size: Kernel = 3, use_scale_branch: bool = True,
                 layer_scale_init: Optional[float] = 1e-5):
        super().__init__()
        self.dim = dim
        self.kernel_size = _pair(kernel_size)
        self.norm = MobileOneBlock(dim, dim, kernel_size, groups=dim, use_act=False, use_scale_branch=False,
                                   num_conv_branches=0)
        self.mixer = MobileOneBlock(dim, dim, kernel_size, groups=dim, use_act=False,
                                    use_scale_branch=use_scale_branch)
        self.layer_scale = LayerScale2d(dim, layer_scale_init) if layer_scale_init is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "reparam_conv"):
            return self.reparam_conv(x)
        return x + self.layer_scale(self.mixer(x) - self.norm(x))

    def reparameterize(self) -> None:
        if hasattr(self, "reparam_conv"):
            return
        wm, bm = self.mixer.fused()
        wn, bn = self.norm.fused()
        gamma = self.layer_scale.gamma if isinstance(self.layer_scale, LayerScale2d) else torch.ones_like(bm)
        gamma = gamma.reshape(-1)
        w = identity_kernel(self.dim, self.dim, self.kernel_size, wm) + gamma.reshape(-1, 1, 1, 1) * (wm - wn)
        b = gamma * (bm - bn)
        self.reparam_conv = _new_conv(w, b, 1, _same_padding(self.kernel_size), self.dim)
        del self.mixer, self.norm, self.layer_scale


class RepConditionalPosEnc(nn.Module):
    """Conditional positional encoding ``x + dwconv(x)``; folds to one depthwise conv."""

    def __init__(self, dim: int, kernel_size: int = 7):
        super().__init__()
        self.dim, self.kernel_size = dim, kernel_size
        self.pos_enc = nn.Conv2d(dim, dim, kernel_size, 1, kernel_size // 2, groups=dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "reparam_conv"):
            return self.reparam_conv(x)
        return x + self.pos_enc(x)

    def reparameterize(self) -> None:
        if hasattr(self, "reparam_conv"):
            return
        w = self.pos_enc.weight + identity_kernel(self.dim, self.dim, self.kernel_size, self.pos_enc.weight)
        self.reparam_conv = _new_conv(w, self.pos_enc.bias, 1, self.kernel_size // 2, self.dim)
        del self.pos_enc


class ConvMlp(nn.Module):
    """ConvFFN: depthwise conv-BN, 1x1 expand, GELU, 1x1 project. Its conv-BN folds (beyond the references)."""

    def __init__(self, dim: int, hidden: int, kernel_size: Kernel = 7):
        super().__init__()
        self.conv = ConvBN(dim, dim, kernel_size, groups=dim)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.conv(x))))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def split_heads(qkv: torch.Tensor, heads: int):
    """``[B, L, 3C]`` (q, k, v stacked on the last axis) -> q, k, v as ``[B, heads, L, C / heads]``.

    Slices, not ``reshape(..., 3, heads, d).unbind`` or ``split``: those lower to ``squeeze`` /
    ``split_with_sizes`` ops the XNNPACK delegate does not take (more graph cuts in ExecuTorch).
    """
    B, L, C3 = qkv.shape
    c = C3 // 3
    return [qkv[..., i * c:(i + 1) * c].reshape(B, L, heads, c // heads).transpose(1, 2) for i in range(3)]


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
              fused: bool = True) -> torch.Tensor:
    """Multi-head attention of ``[B, H, L, d]`` tensors.

    ``fused``: ``F.scaled_dot_product_attention``. Otherwise written out with 3-D ``bmm`` and a last-dim
    softmax (timm's ``fused_attn=False`` path): XNNPACK takes every op of that form, while the SDPA
    decomposition (safe softmax, 4-D matmul expands) splits an ExecuTorch graph into one delegate
    partition per op group. Both scale q and k by ``d ** -0.25`` as the SDPA math does (fp16 headroom).
    """
    if fused:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    B, H, Lq, d = q.shape
    Lk = k.shape[2]
    s = d ** -0.25
    a = torch.bmm((q * s).reshape(B * H, Lq, d), (k * s).reshape(B * H, Lk, d).transpose(1, 2))
    if causal:
        a = a + torch.full((Lq, Lk), float("-inf"), dtype=a.dtype, device=a.device).triu(1)
    out = torch.bmm(a.softmax(dim=-1), v.reshape(B * H, Lk, d))
    return out.reshape(B, H, Lq, d)


def take_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x[b, idx[b]]`` of a ``[B, L, C]`` tensor as ``[B, 1, C]`` (a gather every exporter takes)."""
    return torch.gather(x, 1, idx.reshape(-1, 1, 1).expand(-1, 1, x.shape[-1]))


class Attention2d(nn.Module):
    """Multi-head self-attention over the pixels of an NCHW map (head_dim 32, no qkv bias at train time)."""

    def __init__(self, dim: int, head_dim: int = 32):
        super().__init__()
        self.num_heads, self.head_dim = dim // head_dim, head_dim
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.fused_attn = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        N = H * W
        t = x.flatten(2).transpose(1, 2)
        q, k, v = split_heads(self.qkv(t), self.num_heads)
        t = attention(q, k, v, fused=self.fused_attn)
        t = self.proj(t.transpose(1, 2).reshape(B, N, C))
        return t.transpose(1, 2).reshape(B, C, H, W)


def fold_affine_into_linear(linear: nn.Linear, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """linear(scale * x + shift) -> linear'(x): scales the input columns, adds W @ shift to the bias."""
    w = linear.weight.data
    extra = w @ shift.detach()
    w.mul_(scale.detach().reshape(1, -1))
    if linear.bias is None:
        linear.bias = nn.Parameter(extra.clone())
    else:
        linear.bias.data.add_(extra)


class RepMixerBlock(nn.Module):
    """MetaFormer block with RepMixer token mixing and a ConvFFN: ``x = mixer(x); x + gamma * ffn(x)``."""

    def __init__(self, dim: int, mlp_ratio: float = 3.0, kernel_size: Kernel = 3, ffn_kernel: Kernel = 7,
                 use_scale_branch: bool = True):
        super().__init__()
        self.token_mixer = RepMixer(dim, kernel_size, use_scale_branch=use_scale_branch)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), ffn_kernel)
        self.layer_scale = LayerScale2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.token_mixer(x)
        return x + self.layer_scale(self.mlp(x))

    def reparameterize(self) -> None:
        """Beyond the references: fold the ConvFFN conv-BN and the layer scale into fc2."""
        self.token_mixer.reparameterize()
        self.mlp.conv.reparameterize()
        if isinstance(self.layer_scale, LayerScale2d):
            fold_scale_into_conv(self.mlp.fc2, self.layer_scale.gamma)
            self.layer_scale = nn.Identity()


class AttentionBlock(nn.Module):
    """MetaFormer block with self-attention: ``x + g1 * attn(norm(x)); x + g2 * ffn(x)``."""

    def __init__(self, dim: int, mlp_ratio: float = 3.0, norm: str = "batchnorm"):
        super().__init__()
        self.norm = nn.BatchNorm2d(dim) if norm == "batchnorm" else LayerNorm2d(dim, eps=1e-5)
        self.token_mixer = Attention2d(dim)
        self.layer_scale_1 = LayerScale2d(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), 7)
        self.layer_scale_2 = LayerScale2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.layer_scale_1(self.token_mixer(self.norm(x)))
        return x + self.layer_scale_2(self.mlp(x))

    def reparameterize(self) -> None:
        """Beyond the references: fold the norm's affine part into qkv, the layer scales into proj / fc2,
        and the ConvFFN conv-BN."""
        self.mlp.conv.reparameterize()
        if isinstance(self.layer_scale_1, LayerScale2d):
            fold_scale_into_linear(self.token_mixer.proj, self.layer_scale_1.gamma)
            fold_scale_into_conv(self.mlp.fc2, self.layer_scale_2.gamma)
            self.layer_scale_1 = nn.Identity()
            self.layer_scale_2 = nn.Identity()
        if isinstance(self.norm, nn.BatchNorm2d):
            scale = self.norm.weight / torch.sqrt(self.norm.running_var + self.norm.eps)
            shift = self.norm.bias - self.norm.running_mean * scale
            fold_affine_into_linear(self.token_mixer.qkv, scale, shift)
            self.norm = nn.Identity()
        elif isinstance(self.norm, LayerNorm2d) and self.norm.elementwise_affine:
            fold_affine_into_linear(self.token_mixer.qkv, self.norm.weight, self.norm.bias)
            self.norm = LayerNorm2d(self.norm.normalized_shape[0], eps=self.norm.eps, elementwise_affine=False)


def reparameterize_all(module: nn.Module, only: Optional[Tuple[type, ...]] = None) -> None:
    """Fold every foldable block of ``module`` in place.

    A block that folds owns its children's folding, so the walk does not descend into it. ``only``
    restricts folding to the given block types (the walk then descends through everything else).
    """
    for child in list(module.children()):
        foldable = hasattr(child, "reparameterize") and (only is None or isinstance(child, only))
        if foldable:
            child.reparameterize()
        else:
            reparameterize_all(child, only)


__all__: Sequence[str] = [
    "ConvBN", "SqueezeExcite", "MobileOneBlock", "ReparamLargeKernelConv", "LayerScale2d", "RepMixer",
    "RepConditionalPosEnc", "ConvMlp", "LayerNorm2d", "split_heads", "attention", "take_tokens", "Attention2d", "RepMixerBlock", "AttentionBlock",
    "fuse_conv_bn", "identity_kernel", "fold_affine_into_linear", "reparameterize_all", "fold_scale_into_conv", "fold_scale_into_linear",
]
