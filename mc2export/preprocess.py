"""Image preprocessing equal to open_clip's inference transform, without torchvision.

For the image modes open_clip's tests cover (``RGB``, ``RGBA``, ``L``, ``P``) the output is bit-for-bit
what ``open_clip.create_model_and_transforms(name, pretrained=tag)[2]`` gives (torchvision 0.28, Pillow 13;
checked against ``shared/reference/golden/preprocess``):

1. ``Resize(R)``: the shortest side becomes ``R`` and the long side ``int(R * long / short)`` (truncated),
   with PIL ``Image.resize`` and the configured filter, *in the image's own mode*. Pillow itself resizes
   ``P`` images with NEAREST whatever filter is asked for, and ``RGBA`` / ``LA`` images in premultiplied
   alpha (so fully transparent pixels end up black). An image already at the target size is used as is.
   Images smaller than ``R`` are upscaled the same way.
2. ``CenterCrop(R)``: ``top = int(round((H - R) / 2))``, ``left = int(round((W - R) / 2))``.
3. ``convert("RGB")`` (alpha is dropped, palettes looked up, gray replicated).
4. ``uint8 / 255`` in float32, then ``(x - mean) / std`` per channel.

Beyond the reference (our choices, applied before step 1):

* EXIF orientation is applied first (``PIL.ImageOps.exif_transpose``), so a phone photo stored sideways
  is seen upright. open_clip does not do this.
* ``1`` (bilevel) images are converted to ``L`` (0 / 255) first so the resize filter antialiases
  instead of Pillow's forced NEAREST.
* ``PA`` (palette + alpha) images are converted to ``RGBA`` first (Pillow would otherwise interpolate
  palette indices); ``La`` / ``RGBa`` (premultiplied) become ``LA`` / ``RGBA``.
* 16-bit gray (``I;16``, ``I;16L``, ``I;16B``, ``I;16N``) is scaled to 8 bits as ``round(v / 257)``
  (65535 -> 255) instead of Pillow's clipping at 255.
* ``I`` (32-bit int) is read as 16-bit data (what Pillow produces for 16-bit PNG/PGM/TIFF): values in
  0..65535 are scaled by ``round(v / 257)``; data outside that range is min-max stretched to 0..255.
* ``F`` (float): data within [0, 1] is scaled by 255, data within [0, 255] is used as is (rounded),
  anything else is min-max stretched; NaN counts as 0.
* ``CMYK``, ``YCbCr``, ``HSV``, ``LAB``, ``RGBX`` follow the reference path (resized in their own
  mode, then Pillow's ``convert("RGB")``); any other mode is converted to RGB first if Pillow can,
  else ``UserError``.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Union

import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import UserError

__all__ = [
    "PreprocessConfig",
    "ImageTransform",
    "build_transform",
    "load_image",
    "resized_size",
    "check_decodable",
    "MAX_RESIZED_PIXELS",
    "MAX_DECODE_PIXELS",
    "MAX_ASPECT_RATIO",
    "preprocess_batch",
    "OPENAI_MEAN",
    "OPENAI_STD",
]

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

_FILTERS = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
_RESIZE_MODES = ("shortest",)
_CROPS = ("center",)
# Keys of open_clip-style config dicts that carry no information we need (accepted and ignored).
_INFO_KEYS = {"transform", "file"}

ImageLike = Union[Image.Image, str, os.PathLike]


def _triple(name: str, value: Any) -> tuple[float, float, float]:
    try:
        vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise UserError(f"preprocess {name} must be 3 numbers, got {value!r}") from None
    if len(vals) != 3 or not all(np.isfinite(vals)):
        raise UserError(f"preprocess {name} must be 3 finite numbers, got {value!r}")
    return vals  # type: ignore[return-value]


@dataclass(frozen=True)
class PreprocessConfig:
    """What the inference transform needs: output side ``resolution``, resize filter, normalization.

    ``interpolation`` is ``"bilinear"`` or ``"bicubic"``; ``resize_mode`` ``"shortest"`` and ``crop``
    ``"center"`` are the only modes MobileCLIP / MobileCLIP2 use and the only ones supported.
    """

    resolution: int
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize_mode: str = "shortest"
    crop: str = "center"

    def __post_init__(self) -> None:
        r = self.resolution
        if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1:
            raise UserError(f"preprocess resolution must be a positive integer, got {r!r}")
        object.__setattr__(self, "resolution", int(r))
        interp = str(self.interpolation).lower()
        if interp not in _FILTERS:
            raise UserError(f"preprocess interpolation {self.interpolation!r} is not supported; use 'bilinear' or 'bicubic'")
        object.__setattr__(self, "interpolation", interp)
        object.__setattr__(self, "mean", _triple("mean", self.mean))
        std = _triple("std", self.std)
        if any(s == 0 for s in std):
            raise UserError(f"preprocess std must not contain 0, got {std}")
        object.__setattr__(self, "std", std)
        if self.resize_mode not in _RESIZE_MODES:
            raise UserError(f"preprocess resize_mode {self.resize_mode!r} is not supported; use 'shortest'")
        if self.crop not in _CROPS:
            raise UserError(f"preprocess crop {self.crop!r} is not supported; use 'center'")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PreprocessConfig":
        """Build from :meth:`to_dict` output; also accepts ``size`` (int or ``[R, R]``) for ``resolution``
        and the informational keys of ``golden/preprocess/index.json`` (``fill_color`` must be 0)."""
        if not isinstance(d, Mapping):
            raise UserError(f"preprocess config must be a mapping, got {type(d).__name__}")
        d = dict(d)
        if "resolution" not in d and "size" in d:
            size = d.pop("size")
            if isinstance(size, (list, tuple)):
                if len(size) != 2 or size[0] != size[1]:
                    raise UserError(f"preprocess size must be square, got {list(size)}")
                size = size[0]
            d["resolution"] = size
        if d.pop("fill_color", 0) not in (0, None):
            raise UserError("preprocess fill_color other than 0 is not supported")
        for key in _INFO_KEYS:
            d.pop(key, None)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"unknown preprocess config key(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")
        missing = sorted(k for k in ("resolution", "interpolation", "mean", "std") if k not in d)
        if missing:
            raise UserError(f"preprocess config is missing {', '.join(missing)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists); ``from_dict(to_dict())`` round-trips."""
        out = asdict(self)
        out["mean"] = list(self.mean)
        out["std"] = list(self.std)
        return out


# -- mode handling -------------------------------------------------------------------------------------

def _gray_from_array(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(a, dtype=np.uint8))


def _scale16(a: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255 as round(v / 257) (no ties are possible)."""
    return (a.astype(np.uint32) + 128) // 257


def _stretch(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return np.rint((a.astype(np.float64) - lo) * (255.0 / (hi - lo)))


def _int_to_gray(img: Image.Image) -> Image.Image:
    a = np.asarray(img)
    if img.mode.startswith("I;16"):
        return _gray_from_array(_scale16(a))
    a = a.astype(np.int64)
    if a.size and a.min() >= 0 and a.max() <= 65535:
        return _gray_from_array(_scale16(a))
    return _gray_from_array(_stretch(a) if a.size else a)


def _float_to_gray(img: Image.Image) -> Image.Image:
    a = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if not a.size:
        return _gray_from_array(a)
    lo, hi = a.min(), a.max()
    if lo >= 0.0 and hi <= 1.0:
        return _gray_from_array(np.rint(a * 255.0))
    if lo >= 0.0 and hi <= 255.0:
        return _gray_from_array(np.rint(a))
    return _gray_from_array(_stretch(a))


_REFERENCE_MODES = {"RGB", "RGBA", "L", "P", "LA", "CMYK", "YCbCr", "HSV", "LAB", "RGBX"}


def _prepare_mode(img: Image.Image) -> Image.Image:
    """Bring ``img`` into a mode the reference path handles well (see the module docstring)."""
    mode = img.mode
    if mode in _REFERENCE_MODES:
        return img
    if mode == "1":
        return img.convert("L")
    if mode == "PA":
        return img.convert("RGBA")
    if mode == "La":
        return img.convert("LA")
    if mode == "RGBa":
        return img.convert("RGBA")
    if mode == "I" or mode.startswith("I;16"):
        return _int_to_gray(img)
    if mode == "F":
        return _float_to_gray(img)
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise UserError(f"image mode {mode!r} is not supported ({exc}); convert the image to RGB first") from None


def _exif_upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag, if any; an unreadable EXIF block is ignored."""
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:
        return img
    if orientation in (None, 1):
        return img
    try:
        return ImageOps.exif_transpose(img)
    except Exception:
        return img


# -- the transform -------------------------------------------------------------------------------------

class ImageTransform:
    """``PIL.Image -> FloatTensor[3, R, R]``: open_clip's inference transform (see the module docstring)."""

    def __init__(self, config: PreprocessConfig):
        if not isinstance(config, PreprocessConfig):
            raise UserError(f"expected a PreprocessConfig, got {type(config).__name__}")
        self.config = config
        self._filter = _FILTERS[config.interpolation]
        self._mean = torch.tensor(config.mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.tensor(config.std, dtype=torch.float32).view(-1, 1, 1)

    def __repr__(self) -> str:
        c = self.config
        return (
            "ImageTransform(\n"
            "    ExifTranspose()\n"
            f"    Resize(size={c.resolution}, mode={c.resize_mode}, interpolation={c.interpolation}, antialias=True)\n"
            f"    CenterCrop(size=({c.resolution}, {c.resolution}))\n"
            "    ConvertMode('RGB')\n"
            "    ToTensor()\n"
            f"    Normalize(mean={c.mean}, std={c.std})\n"
            ")"
        )

    def resize_crop(self, img: Image.Image) -> Image.Image:
        """The RGB ``R x R`` PIL image after orientation, resize, center crop and RGB conversion."""
        if not isinstance(img, Image.Image):
            raise UserError(f"expected a PIL image, got {type(img).__name__}; open files with load_image()")
        r = self.config.resolution
        img = _prepare_mode(_exif_upright(img))
        size = resized_size(*img.size, r)
        w, h = img.size
        if size != (w, h):
            img = img.resize(size, self._filter)
        w, h = size
        top = int(round((h - r) / 2.0))
        left = int(round((w - r) / 2.0))
        img = img.crop((left, top, left + r, top + r))
        if img.mode != "RGB":
            try:
                img = img.convert("RGB")
            except (ValueError, OSError) as exc:
                raise UserError(f"cannot convert a {img.mode} image to RGB ({exc}); convert it to RGB first") from None
        return img

    def to_uint8(self, img: Image.Image) -> np.ndarray:
        """``uint8[R, R, 3]`` after resize, crop and RGB conversion (before scaling and normalization)."""
        return np.array(self.resize_crop(img), dtype=np.uint8, copy=True)

    def __call__(self, img: Image.Image) -> torch.Tensor:
        arr = self.to_uint8(img)
        x = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
        x = x.to(dtype=torch.float32).div(255)
        return x.sub_(self._mean).div_(self._std)


# Checked from the header, before any pixel is decoded: Pillow's own limit (its DecompressionBombWarning
# threshold, ~89 megapixels, an error here) and an aspect ratio no photo has (a 4 x 33,554,436 TIFF of a few
# hundred bytes took > 10 s to decode: found by fuzzing).
MAX_DECODE_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89478485)
MAX_ASPECT_RATIO = 1024


def check_decodable(w: int, h: int) -> None:
    """``UserError`` for an image too large to decode, or of an extreme aspect ratio, from its header size."""
    if w < 1 or h < 1:
        raise UserError(f"image has no pixels (size {w}x{h})")
    if w * h > MAX_DECODE_PIXELS:
        raise UserError(f"image of {w}x{h} pixels is larger than {MAX_DECODE_PIXELS / 1e6:.0f} megapixels: "
                        "downscale it first")
    if max(w, h) > MAX_ASPECT_RATIO * min(w, h):
        raise UserError(f"image of {w}x{h} pixels has an extreme aspect ratio ({max(w, h) // min(w, h)}:1): "
                        "crop it first")


# The largest image the shortest-side resize may produce: a 1 x 100000 PNG (476 bytes, well under Pillow's
# decompression-bomb limit) would otherwise become 256 x 25,600,000 pixels (~20 GB). 2**26 pixels (192 MB
# as RGB) admits a 256-pixel short side up to an aspect ratio of 1024:1 -- any real photo or panorama.
MAX_RESIZED_PIXELS = 1 << 26


def resized_size(w: int, h: int, resolution: int) -> tuple:
    """``(w, h)`` after the shortest side goes to ``resolution``; ``UserError`` for an image without pixels
    or one whose resize would exceed :data:`MAX_RESIZED_PIXELS` (an extreme aspect ratio)."""
    if w < 1 or h < 1:
        raise UserError(f"image has no pixels (size {w}x{h})")
    size = (resolution, int(resolution * h / w)) if w <= h else (int(resolution * w / h), resolution)
    if size[0] * size[1] > MAX_RESIZED_PIXELS:
        raise UserError(f"image of {w}x{h} pixels has an extreme aspect ratio ({max(w, h) / min(w, h):.0f}:1): its "
                        f"resize to a {resolution}-pixel short side would need {size[0]}x{size[1]} pixels; crop it "
                        "first")
    return size


def build_transform(cfg: PreprocessConfig | Mapping[str, Any]) -> ImageTransform:
    """The inference transform for ``cfg`` (a :class:`PreprocessConfig` or a dict for ``from_dict``)."""
    if isinstance(cfg, Mapping):
        cfg = PreprocessConfig.from_dict(cfg)
    return ImageTransform(cfg)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image file (mode kept as stored; orientation is applied by the transform).

    Raises ``UserError`` with a one-line message if the file is missing, unreadable or not an image.
    """
    p = Path(path)
    hint = "pass a JPEG/PNG/WebP/BMP/TIFF/GIF image"
    if not p.exists():
        raise UserError(f"cannot read image '{p}': no such file")
    if p.is_dir():
        raise UserError(f"cannot read image '{p}': it is a folder, not an image file")
    try:
        with warnings.catch_warnings():  # Pillow's bomb warning: check_decodable refuses those, in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(p) as im:
                check_decodable(*im.size)  # before decoding: the header's size
                im.load()
                return im
    except Image.UnidentifiedImageError as exc:
        raise UserError(f"cannot read image '{p}': not an image file ({_one_line(exc)}); {hint}") from None
    except Image.DecompressionBombError as exc:
        raise UserError(f"cannot read image '{p}': too large ({_one_line(exc)})") from None
    except PermissionError:
        raise UserError(f"cannot read image '{p}': permission denied") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise UserError(f"cannot read image '{p}': damaged or truncated image data ({_one_line(exc)}); {hint}") from None


def preprocess_batch(
    images: Iterable[ImageLike], cfg: PreprocessConfig | ImageTransform | Mapping[str, Any]
) -> torch.Tensor:
    """``FloatTensor[B, 3, R, R]`` for PIL images and/or image file paths."""
    transform: Callable[[Image.Image], torch.Tensor]
    transform = cfg if isinstance(cfg, ImageTransform) else build_transform(cfg)
    if isinstance(images, (Image.Image, str, os.PathLike)):
        images = [images]
    out = []
    for item in images:
        img = item if isinstance(item, Image.Image) else load_image(item)
        out.append(transform(img))
    if not out:
        r = transform.config.resolution
        return torch.zeros((0, 3, r, r), dtype=torch.float32)
    return torch.stack(out)
