"""Validation of an exported tower against the folded PyTorch model on a fixed probe set.

Probe set (deterministic, no downloads): 16 synthetic photos-like images -- 8 labelled classes
(a coloured shape on a textured gradient background, 2 images each, drawn at 320x240 / 240x320 and
sent through the variant's real resize + center-crop path) -- and 24 texts: the 8 label prompts,
captions, the empty string, a text longer than 77 tokens (truncated, EOT at index 76) and a text
holding a literal ``<end_of_text>`` (two EOT ids: pooling must pick the first).

Tolerances (on the embeddings the model outputs, normalized or not):

==============  =====================================================================
precision       required
==============  =====================================================================
fp32            cosine >= 0.99999 for every probe row and max-abs <= 1e-4 x std(reference)
fp16            cosine >= 0.999 for every probe row
bf16            cosine >= 0.999 for every probe row (OpenVINO's bf16 inference precision)
int8 / palette  cosine >= 0.99 for every probe row; zero-shot top-1 agreement reported
==============  =====================================================================

Zero-shot agreement: the 16 probe images are classified against the 8 label prompts with the exported
towers (the reference tower stands in for a tower that was not exported) and with the reference;
the fraction of images with the same top-1 label is reported together with the number of images whose
reference top-1 margin is large enough to be meaningful (the synthetic weights of the fidelity kit
and random weights give nearly tied logits). It is reported, not enforced.

A failure raises :class:`ValidationError` (not a ``UserError``: it is a defect of the exporter or of
the toolchain, not of the user's input) with the figures and the tolerance in the message.
"""
from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

PROBE_LABELS = ["red circle", "blue square", "green triangle", "yellow star", "white cross", "black ring",
                "orange stripes", "purple checkerboard"]
PROBE_CAPTIONS = [
    "a photo of a cat",
    "A diagram of the MobileCLIP2 architecture, drawn on a whiteboard.",
    "two dogs playing in the snow",
    "a bowl of ramen with chopsticks on a wooden table",
    "an aerial view of a city at night",
    "a close-up of a red rose covered in dew",
    "a person riding a bicycle down a cobblestone street",
    "Street sign: 'No parking 8am-6pm, Mon-Fri'.",
    "3 apples & 2 oranges",
    "",
    "a very long caption " + " ".join(f"word{i}" for i in range(90)),
    "a text with a literal <end_of_text> token in the middle and more words after it",
    "café, naïve, 東京",
    "a photo of a purple checkerboard",
    "a black and white photo of a lighthouse",
    "a watercolor painting of mountains",
]
TOLERANCES = {
    "fp32": {"cosine_min": 0.99999, "max_abs_over_std": 1e-4},
    "fp16": {"cosine_min": 0.999},
    "bf16": {"cosine_min": 0.999},
    "compressed": {"cosine_min": 0.99},
}
MARGIN = 0.02  # reference top-1 cosine margin above which an image counts as "decided"


class ValidationError(RuntimeError):
    """An exported model does not reproduce the folded PyTorch model within tolerance."""


def tolerance_for(precision: str) -> dict:
    if precision == "fp32":
        return dict(TOLERANCES["fp32"])
    if precision in ("fp16", "bf16"):
        return dict(TOLERANCES[precision])
    return dict(TOLERANCES["compressed"])  # int8, palettized -- and OpenVINO's per-tower "auto", at its loosest


def probe_texts() -> List[str]:
    return [f"a photo of a {label}." for label in PROBE_LABELS] + list(PROBE_CAPTIONS)


def _draw(label: str, size, rng: np.random.Generator):
    from PIL import Image, ImageDraw, ImageFilter

    w, h = size
    colors = {"red": (220, 30, 40), "blue": (30, 60, 220), "green": (40, 170, 60), "yellow": (240, 210, 40),
              "white": (250, 250, 250), "black": (10, 10, 10), "orange": (250, 140, 20), "purple": (130, 40, 170)}
    color_name, shape = label.split(" ", 1)
    col = colors[color_name]
    # textured gradient background
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(60, 200, size=3)
    grad = rng.uniform(-0.3, 0.3, size=(2, 3))
    bg = base + xx[..., None] * grad[0] + yy[..., None] * grad[1] * 0.5
    bg = bg + 12 * np.sin(xx / rng.uniform(5, 20))[..., None] + rng.normal(0, 6, size=(h, w, 3))
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    cx, cy = w / 2 + rng.uniform(-0.15, 0.15) * w, h / 2 + rng.uniform(-0.15, 0.15) * h
    r = min(w, h) * rng.uniform(0.22, 0.32)
    box = [cx - r, cy - r, cx + r, cy + r]
    if shape == "circle":
        d.ellipse(box, fill=col)
    elif shape == "square":
        d.rectangle(box, fill=col)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=col)
    elif shape == "star":
        pts = []
        for i in range(10):
            a = math.pi / 2 + i * math.pi / 5
            rr = r if i % 2 == 0 else r * 0.45
            pts.append((cx + rr * math.cos(a), cy - rr * math.sin(a)))
        d.polygon(pts, fill=col)
    elif shape == "cross":
        t = r * 0.3
        d.rectangle([cx - t, cy - r, cx + t, cy + r], fill=col)
        d.rectangle([cx - r, cy - t, cx + r, cy + t], fill=col)
    elif shape == "ring":
        d.ellipse(box, outline=col, width=max(3, int(r * 0.25)))
    elif shape == "stripes":
        for i in range(-4, 5):
            x0 = cx + i * r * 0.25
            d.rectangle([x0, cy - r, x0 + r * 0.1, cy + r], fill=col)
    elif shape == "checkerboard":
        n = 6
        s = 2 * r / n
        for i in range(n):
            for j in range(n):
                if (i + j) % 2 == 0:
                    d.rectangle([cx - r + i * s, cy - r + j * s, cx - r + (i + 1) * s, cy - r + (j + 1) * s], fill=col)
    return img.filter(ImageFilter.GaussianBlur(0.6))


def probe_images(card: dict, per_label: int = 2, seed: int = 0):
    """(uint8 ``[N, R, R, 3]`` after the card's resize + center crop, label index per image)."""
    from ..preprocess import build_transform

    transform = build_transform(card["preprocess"])
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for k in range(per_label):
        for i, label in enumerate(PROBE_LABELS):
            size = (320, 240) if (i + k) % 2 == 0 else (240, 320)
            images.append(transform.to_uint8(_draw(label, size, rng)))
            labels.append(i)
    return np.stack(images), np.array(labels)


def probe_inputs(card: dict) -> dict:
    """Model inputs of the probe set: ``image`` float32 [N,3,R,R] in [0,1], ``text`` int32 [M,77],
    plus the uint8 images (Core ML takes pixel buffers) and the label count."""
    from ..tokenizer import tokenize

    u8, labels = probe_images(card)
    images = torch.from_numpy(u8).permute(0, 3, 1, 2).float().div(255).contiguous()
    tokens = tokenize(probe_texts(), context_length=card["text"]["context_length"]).to(torch.int32)
    return {"image": images, "image_uint8": u8, "text": tokens, "labels": labels, "n_labels": len(PROBE_LABELS)}


def run_batched(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int) -> np.ndarray:
    """Run a fixed-batch model over ``x`` in chunks of ``batch`` (the last chunk padded by repetition)."""
    outs = []
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        outs.append(np.asarray(fn(chunk), dtype=np.float32)[:n])
    return np.concatenate(outs)


def compare(ours: np.ndarray, ref: np.ndarray) -> dict:
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    num = (ours * ref).sum(-1)
    den = np.linalg.norm(ours, axis=-1) * np.linalg.norm(ref, axis=-1)
    cos = num / np.maximum(den, 1e-30)
    std = float(ref.std())
    max_abs = float(np.abs(ours - ref).max())
    return {"rows": int(len(ref)), "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
            "max_abs": max_abs, "reference_std": std, "max_abs_over_std": max_abs / std if std else float("inf"),
            "finite": bool(np.isfinite(ours).all())}


def check(figures: dict, tol: dict) -> List[str]:
    """Violations of ``tol`` in ``figures`` (empty when everything holds)."""
    bad = []
    if not figures.get("finite", True):
        bad.append("non-finite outputs")
    if figures["cosine_min"] < tol["cosine_min"]:
        bad.append(f"cosine min {figures['cosine_min']:.7f} < {tol['cosine_min']}")
    if "max_abs_over_std" in tol and figures["max_abs_over_std"] > tol["max_abs_over_std"]:
        bad.append(f"max-abs {figures['max_abs']:.3e} = {figures['max_abs_over_std']:.2e} x std > "
                   f"{tol['max_abs_over_std']:.0e} x std")
    return bad


def zero_shot(img_ours: np.ndarray, txt_ours: np.ndarray, img_ref: np.ndarray, txt_ref: np.ndarray,
              labels: np.ndarray) -> dict:
    """Top-1 agreement of exported vs reference zero-shot classification (cosine similarities)."""
    def unit(a):
        a = np.asarray(a, dtype=np.float64)
        return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-30)

    s_ours = unit(img_ours) @ unit(txt_ours).T
    s_ref = unit(img_ref) @ unit(txt_ref).T
    top_ours, top_ref = s_ours.argmax(1), s_ref.argmax(1)
    srt = np.sort(s_ref, axis=1)
    margin = srt[:, -1] - srt[:, -2]
    decided = margin >= MARGIN
    return {
        "images": int(len(labels)), "labels": int(s_ref.shape[1]),
        "top1_agreement": float((top_ours == top_ref).mean()),
        "decided_images": int(decided.sum()),
        "top1_agreement_decided": float((top_ours == top_ref)[decided].mean()) if decided.any() else None,
        "reference_margin_median": float(np.median(margin)),
        "reference_top1_accuracy": float((top_ref == labels).mean()),
        "exported_top1_accuracy": float((top_ours == labels).mean()),
    }


def activation_absmax(module: torch.nn.Module, x: torch.Tensor):
    """(output, stats): ``module(x)`` in fp32 and the largest |activation| of any leaf module on the way,
    with where it occurs: the fp16 headroom (fp16's largest finite value is 65504)."""
    seen = []

    def hook(mod, inp, out, name=None):
        if isinstance(out, torch.Tensor) and out.is_floating_point() and out.numel():
            t = out.detach()
            if t.dim() == 4 and not t.is_contiguous():  # aminmax is slow on channels-last strides
                t = t.permute(0, 2, 3, 1)
            lo, hi = torch.aminmax(t)
            seen.append((max(-float(lo), float(hi)), name))

    handles = [m.register_forward_hook(lambda mod, i, o, n=name: hook(mod, i, o, n))
               for name, m in module.named_modules() if not list(m.children())]
    if x.dim() == 4:  # channels-last: the same model, oneDNN's faster conv path (MCi4 probe set 7.3 -> 5.3 s)
        x = x.contiguous(memory_format=torch.channels_last)
    try:
        with torch.no_grad():
            out = module(x)
    finally:
        for h in handles:
            h.remove()
    value, where = max(seen) if seen else (0.0, None)
    return out, {"absmax": value, "where": where, "fp16_max": 65504.0,
                 "headroom": 65504.0 / value if value else None}


def check_io(actual: dict, expected: dict) -> List[str]:
    """Compare ``{"inputs": [{name, dtype, shape}], "outputs": [...]}`` dicts; return the differences."""
    bad = []
    for side in ("inputs", "outputs"):
        a, e = actual.get(side, []), expected.get(side, [])
        if len(a) != len(e):
            bad.append(f"{len(a)} {side}, expected {len(e)}")
            continue
        for x, y in zip(a, e):
            for key in ("name", "dtype", "shape"):
                if key in y and x.get(key) != y[key]:
                    bad.append(f"{side[:-1]} {y.get('name')}: {key} {x.get(key)} != expected {y[key]}")
    return bad


def format_failure(fmt: str, tower: str, precision: str, bad: Sequence[str], figures: dict,
                   tol: Optional[dict] = None) -> str:
    figs = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()
                     if k in ("cosine_min", "cosine_mean", "max_abs", "max_abs_over_std", "reference_std", "rows"))
    return (f"{fmt} {tower} ({precision}) failed validation: {'; '.join(bad)} [{figs}]"
            + (f" tolerance {tol}" if tol else ""))


def minimal_bpe(ranks: dict, word: str, applied: Optional[set] = None) -> List[str]:
    """CLIP's BPE as an app port writes it, from the merge ranks alone (``{(a, b): rank}``): ``word`` is one
    byte-encoded piece; the lowest-ranked pair present is merged everywhere, until none is. ``applied``
    collects the merges used (the test fixtures build a vocabulary slice from them)."""
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    while len(parts) > 1:
        pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        merged, j, a, b = [], 0, parts[i], parts[i + 1]
        if applied is not None:
            applied.add((a, b))
        while j < len(parts):  # merge every occurrence of the best pair, left to right
            if j < len(parts) - 1 and parts[j] == a and parts[j + 1] == b:
                merged.append(a + b)
                j += 2
            else:
                merged.append(parts[j])
                j += 1
        parts = merged
    return parts


def tokenizer_parity(folder, texts: Sequence[str], context_length: int = 77) -> dict:
    """Encode ``texts`` with a minimal BPE that reads only the bundle's ``vocab.json`` + ``merges.txt``
    (what an app port does) and compare id for id with :func:`mc2export.tokenize`."""
    import json
    from pathlib import Path

    from ..tokenizer import _PATTERN, _byte_to_unicode, clean_text, tokenize

    folder = Path(folder)
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")[1:]
    ranks = {tuple(line.split(" ")): i for i, line in enumerate(lines) if line}
    byte_enc = _byte_to_unicode()
    sot, eot = vocab["<start_of_text>"], vocab["<end_of_text>"]

    rows = []
    for text in texts:
        ids = []
        for piece in _PATTERN.findall(clean_text(text)):
            if piece in ("<start_of_text>", "<end_of_text>"):
                ids.append(vocab[piece])
                continue
            ids.extend(vocab[t] for t in minimal_bpe(ranks, "".join(byte_enc[b] for b in piece.encode("utf-8"))))
        row = [sot, *ids, eot]
        if len(row) > context_length:
            row = row[:context_length]
            row[-1] = eot
        rows.append(row + [0] * (context_length - len(row)))
    ours = np.array(rows, dtype=np.int64)
    ref = tokenize(list(texts), context_length=context_length).numpy()
    same = (ours == ref).all(axis=1)
    return {"texts": len(texts), "identical_rows": int(same.sum()), "passed": bool(same.all()),
            "vocab_entries": len(vocab), "merges": len(ranks)}


__all__ = ["ValidationError", "tokenizer_parity", "TOLERANCES", "tolerance_for", "probe_inputs", "probe_texts", "probe_images",
           "run_batched", "compare", "check", "zero_shot", "activation_absmax", "check_io", "format_failure",
           "PROBE_LABELS"]
