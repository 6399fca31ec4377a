"""Export-friendly modules around the folded towers: one plain ``forward`` each, no Python control flow
that depends on data, only ops that torch.export, the ONNX exporter, coremltools and ExecuTorch's
XNNPACK/portable kernels all take.

* :class:`ImageEncoder` -- ``image`` float ``[B, 3, R, R]`` RGB -> ``embedding`` float ``[B, D]``.
  The input contract is set by ``in_scale``/``in_bias`` (per channel, ``x * scale + bias`` is the
  first op when it is not the identity): ONNX and ExecuTorch take RGB in ``[0, 1]`` (``uint8 / 255``,
  after resize + center crop) and normalize with the card's mean/std inside the model; Core ML takes a
  pixel buffer (``ImageType``) whose scale/bias do ``/255 - mean`` and the wrapper only multiplies by
  ``1/std`` when the std differs per channel (Core ML's ImageType has one scale for all channels).
* :class:`TextEncoder` -- ``tokens`` int32 ``[B, 77]`` -> ``embedding`` float ``[B, D]``.
  Pooling at ``argmax(tokens)`` (the first EOT, id 49407) is done on the *int32* ids: ONNX Runtime has
  an int32 ArgMax kernel (none for int64 at low opsets), Core ML's ``reduce_argmax`` takes int32, and
  casting the ids to float would be wrong in fp16 (49406 SOT and 49407 EOT both round to 49408, so
  argmax would pick the SOT at position 0). The final LayerNorm is applied to the pooled token only
  (LayerNorm works per token: exact, 77x less work).
  ``flat_stream`` (the ONNX export turns it on) keeps the residual stream 2-D, ``[B*77, W]``: every
  linear layer is then one ``Gemm`` without the ``Reshape`` pair ONNX Runtime puts around a 3-D one,
  and q, k, v come from three Gemms (:class:`FlatAttention`, swapped in by ``export.onnx.ort_friendly``;
  MobileCLIP2-S0 text after ORT's optimization: 54 Reshape nodes instead of 146, no Split; the 4
  Transposes per block stay). The last attention block computes the attention output and the MLP of
  the pooled token only, without projecting the other tokens' keys and values (in causal towers too: its
  key mask is the row of the causal mask at the pooled position).

Optional L2 normalization of the outputs (``normalize=True``) is written as ``y * rsqrt(sum(y*y))``
with ``y = x / max|x|`` (``torch.linalg.vector_norm`` is not core ATen, and pre-scaling keeps the sum
of squares <= D, far from the fp16 limit of 65504, whatever the scale of the raw features).
"""
from __future__ import annotations

import contextlib
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn

from ..blocks import take_tokens
from ..text import ResidualAttentionBlock


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """``x / ||x||`` along the last axis with core-ATen ops, safe in fp16; a zero row stays zero."""
    s = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-4)
    y = x / s
    return y * torch.rsqrt((y * y).sum(dim=-1, keepdim=True).clamp_min(1e-4))


class ImageEncoder(nn.Module):
    """Folded image tower with an optional per-channel input affine and optional L2-normalized output."""

    def __init__(self, visual: nn.Module, normalize: bool = True, in_scale: Optional[Sequence[float]] = None,
                 in_bias: Optional[Sequence[float]] = None):
        super().__init__()
        self.visual = visual
        self.normalize = bool(normalize)
        scale = torch.tensor(list(in_scale) if in_scale is not None else [1.0, 1.0, 1.0], dtype=torch.float32)
        bias = torch.tensor(list(in_bias) if in_bias is not None else [0.0, 0.0, 0.0], dtype=torch.float32)
        self.has_scale = bool((scale != 1).any())
        self.has_bias = bool((bias != 0).any())
        self.register_buffer("in_scale", scale.reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("in_bias", bias.reshape(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image
        if self.has_scale:  # decided at construction time: no data-dependent branch in the graph
            x = x * self.in_scale
        if self.has_bias:
            x = x + self.in_bias
        x = self.visual(x)
        return l2_normalize(x) if self.normalize else x


class TextEncoder(nn.Module):
    """Folded text tower (base transformer or MCt) taking int32 tokens, argmax(EOT) pooling."""

    def __init__(self, text: nn.Module, normalize: bool = True):
        super().__init__()
        self.text = text
        self.normalize = bool(normalize)
        self.flat_stream = False  # see the module docstring

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = self.text
        if self.flat_stream:
            x = t.ln_final(_pooled_flat(t, tokens)) @ t.text_projection
            return l2_normalize(x) if self.normalize else x
        x = t.token_embedding(tokens) + t.positional_embedding[: tokens.shape[1]]
        idx = tokens.argmax(dim=-1)  # int32 ids: exact in every runtime (see the module docstring)
        blocks = t.transformer.resblocks
        last = blocks[-1]
        if hasattr(last, "forward_token") and not last.attn.causal:
            for block in blocks[:-1]:
                x = block(x)
            pooled = last.forward_token(x, idx)  # only the pooled token leaves the last block
        else:
            pooled = take_tokens(t.transformer(x), idx)
        x = t.ln_final(pooled.reshape(pooled.shape[0], -1)) @ t.text_projection
        return l2_normalize(x) if self.normalize else x


def _pooled_flat(t: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The text transformer's output at the pooled token, ``[B, W]``, with a 2-D residual stream."""
    B, L = tokens.shape
    x = t.token_embedding(tokens) + t.positional_embedding[:L]
    x = x.reshape(B * L, x.shape[-1])
    idx = tokens.argmax(dim=-1)
    blocks = t.transformer.resblocks
    for block in blocks[:-1]:
        x = _flat_block(block, x, B, L)
    return _flat_block(blocks[-1], x, B, L, idx)


def _rows(x: torch.Tensor, idx: torch.Tensor, B: int, L: int) -> torch.Tensor:
    """Row ``b * L + idx[b]`` of a ``[B*L, W]`` tensor for every ``b``: ``[B, W]``."""
    return take_tokens(x.reshape(B, L, x.shape[-1]), idx).reshape(B, x.shape[-1])


def _flat_block(block: nn.Module, x: torch.Tensor, B: int, L: int, idx: Optional[torch.Tensor] = None):
    """One block on ``[B*L, W]`` -> ``[B*L, W]``, or -> ``[B, W]`` (the pooled token) when ``idx`` is given."""
    if not isinstance(block, ResidualAttentionBlock):  # MCt's RepMixer blocks work on [B, L, W]
        y = block(x.reshape(B, L, x.shape[-1]))
        return y.reshape(B * L, -1) if idx is None else take_tokens(y, idx).reshape(B, -1)
    if not isinstance(block.attn, FlatAttention):
        raise TypeError("flat_stream needs the blocks' FlatAttention forms (export.onnx.ort_friendly swaps them in)")
    a = block.attn(block.ln_1(x), B, L, idx)
    x = (x if idx is None else _rows(x, idx, B, L)) + a
    return x + block.mlp(block.ln_2(x))


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    """An ``nn.Linear`` holding these tensors, frozen like the wrappers' parameters (built on the meta
    device: no random init of its own to throw away)."""
    m = nn.Linear(weight.shape[1], weight.shape[0], device="meta")
    m.weight, m.bias = nn.Parameter(weight, requires_grad=False), nn.Parameter(bias, requires_grad=False)
    return m


class FlatAttention(nn.Module):
    """:class:`mc2export.text.Attention` on a ``[B*L, W]`` stream (ONNX), holding its projections as separate
    constants: the exporter keeps a slice of a weight as a ``Slice`` node, which dynamic int8 quantization
    cannot take and ONNX Runtime folds only at load time.

    q, k and v come from three ``Gemm``s, not one split three ways (the ``Split`` copy cost more than the
    wider Gemm saves); the query carries the ``1/sqrt(d)`` scale. ``pooled=True`` (the last block: only the
    pooled token's output is needed) never projects keys and values of all L tokens: the pooled token's
    scores are ``x_j . (W_k^T q)`` per head (the key bias adds the same number to every score of a head,
    which softmax ignores) and its output is ``W_v (sum_j p_j x_j) + b_v`` (the p_j sum to 1), so
    ``2 L W^2`` multiply-adds become ``~4 H L W + 2 W^2``. (Heads kept transposed, ``W_in @ x^T`` ->
    ``[H, d, L]``, needs no Transpose node at all, but the projection then cannot use ONNX Runtime's
    prepacked weights: measured no faster on S0.)"""

    def __init__(self, attn: nn.Module, pooled: bool = False):
        super().__init__()
        W, H, d = attn.width, attn.heads, attn.head_dim
        self.width, self.heads, self.head_dim, self.causal, self.pooled = W, H, d, attn.causal, pooled
        w, b = attn.in_proj_weight.detach(), attn.in_proj_bias.detach()
        self.q = _linear(w[:W] * d ** -0.5, b[:W] * d ** -0.5)
        if pooled:
            self.register_buffer("k_heads", w[W:2 * W].reshape(H, d, W).clone(), persistent=False)
            self.register_buffer("v_heads", w[2 * W:].reshape(H, d, W).transpose(1, 2).contiguous(),
                                 persistent=False)  # [H, W, d]
            self.register_buffer("v_bias", b[2 * W:].clone(), persistent=False)
        else:
            self.k = _linear(w[W:2 * W].clone(), b[W:2 * W].clone())
            self.v = _linear(w[2 * W:].clone(), b[2 * W:].clone())
        self.out_proj = attn.out_proj

    def forward(self, x: torch.Tensor, B: int, L: int, idx: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``[B*L, W]`` -> ``[B*L, W]``; with ``idx`` (``pooled=True`` only), the pooled tokens' ``[B, W]``."""
        W, H, d = self.width, self.heads, self.head_dim
        if (idx is not None) != self.pooled:
            raise ValueError("FlatAttention(pooled=True) takes the pooled token indices, and only it does")
        if idx is None:
            q, k, v = (f(x).reshape(B, L, H, d).transpose(1, 2) for f in (self.q, self.k, self.v))
            a = torch.matmul(q, k.transpose(-1, -2))  # [B, H, L, L]
        else:
            q = self.q(_rows(x, idx, B, L)).reshape(B, H, 1, d)
            x = x.reshape(B, 1, L, W)
            a = torch.matmul(torch.matmul(q, self.k_heads), x.transpose(-1, -2))  # [B, H, 1, L]
        if self.causal:
            pos = torch.arange(L, device=x.device)
            query_pos = pos.reshape(L, 1) if idx is None else idx.reshape(B, 1, 1, 1)
            a = a.masked_fill(pos > query_pos, float("-inf"))
        a = a.softmax(dim=-1)
        if idx is None:
            out = torch.matmul(a, v).transpose(1, 2)  # [B, L, H, d]
        else:  # each head's attention-weighted tokens [B, H, 1, W], then its value projection
            out = torch.matmul(torch.matmul(a, x), self.v_heads).reshape(B, W) + self.v_bias
        return self.out_proj(out.reshape(-1, W))


def flat_attention_forms(module: nn.Module) -> dict:
    """``{id(attention): FlatAttention}`` for the text towers inside ``module`` (the last block pooled), for
    :func:`swapped_modules` together with ``flat_stream``."""
    forms = {}
    for m in module.modules():
        if isinstance(m, TextEncoder):
            blocks = m.text.transformer.resblocks
            for block in blocks:
                if isinstance(block, ResidualAttentionBlock):
                    forms[id(block.attn)] = FlatAttention(block.attn, pooled=block is blocks[-1])
    return forms


class SplitDepthwise(nn.Module):
    """A 7x7 depthwise convolution as the sum of three centered ones of at most 21 taps: rows 2-4 (3x7),
    rows 1 and 5 (2x7, dilated 4 along the height), rows 0 and 6 (2x7, dilated 6). XNNPACK's fast
    depthwise kernels stop at 25 taps: in ExecuTorch 1.4.1 on x86 a 7x7 one ran 4.5 ms where the three
    pieces take 0.6 ms (128 channels, 32x32; 1.34 vs 0.20 ms at stride 2), in LiteRT 2.3 4.3 vs 1.3 ms (64
    channels, 64x64). Exact up to the order of the additions. Weights are copies of the kernel's rows (same total
    size). Both XNNPACK formats (ExecuTorch, LiteRT) convert through it."""

    @staticmethod
    def applies(m: nn.Module) -> bool:
        return (isinstance(m, nn.Conv2d) and m.kernel_size == (7, 7) and m.padding == (3, 3)
                and m.dilation == (1, 1) and m.padding_mode == "zeros"
                and m.groups == m.in_channels == m.out_channels)

    @classmethod
    def replacing(cls, m: nn.Module):
        """The split form of ``m``, or None (a :func:`.wrappers.swapped_modules` replacer)."""
        return cls(m) if cls.applies(m) else None

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.stride, self.groups = conv.stride, conv.groups
        w = conv.weight.detach()
        self.register_buffer("w_mid", w[:, :, 2:5].contiguous(), persistent=False)
        self.register_buffer("w_in", w[:, :, 1:6:4].contiguous(), persistent=False)
        self.register_buffer("w_out", w[:, :, 0:7:6].contiguous(), persistent=False)
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, s, g = torch.nn.functional.conv2d, self.stride, self.groups
        y = conv(x, self.w_mid, self.bias, stride=s, padding=(1, 3), groups=g)
        y = y + conv(x, self.w_in, None, stride=s, padding=(2, 3), dilation=(4, 1), groups=g)
        return y + conv(x, self.w_out, None, stride=s, padding=(3, 3), dilation=(6, 1), groups=g)


@contextlib.contextmanager
def swapped_modules(module: nn.Module, replace: Callable[[nn.Module], Optional[nn.Module]]):
    """Within the block, every submodule ``c`` of ``module`` for which ``replace(c)`` returns a module is
    replaced by it (a format's export-friendly form of the same function); the originals come back on
    exit, because the folded model is shared with the validation reference."""
    swapped = []
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            new = replace(child)
            if new is not None:
                setattr(parent, name, new)
                swapped.append((parent, name, child))
    try:
        yield module
    finally:
        for parent, name, child in reversed(swapped):
            setattr(parent, name, child)


@contextlib.contextmanager
def set_attributes(module: nn.Module, name: str, value, enabled: bool = True):
    """Within the block, every submodule of ``module`` whose attribute ``name`` is the opposite bool of
    ``value`` has it set to ``value`` (a graph-form switch such as ``fused_attn``); restored on exit."""
    changed = [m for m in module.modules() if enabled and getattr(m, name, None) is (not value)]
    for m in changed:
        setattr(m, name, value)
    try:
        yield module
    finally:
        for m in changed:
            setattr(m, name, not value)


def precision_sensitive(module: nn.Module) -> list:
    """Paths (as in ``named_modules``) of the submodules whose class asks compressed exports to keep their
    weights (``keep_precision = True``, e.g. the MCi downsampling layers)."""
    return [n for n, m in module.named_modules() if n and getattr(m, "keep_precision", False)]


def static_int8_float(module: nn.Module) -> list:
    """Paths (as in ``named_modules``) of the submodules that static int8 quantization leaves in float: those
    named by a module's ``static_int8_float`` (e.g. the MCi final conv and head)."""
    return [f"{n}.{child}" if n else child for n, m in module.named_modules()
            for child in getattr(m, "static_int8_float", ())]


def under(path: str, prefixes) -> bool:
    """``path`` is one of ``prefixes`` or inside one of them (dotted module paths)."""
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def image_input_affine(mean: Sequence[float], std: Sequence[float]):
    """(scale, bias) per channel with ``x * scale + bias == (x - mean) / std``."""
    scale = [1.0 / float(s) for s in std]
    bias = [-float(m) / float(s) for m, s in zip(mean, std)]
    return scale, bias


def build_wrappers(model, towers: Sequence[str], normalize: bool, image_affine=None) -> dict:
    """``{"image": ImageEncoder, "text": TextEncoder}`` (eval mode, no grad) for the requested towers.

    ``image_affine``: ``(scale, bias)`` applied to the image input; default: the card's mean/std, i.e.
    the model takes RGB in [0, 1].
    """
    card = model.card
    out = {}
    if "image" in towers:
        if image_affine is None:
            image_affine = image_input_affine(card["preprocess"]["mean"], card["preprocess"]["std"])
        out["image"] = ImageEncoder(model.visual, normalize, *image_affine).eval()
    if "text" in towers:
        out["text"] = TextEncoder(model.text, normalize).eval()
    for m in out.values():
        for p in m.parameters():
            p.requires_grad_(False)
    return out


def example_input(tower: str, card: dict, batch: int = 1) -> torch.Tensor:
    """A well-formed example input for tracing/export (values do not matter for the graph)."""
    if tower == "image":
        r = card["resolution"]
        return torch.rand(batch, 3, r, r, generator=torch.Generator().manual_seed(0))
    from ..tokenizer import tokenize

    ctx = card["text"]["context_length"]
    tok = tokenize(["a photo of a cat"] * batch, context_length=ctx)
    return tok.to(torch.int32)


__all__ = ["ImageEncoder", "TextEncoder", "l2_normalize", "swapped_modules", "SplitDepthwise", "image_input_affine", "build_wrappers", "example_input"]
