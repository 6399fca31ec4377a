"""``create_model``: a variant's model from a checkpoint file, the Hugging Face hub, or random weights."""
from __future__ import annotations

import contextlib
import json
import os
from typing import Optional

import torch

from . import cards
from .checkpoint import (StateDict, describe_mismatch, detect_layout, has_text, mismatches, read_checkpoint,
                         to_canonical)
from .errors import UserError
from .strictjson import loads as strict_loads
from .model import CLIPModel, fold as fold_model


def create_model(variant: Optional[str] = None, *, checkpoint: Optional[str | os.PathLike] = None,
                 pretrained: bool = False, fold: bool = False, revision: Optional[str] = None,
                 cache_dir: Optional[str] = None) -> CLIPModel:
    """Build a MobileCLIP / MobileCLIP2 model in eval mode.

    variant: an id of ``list_variants()``, a card name or a short name (``s0`` … ``l14``). May be omitted
      with a checkpoint written by mc2export (its metadata names the variant).
    checkpoint: a local file in any official layout (open_clip, Apple v1 ``.pt``, timm image tower) or
      our own; an image-only file gives an image-only model.
    pretrained: download the card's default weights from the Hugging Face hub (cached; ``revision`` pins).
    fold: return the folded (reparameterized) inference form.
    Without checkpoint or pretrained the weights are random (train-time init), for latency work.
    """
    if checkpoint is not None and pretrained:
        raise UserError("give either a checkpoint file or pretrained=True (--pretrained), not both")
    if pretrained:
        if variant is None:
            raise UserError("pretrained=True needs a variant: pass --variant (e.g. s0)")
        from .hub import download_weights

        checkpoint = download_weights(cards.get_card(variant), revision=revision, cache_dir=cache_dir)
    if checkpoint is None:
        if variant is None:
            raise UserError("no variant given: pass --variant (one of: " + ", ".join(cards.list_variants()) + ")")
        card = cards.get_card(variant)
        model = CLIPModel(card["id"], card["weights"]["default"])
    else:
        model = _from_file(variant, checkpoint)
    model.eval()
    return fold_model(model) if fold else model


def _from_file(variant: Optional[str], path) -> CLIPModel:
    raw, meta = read_checkpoint(path)
    layout = detect_layout(raw, meta)
    sd = to_canonical(raw, layout)
    towers = ("image", "text") if has_text(sd) else ("image",)
    if layout == "mc2export":
        if meta.get("card"):
            try:
                card = strict_loads(meta["card"])
            except ValueError as e:
                raise UserError(f"'{path}' carries a model card that is not valid JSON ({e}): save it again") from None
            cards.register_card(card)
        saved = meta.get("variant")
        if variant is not None and saved and cards.resolve_variant(variant) != saved:
            raise UserError(f"checkpoint '{path}' holds {saved}, not {cards.resolve_variant(variant)}: "
                            f"pass --variant {saved}")
        variant, layout = saved, meta.get("layout", "open_clip")
        towers = tuple(meta.get("towers", ",".join(towers)).split(","))
    if variant is None:
        best, _ = guess_variant(sd, layout, towers)
        if best is None:
            raise UserError(f"cannot tell which variant '{path}' holds: pass --variant")
        variant = best
    with _skip_init():
        model = CLIPModel(cards.resolve_variant(variant), layout, towers)
    if meta.get("folded"):
        model = fold_model(model, reference_only=meta["folded"] == "reference")
    load_strict(model, sd, path)
    return model


_INITS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
          "xavier_normal_", "constant_", "ones_", "zeros_")


@contextlib.contextmanager
def _skip_init():
    """Skip random parameter init (``torch.nn.init``) while building a model that a strict load then
    overwrites entirely: for S4 the init was 2.5 s of a 3.4 s checkpoint load."""
    saved = {n: getattr(torch.nn.init, n) for n in _INITS}
    for n in _INITS:
        setattr(torch.nn.init, n, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.nn.init, n, f)


def load_strict(model: CLIPModel, sd: StateDict, path) -> None:
    """Load with every key consumed and every shape checked; a mismatch is one line naming the first
    offending keys and the variant the file most likely holds."""
    expected = {k: v.shape for k, v in model.state_dict().items()}
    missing, unexpected, shapes = mismatches(expected, sd)
    if missing or unexpected or shapes:
        best, score = guess_variant(sd, model.layout, model.towers)
        hint = ""
        if best and best != model.variant:
            hint = f"; the file looks like {best} ({score:.0%} of its tensors fit): pass --variant {best}"
        raise UserError(f"checkpoint '{path}' does not fit {model.variant} ({model.layout} layout): "
                        f"{describe_mismatch(missing, unexpected, shapes)}{hint}")
    model.load_state_dict(sd, strict=True)


def guess_variant(sd: StateDict, layout: str, towers) -> tuple[Optional[str], float]:
    """The variant whose (unfolded) model fits the most tensors of ``sd``, and that fraction."""
    best, best_score = None, 0.0
    for vid in cards.list_variants():
        with torch.device("meta"):
            try:
                expected = {k: v.shape for k, v in CLIPModel(vid, layout, towers).state_dict().items()}
            except Exception:  # a variant that cannot take this tower set (never expected)
                continue
        fit = sum(1 for k, v in sd.items() if k in expected and tuple(expected[k]) == tuple(v.shape))
        score = fit / max(len(expected), len(sd))
        if score > best_score:
            best, best_score = vid, score
    return best, best_score


def count_parameters(model: torch.nn.Module, tower: Optional[str] = None) -> int:
    """Parameters (not buffers) of the whole model or of one tower ("image" / "text")."""
    m = model if tower is None else {"image": model.visual, "text": model.text}[tower]
    return 0 if m is None else sum(p.numel() for p in m.parameters())
