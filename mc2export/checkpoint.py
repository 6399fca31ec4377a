"""Reading checkpoint files and mapping every official layout onto ours, in one place.

Our layout is open_clip's: ``logit_scale``, ``visual.trunk.*`` (timm names) and ``text.*``.
Layouts read:
  * ``open_clip``  — open_clip / Apple MobileCLIP2 files (``visual.trunk.*``, ``text.*``, ``logit_scale``)
  * ``apple_v1``   — Apple's ``mobileclip_*.pt`` (``image_encoder.model.*``, ``text_encoder.*``)
  * ``timm``       — timm image towers (``stem.*``/``stages.*`` or ``patch_embed.*``/``blocks.*``): image only
  * ``mc2export``  — files written by :func:`mc2export.save_checkpoint` (may be folded)
"""
from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from .errors import UserError, first_line
from .strictjson import loads as strict_loads

StateDict = Dict[str, torch.Tensor]
LAYOUTS = ("open_clip", "apple_v1", "timm", "mc2export")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


# ----------------------------------------------------------------------------------------------- reading
def read_checkpoint(path: str | os.PathLike) -> Tuple[StateDict, Dict[str, str]]:
    """(state dict, metadata) of a ``.safetensors``, ``.pt``, ``.pth`` or ``.bin`` file.

    Pickles are loaded with ``weights_only=True`` only; a ``state_dict``/``model`` wrapper and a
    ``module.`` prefix (DDP) are removed.
    """
    p = Path(path)
    if p.is_dir():
        inside = sorted(x.name for x in p.iterdir() if x.suffix in WEIGHT_SUFFIXES)
        raise UserError(f"checkpoint '{p}' is a folder, not a weights file: pass the file "
                        + (f"inside it, e.g. '{p / inside[0]}'" if inside else "(.safetensors, .pt, .pth, .bin)"))
    if not p.is_file():
        raise UserError(f"checkpoint not found: '{p}': check the path (or use --pretrained to download)")
    if p.stat().st_size == 0:
        raise UserError(f"cannot read checkpoint '{p}': the file is empty (an interrupted download?); fetch it again")
    with open(p, "rb") as f:
        head = f.read(8)
    meta: Dict[str, str] = {}
    if p.suffix == ".safetensors" or (not head.startswith(b"PK") and not head.startswith(b"\x80")):
        obj, meta = _read_safetensors(p)
    else:
        obj = _read_pickle(p)
    sd = _unwrap(obj, p)
    return sd, meta


def _read_safetensors(p: Path):
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            sd = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for truncation / bad headers
        raise UserError(f"cannot read checkpoint '{p}': {_not_safetensors(p, e)}") from None
    return sd, meta


def _not_safetensors(p: Path, e: BaseException) -> str:
    """Why a file is not readable safetensors: text under a weights name, or a cut-off download."""
    with open(p, "rb") as f:
        head = f.read(64)
    if len(head) >= 8 and b"\0" not in head[:8]:  # a real header length (< 2**56) has zero high bytes
        return (f"it is a text file (it starts with {head[:20].decode('ascii', 'replace')!r}), not safetensors "
                "weights: pass the weights file")
    size = p.stat().st_size
    header = int.from_bytes(head[:8], "little") if len(head) >= 8 else None
    if header is not None and 8 + header > size and header < 100 * 2 ** 20:
        return (f"the file ends before its header does ({size} bytes, header {header} bytes): the download was cut "
                "off; download it again")
    return f"not a safetensors file, or damaged ({first_line(e)}); download it again"


def _read_pickle(p: Path):
    import warnings

    try:
        with warnings.catch_warnings():  # torch's warnings advise what we refuse; our message says it all
            warnings.simplefilter("ignore")
            return torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        raise UserError(f"refusing to load '{p}': it is a pickle that holds Python objects"
                        + (f" ({found.group(1)})" if found else "")
                        + ", not only tensors, and loading it could run code; pass a plain state dict "
                        "(torch.save(model.state_dict(), ...)) or a .safetensors file") from None
    except Exception as e:  # torch's weights-only unpickler raises many types on damage (IndexError: fuzzing)
        raise UserError(f"cannot read checkpoint '{p}': truncated or corrupt ({type(e).__name__}: {first_line(e)}); "
                        "download it again") from None


def _unwrap(obj, p: Path) -> StateDict:
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj:
        raise UserError(f"'{p}' is not a state dict (it holds {type(obj).__name__}); "
                        "pass a checkpoint file of MobileCLIP weights")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise UserError(f"'{p}' is not a state dict: entry {bad[0]!r} is not a tensor; "
                        "pass a checkpoint file of MobileCLIP weights")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


# ------------------------------------------------------------------------------------------- detection
def detect_layout(sd: StateDict, meta: Optional[Dict[str, str]] = None) -> str:
    if meta and meta.get("format") == "mc2export":
        return "mc2export"
    keys = list(sd)
    if any(k.startswith("image_encoder.model.") or k.startswith("text_encoder.") for k in keys):
        return "apple_v1"
    if any(k.startswith("visual.") or k.startswith("text.") for k in keys):
        return "open_clip"
    if any(k.startswith(("stem.", "stages.", "patch_embed.", "blocks.")) for k in keys):
        return "timm"
    raise UserError(f"unrecognized checkpoint layout (first keys: {', '.join(keys[:3])}); expected an open_clip, "
                    "Apple MobileCLIP (.pt) or timm image-tower file")


def has_text(sd: StateDict) -> bool:
    return any(k.startswith("text.") for k in sd)


# --------------------------------------------------------------------------------------------- mapping
def to_canonical(sd: StateDict, layout: str) -> StateDict:
    """Rename a state dict of ``layout`` to our keys (open_clip's)."""
    if layout in ("open_clip", "mc2export"):
        return dict(sd)
    if layout == "timm":
        return {"visual.trunk." + k: v for k, v in sd.items()}
    if layout == "apple_v1":
        out: StateDict = {}
        image = {k[len("image_encoder.model."):]: v for k, v in sd.items() if k.startswith("image_encoder.model.")}
        mapper = _apple_vit_image if "patch_emb.0.block.conv.weight" in image else _apple_fastvit_image
        out.update({"visual.trunk." + k: v for k, v in mapper(image).items()})
        out.update(map_apple_v1_text(sd))
        if "logit_scale" in sd:
            out["logit_scale"] = sd["logit_scale"]
        return out
    raise ValueError(f"unknown layout {layout!r}")


_APPLE_FASTVIT_RENAMES = [
    ("patch_embed", "stem"), ("rbr_conv", "conv_kxk"), ("rbr_scale", "conv_scale"), ("rbr_skip", "identity"),
    ("conv_exp", "final_conv"), ("lkb_origin", "large_conv"), ("convffn", "mlp"), ("se.reduce", "se.fc1"),
    ("se.expand", "se.fc2"),
]


def _apple_fastvit_image(sd: StateDict) -> StateDict:
    # Apple's flat ``network.{i}`` list interleaves block groups with downsamplers (``.proj``) and
    # positional encodings (``.pe``); a new stage starts at each downsampler.
    downsamplers = sorted({int(m.group(1)) for k in sd if (m := re.match(r"network\.(\d+)\.proj\.", k))})
    out: StateDict = {}
    for key, v in sd.items():
        k = key
        for a, b in _APPLE_FASTVIT_RENAMES:
            k = k.replace(a, b)
        k = re.sub(r"layer_scale(_\d)?$", lambda m: m.group(0) + ".gamma", k)
        m = re.match(r"network\.(\d+)\.(proj|pe|\d+)(.*)$", k)
        if m:
            i, part, rest = int(m.group(1)), m.group(2), m.group(3)
            stage = sum(1 for d in downsamplers if d <= i)
            if part == "proj":
                k = f"stages.{stage}.downsample.proj{rest}"
            elif part == "pe":
                k = f"stages.{stage}.pos_emb.pos_enc{rest}"
            else:
                k = f"stages.{stage}.blocks.{part}{rest}"
        if k == "head.proj":  # CLIP projection x @ P  ->  Linear with weight P^T and zero bias
            out["head.fc.weight"] = v.t().contiguous()
            out["head.fc.bias"] = torch.zeros(v.shape[1], dtype=v.dtype)
            continue
        out[k] = v
    return out


_APPLE_VIT_RENAMES = [
    ("patch_emb.", "patch_embed.backbone."), ("block.conv", "conv"), ("block.norm", "bn"),
    ("post_transformer_norm.", "norm."), ("pre_norm_mha.0", "norm1"), ("pre_norm_mha.1", "attn"),
    ("pre_norm_ffn.0", "norm2"), ("pre_norm_ffn.1", "mlp.fc1"), ("pre_norm_ffn.4", "mlp.fc2"),
    ("qkv_proj.", "qkv."), ("out_proj.", "proj."), ("transformer.", "blocks."),
]


def _apple_vit_image(sd: StateDict) -> StateDict:
    out: StateDict = {}
    for key, v in sd.items():
        if key == "pos_embed.pos_embed.pos_embed":
            out["pos_embed"] = v.reshape(1, v.shape[-2], v.shape[-1])
            continue
        if key == "classifier.proj":
            out["head.weight"] = v.t().contiguous()
            out["head.bias"] = torch.zeros(v.shape[1], dtype=v.dtype)
            continue
        k = key
        for a, b in _APPLE_VIT_RENAMES:
            k = k.replace(a, b)
        out[k] = v
    return out


_APPLE_ATTN_BLOCK = [
    ("pre_norm_mha.0.", "ln_1."),
    ("pre_norm_mha.1.qkv_proj.weight", "attn.in_proj_weight"),
    ("pre_norm_mha.1.qkv_proj.bias", "attn.in_proj_bias"),
    ("pre_norm_mha.1.out_proj.", "attn.out_proj."),
    ("pre_norm_ffn.0.", "ln_2."),
    ("pre_norm_ffn.1.", "mlp.c_fc."),
    ("pre_norm_ffn.4.", "mlp.c_proj."),
]
_APPLE_BLOCK_RE = re.compile(r"^transformer\.(\d+)\.(.+)$")


def _map_apple_block_rest(rest: str) -> str:
    for old, new in _APPLE_ATTN_BLOCK:
        if rest.startswith(old):
            return new + rest[len(old):]
    for a, b in _APPLE_FASTVIT_RENAMES:  # MCt's RepMixer blocks use the FastViT names
        rest = rest.replace(a, b)
    return re.sub(r"layer_scale$", "layer_scale.gamma", rest)


def map_apple_v1_text(sd: StateDict) -> StateDict:
    """Apple v1 ``text_encoder.*`` entries -> canonical ``text.*`` entries (others are ignored).

    ``embedding_layer`` -> ``token_embedding``; ``positional_embedding.pos_embed.pos_embed`` (1,1,L,W)
    -> ``positional_embedding`` (L,W); ``final_layer_norm`` -> ``ln_final``; ``projection_layer`` (W,E)
    -> ``text_projection`` (W,E, still used as ``x @ W``); attention blocks ``transformer.{i}``:
    ``pre_norm_mha.0`` -> ``ln_1``, ``pre_norm_mha.1.qkv_proj`` -> ``attn.in_proj_*`` (same q,k,v row
    order), ``pre_norm_mha.1.out_proj`` -> ``attn.out_proj``, ``pre_norm_ffn.{0,1,4}`` ->
    ``ln_2`` / ``mlp.c_fc`` / ``mlp.c_proj``; MCt RepMixer blocks: ``rbr_skip`` -> ``identity``,
    ``rbr_conv`` -> ``conv_kxk``, ``rbr_scale`` -> ``conv_scale``, ``convffn`` -> ``mlp``,
    ``layer_scale`` -> ``layer_scale.gamma``; all under ``transformer.resblocks.{i}``.
    Pure: returns a new dict, tensors are not copied except where reshaped (a view).
    """
    out: StateDict = {}
    prefix = "text_encoder."
    for key, value in sd.items():
        if not key.startswith(prefix):
            continue
        k = key[len(prefix):]
        if k == "embedding_layer.weight":
            new = "token_embedding.weight"
        elif k == "positional_embedding.pos_embed.pos_embed":
            new = "positional_embedding"
            value = value.reshape(value.shape[-2], value.shape[-1])
        elif k.startswith("final_layer_norm."):
            new = "ln_final." + k[len("final_layer_norm."):]
        elif k == "projection_layer":
            new = "text_projection"
        else:
            m = _APPLE_BLOCK_RE.match(k)
            if m:
                new = f"transformer.resblocks.{m.group(1)}.{_map_apple_block_rest(m.group(2))}"
            else:
                new = k  # unknown entry: keep it (renamed prefix) so that strict loading reports it
        out["text." + new] = value
    return out


# ------------------------------------------------------------------------------------------ strict load
def mismatches(expected: Dict[str, torch.Size], sd: StateDict) -> Tuple[List[str], List[str], List[str]]:
    """(missing keys, unexpected keys, 'key (file A vs model B)' shape mismatches)."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [f"{k} (file {_shape(sd[k].shape)} vs model {_shape(expected[k])})"
              for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k])]
    return missing, unexpected, shapes


def _shape(s) -> str:
    return "x".join(str(int(d)) for d in s) or "scalar"


def describe_mismatch(missing: List[str], unexpected: List[str], shapes: List[str], n: int = 2) -> str:
    parts = []
    for label, items in (("shape mismatch", shapes), ("missing", missing), ("unexpected", unexpected)):
        if items:
            more = f" (+{len(items) - n} more)" if len(items) > n else ""
            parts.append(f"{label}: {', '.join(items[:n])}{more}")
    return "; ".join(parts)


def register_embedded_card(path) -> Optional[str]:
    """Register the custom card stored in one of our checkpoints (a trained student) so that its id
    resolves before the weights are read; returns the id, or None for any other file."""
    p = Path(path)
    try:
        from safetensors import safe_open

        with safe_open(str(p), framework="pt", device="cpu") as f:
            card = (f.metadata() or {}).get("card")
    except Exception:  # not a safetensors file: official checkpoints carry no card
        return None
    if not card:
        return None
    from .cards import register_card

    try:
        parsed = strict_loads(card)
    except ValueError as e:
        raise UserError(f"'{p}' carries a model card that is not valid JSON ({e}): save the checkpoint again") from None
    return register_card(parsed)


def save_checkpoint(model, path: str | os.PathLike) -> Path:
    """Write a model's weights as safetensors with the metadata that lets ``create_model`` rebuild it
    (variant, layout of the original weights, towers, folded or not). Atomic: temp file, then rename."""
    from safetensors.torch import save_file

    from . import __version__

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": "mc2export", "mc2export_version": __version__, "variant": model.variant,
            "layout": model.layout, "folded": model.folded or "", "towers": ",".join(model.towers)}
    from .cards import get_card, is_builtin

    if not is_builtin(model.variant):  # a custom card travels inside the file
        meta["card"] = json.dumps(get_card(model.variant))
    tmp = p.with_name(p.name + ".tmp")
    try:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata=meta)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p
