"""Reproducible image augmentations of reinforced data (DataCompDR), with PIL only (no torchvision).

Apple's DataCompDR stores, per image, the random parameters of N augmentations so that training can
replay exactly the view a teacher embedded. The augmentation is torchvision's ``RandomResizedCrop``
followed by ``RandAugment`` (Apple's ``training/dr/transforms.py``: ``random_resized_crop`` with
bicubic resizing at 224 px, ``rand_augment`` with p = 1, 2 ops, magnitude 9 of 31 bins, nearest
interpolation, black fill). We implement the same operations and the same compressed parameter
layout (see ``docs/reinforced_data.md``):

    one augmentation = [[i, j, h, w], [[op_index, magnitude], [op_index, magnitude]]]

``[i, j, h, w]`` is the crop box (top, left, height, width) in pixels of the source image;
``op_index`` indexes :data:`OP_NAMES` (Apple's ``RandAugment.op_names``); ``magnitude`` is the signed
magnitude passed to the op, as torchvision's ``_apply_op`` takes it (shear factor, translation in
pixels at the generation size, degrees, enhance factor − 1, posterize bits, solarize threshold).
The second element is ``null`` when RandAugment was skipped (p < 1).

Replay at another resolution (a student at 256 px replaying crops drawn for a 224-px teacher): the
crop box is in source pixels, so it is resolution-free; rotations, shears and colour ops are too;
translations are stored in pixels of the generation size and are scaled by ``size / gen_size``
(``int()`` truncation as torchvision), so the student sees the view the teacher saw. At the
generation size the replay is exactly the original draw.
"""
from __future__ import annotations

import hashlib
import math
import random
from dataclasses import asdict, dataclass
from typing import Any, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from ..errors import UserError

# Apple's RandAugment.op_names (= the key order of torchvision's RandAugment augmentation space).
OP_NAMES = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
            "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")
_SIGNED = {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color", "Contrast",
           "Sharpness"}
_FILTERS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}


@dataclass(frozen=True)
class AugmentConfig:
    """How augmentations are drawn (the defaults are DataCompDR's)."""

    size: int = 224                      # generation resolution: the crop size the teachers saw
    scale: Tuple[float, float] = (0.08, 1.0)
    ratio: Tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: str = "bicubic"       # resize filter of the crop at generation time
    rand_augment: bool = True
    p: float = 1.0                       # probability of applying RandAugment to one augmentation
    num_ops: int = 2
    magnitude: int = 9
    num_magnitude_bins: int = 31

    def __post_init__(self):
        if self.size < 1:
            raise UserError(f"augmentation size must be positive, got {self.size}")
        if self.interpolation not in _FILTERS:
            raise UserError(f"unknown interpolation {self.interpolation!r}: use one of {', '.join(_FILTERS)}")
        if not 0 <= self.magnitude < self.num_magnitude_bins:
            raise UserError(f"RandAugment magnitude {self.magnitude} is outside 0..{self.num_magnitude_bins - 1}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scale"], d["ratio"] = list(self.scale), list(self.ratio)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AugmentConfig":
        d = dict(d)
        for k in ("scale", "ratio"):
            if k in d:
                d[k] = tuple(d[k])
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise UserError(f"unknown augmentation setting(s) {', '.join(sorted(unknown))}")
        return cls(**d)


def sample_rng(seed: int, key: str) -> random.Random:
    """The RNG of one sample: a function of (seed, key) only, so shards can be made in any order,
    by any rank, and again after a crash, with the same result."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def magnitude_table(cfg: AugmentConfig, size: int) -> dict:
    """Unsigned magnitude of every op at bin ``cfg.magnitude`` for images of ``size`` px (torchvision's
    RandAugment augmentation space, float32 like torch.linspace)."""
    n, m = cfg.num_magnitude_bins, cfg.magnitude

    def lin(lo, hi):
        return float(np.linspace(lo, hi, n, dtype=np.float32)[m])

    return {
        "Identity": 0.0, "ShearX": lin(0.0, 0.3), "ShearY": lin(0.0, 0.3),
        "TranslateX": lin(0.0, 150.0 / 331.0 * size), "TranslateY": lin(0.0, 150.0 / 331.0 * size),
        "Rotate": lin(0.0, 30.0), "Brightness": lin(0.0, 0.9), "Color": lin(0.0, 0.9),
        "Contrast": lin(0.0, 0.9), "Sharpness": lin(0.0, 0.9),
        "Posterize": float(int(8 - np.rint(np.arange(n) / ((n - 1) / 4))[m])),
        "Solarize": lin(255.0, 0.0), "AutoContrast": 0.0, "Equalize": 0.0,
    }


def draw_crop(rng: random.Random, width: int, height: int, scale, ratio) -> List[int]:
    """RandomResizedCrop's box ``[i, j, h, w]`` (torchvision's algorithm, our RNG)."""
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return [rng.randint(0, height - h), rng.randint(0, width - w), h, w]
    in_ratio = width / height  # fallback: the central crop at the nearest allowed aspect ratio
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return [(height - h) // 2, (width - w) // 2, h, w]


def draw(cfg: AugmentConfig, rng: random.Random, width: int, height: int) -> list:
    """One augmentation's compressed parameters for an image of ``width x height``."""
    params: list = [draw_crop(rng, width, height, cfg.scale, cfg.ratio)]
    if cfg.rand_augment:
        if rng.random() > cfg.p:
            params.append(None)
        else:
            table = magnitude_table(cfg, cfg.size)
            ops = []
            for _ in range(cfg.num_ops):
                idx = rng.randrange(len(OP_NAMES))
                mag = table[OP_NAMES[idx]]
                if OP_NAMES[idx] in _SIGNED and rng.random() < 0.5:
                    mag = -mag
                ops.append([idx, mag])
            params.append(ops)
    return params


def random_view(img: Image.Image, cfg: AugmentConfig, rng: random.Random) -> Tuple[Image.Image, list]:
    """Draw one augmentation *and apply each part as it is drawn* (the generation path, like torchvision's
    RandomResizedCrop + RandAugment forward): ``(view at cfg.size, compressed parameters)``. It consumes
    the RNG exactly as :func:`draw`; :func:`replay` of the returned parameters gives the same pixels."""
    img = img if img.mode == "RGB" else img.convert("RGB")
    i, j, h, w = box = draw_crop(rng, img.width, img.height, cfg.scale, cfg.ratio)
    view = img.crop((j, i, j + w, i + h)).resize((cfg.size, cfg.size), _FILTERS[cfg.interpolation])
    params: list = [box]
    if cfg.rand_augment:
        if rng.random() > cfg.p:
            params.append(None)
        else:
            table, ops = magnitude_table(cfg, cfg.size), []
            for _ in range(cfg.num_ops):
                idx = rng.randrange(len(OP_NAMES))
                mag = table[OP_NAMES[idx]]
                if OP_NAMES[idx] in _SIGNED and rng.random() < 0.5:
                    mag = -mag
                view = apply_op(view, OP_NAMES[idx], mag)
                ops.append([idx, mag])
            params.append(ops)
    return view, params


def _inverse_affine(center, angle, translate, shear) -> List[float]:
    """torchvision's ``_get_inverse_affine_matrix`` at scale 1 (the matrix PIL's AFFINE transform takes)."""
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [d, -b, 0.0, -c, a, 0.0]
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty)
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty)
    m[2] += cx
    m[5] += cy
    return m


def _affine(img: Image.Image, translate=(0, 0), shear=(0.0, 0.0), center=None) -> Image.Image:
    w, h = img.size
    center = [w * 0.5, h * 0.5] if center is None else center
    matrix = _inverse_affine(center, 0.0, translate, shear)
    return img.transform(img.size, Image.Transform.AFFINE, matrix, Image.Resampling.NEAREST,
                         fillcolor=(0,) * len(img.getbands()))


def apply_op(img: Image.Image, name: str, magnitude: float, translate_scale: float = 1.0) -> Image.Image:
    """torchvision's ``_apply_op`` on a PIL image (nearest interpolation, black fill)."""
    if name == "Identity":
        return img
    if name == "ShearX":
        return _affine(img, shear=(math.degrees(math.atan(magnitude)), 0.0), center=[0, 0])
    if name == "ShearY":
        return _affine(img, shear=(0.0, math.degrees(math.atan(magnitude))), center=[0, 0])
    if name == "TranslateX":
        return _affine(img, translate=(int(magnitude * translate_scale), 0))
    if name == "TranslateY":
        return _affine(img, translate=(0, int(magnitude * translate_scale)))
    if name == "Rotate":
        return img.rotate(magnitude, Image.Resampling.NEAREST, expand=False,
                          fillcolor=(0,) * len(img.getbands()))
    if name == "Brightness":
        return ImageEnhance.Brightness(img).enhance(1.0 + magnitude)
    if name == "Color":
        return ImageEnhance.Color(img).enhance(1.0 + magnitude)
    if name == "Contrast":
        return ImageEnhance.Contrast(img).enhance(1.0 + magnitude)
    if name == "Sharpness":
        return ImageEnhance.Sharpness(img).enhance(1.0 + magnitude)
    if name == "Posterize":
        return ImageOps.posterize(img, int(magnitude))
    if name == "Solarize":
        return ImageOps.solarize(img, magnitude)
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    raise ValueError(f"unknown RandAugment op {name!r}")


def check_params(params: Any) -> None:
    """Raise ValueError unless ``params`` is one well-formed compressed augmentation."""
    if not isinstance(params, (list, tuple)) or not 1 <= len(params) <= 2:
        raise ValueError("an augmentation must be [crop] or [crop, ops]")
    box = params[0]
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        raise ValueError(f"bad crop box {box!r}")
    if len(params) == 2 and params[1] is not None:
        for op in params[1]:
            if not (isinstance(op, (list, tuple)) and len(op) == 2 and isinstance(op[0], int)
                    and 0 <= op[0] < len(OP_NAMES) and isinstance(op[1], (int, float))):
                raise ValueError(f"bad RandAugment op {op!r}")


def replay(img: Image.Image, params: Sequence, size: int, gen_size: int,
           interpolation: str = "bicubic") -> Image.Image:
    """The augmented ``size x size`` RGB view that ``params`` describe (see the module docstring)."""
    img = img if img.mode == "RGB" else img.convert("RGB")
    i, j, h, w = (int(v) for v in params[0])
    view = img.crop((j, i, j + w, i + h)).resize((size, size), _FILTERS[interpolation])
    ops = params[1] if len(params) > 1 else None
    if ops:
        scale = size / gen_size
        for idx, mag in ops:
            view = apply_op(view, OP_NAMES[int(idx)], float(mag), scale)
    return view


def to_tensor(img: Image.Image, mean: Sequence[float], std: Sequence[float]):
    """``[3, H, W]`` float32: ``uint8 / 255``, then ``(x - mean) / std`` (torchvision ToTensor + Normalize)."""
    import torch

    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (x - m) / s


def describe(params: Sequence) -> str:
    """A readable form of one augmentation, for logs and docs."""
    i, j, h, w = params[0]
    ops = params[1] if len(params) > 1 else None
    text = f"crop(top={i}, left={j}, h={h}, w={w})"
    if ops:
        text += " " + " ".join(f"{OP_NAMES[k]}({m:+.4g})" for k, m in ops)
    return text


__all__ = ["AugmentConfig", "OP_NAMES", "draw", "random_view", "draw_crop", "replay", "apply_op", "to_tensor", "sample_rng",
           "magnitude_table", "check_params", "describe"]
