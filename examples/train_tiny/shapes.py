"""A small, learnable image-text dataset: coloured shapes on noisy backgrounds, with web-like captions,
and a template captioner (the "synthetic captions" of the tiny reinforcement experiment).

9 classes = 3 colours x 3 shapes. Ground-truth captions are noisy on purpose, like web alt-text:
most name the colour and shape ("a small red circle on the left"), some only the shape or only the
colour, and 20% say nothing useful ("image 0042", "untitled"). Evaluation images go to an image
folder (``eval/red_circle/*.png``) whose class names read "red circle".
"""
from __future__ import annotations

import io
import json
import math
import random
import tarfile
from pathlib import Path
from typing import List

import numpy as np
from PIL import Image, ImageDraw

COLORS = {"red": (215, 45, 40), "green": (40, 160, 60), "blue": (45, 80, 215)}
SHAPES = ("circle", "square", "triangle")
CLASSES = [(c, s) for c in COLORS for s in SHAPES]


def render(color: str, shape: str, rng: random.Random, size: int = 64) -> tuple:
    """(image, words) — words describe the size and position actually drawn."""
    gray = rng.randint(150, 235)
    bg = tuple(gray + rng.randint(-15, 15) for _ in range(3))  # a light, nearly neutral background
    arr = np.clip(np.array(bg, np.float32) + np.random.default_rng(rng.getrandbits(32)).normal(0, 12, (size, size, 3)),
                  0, 255).astype(np.uint8)
    img = Image.fromarray(arr)
    d = ImageDraw.Draw(img)
    r = rng.uniform(0.14, 0.32) * size
    cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
    fill = tuple(int(np.clip(v + rng.randint(-25, 25), 0, 255)) for v in COLORS[color])
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        n = 4 if shape == "square" else 3
        rot = rng.uniform(0, 2 * math.pi)
        pts = [(cx + r * 1.2 * math.cos(rot + 2 * math.pi * k / n), cy + r * 1.2 * math.sin(rot + 2 * math.pi * k / n))
               for k in range(n)]
        d.polygon(pts, fill=fill)
    words = {"size": "small" if r < 0.2 * size else "big" if r > 0.27 * size else "",
             "where": "on the left" if cx < size / 3 else "on the right" if cx > 2 * size / 3 else ""}
    return img, words


def caption(color: str, shape: str, words: dict, rng: random.Random) -> str:
    u = rng.random()
    if u < 0.2:
        return rng.choice(["untitled", f"image {rng.randint(0, 9999):04d}", "a picture", "photo", "my drawing"])
    if u < 0.3:
        return f"a {shape}"
    if u < 0.4:
        return f"something {color}"
    parts = ["a", words["size"], color, shape, words["where"]] if rng.random() < 0.5 else ["a", color, shape]
    return " ".join(p for p in parts if p)


def make_dataset(root: str | Path, train_per_class: int = 50, eval_per_class: int = 20, shard_size: int = 100,
                 seed: int = 0, size: int = 64) -> dict:
    """Train tars (``root/train/shard-*.tar``: jpg + txt) and an eval image folder (``root/eval``)."""
    root = Path(root)
    rng = random.Random(seed)
    samples = []
    for c, s in CLASSES:
        for _ in range(train_per_class):
            img, words = render(c, s, rng, size)
            samples.append((img, caption(c, s, words, rng)))
    rng.shuffle(samples)
    (root / "train").mkdir(parents=True, exist_ok=True)
    for k in range(0, len(samples), shard_size):
        with tarfile.open(root / "train" / f"shard-{k // shard_size:04d}.tar", "w") as tf:
            for i, (img, text) in enumerate(samples[k:k + shard_size], start=k):
                buf = io.BytesIO()
                img.save(buf, format="JPEG", quality=92)
                for ext, data in (("jpg", buf.getvalue()), ("txt", text.encode())):
                    info = tarfile.TarInfo(f"{i:06d}.{ext}")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    for c, s in CLASSES:
        d = root / "eval" / f"{c}_{s}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(eval_per_class):
            render(c, s, rng, size)[0].save(d / f"{i:03d}.png")
    info = {"classes": [f"{c} {s}" for c, s in CLASSES], "train": len(samples),
            "eval": eval_per_class * len(CLASSES), "size": size}
    (root / "info.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


_TEMPLATES = ["a photo of a {c} {s}", "a {c} {s} on a plain background", "a drawing of a {s} that is {c}",
              "a {s}, coloured {c}", "{c} {s}", "a simple {c} {s} shape", "a picture of one {c} {s}"]


def describe(images: List[Image.Image], captions: List[str]) -> List[List[str]]:
    """The template captioner: it 'looks' at each image (the dominant saturated colour, and the
    shape from how much of its bounding box the shape fills) and writes 5 captions from templates.
    Like a real captioner it is sometimes wrong; unlike web alt-text it always names what it sees."""
    out = []
    for img in images:
        a = np.asarray(img.convert("RGB"), np.float32)
        sat = a.max(-1) - a.min(-1)
        mask = sat > 90
        if mask.sum() < 20:
            out.append(["a shape on a plain background"] * 5)
            continue
        mean = a[mask].mean(0)
        color = list(COLORS)[int(np.argmax([-np.abs(mean - np.array(v)).sum() for v in COLORS.values()]))]
        ys, xs = np.nonzero(mask)
        # compactness = area / (largest distance from the centroid)^2: circle pi, square 2, triangle 1.3
        r2 = ((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2).max() + 1.0
        compact = mask.sum() / r2
        shape = "circle" if compact > 2.55 else "square" if compact > 1.65 else "triangle"
        rng = random.Random(int(a.sum()) % (2 ** 31))
        out.append([t.format(c=color, s=shape) for t in rng.sample(_TEMPLATES, 5)])
    return out
