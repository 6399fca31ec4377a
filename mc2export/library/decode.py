"""The decoder: a photo's bytes -> the model's ``uint8 [R, R, 3]`` input, or a one-line reason it has none.

Decode for the model, not for the screen: a JPEG is decoded at the largest DCT scale (1/2, 1/4, 1/8,
Pillow's ``Image.draft``) that keeps both sides >= the model's resolution R, then the exact resize + center
crop of :mod:`mc2export.preprocess` (EXIF orientation included) runs on that. ``exact=True`` decodes at
full size (the reference path). What the reduced decode changes is measured in
``benchmarks/results/index_speed.md``.

Hostile input is refused before any pixel is decoded: files that are empty or not an image, images of
more than ``max_pixels`` pixels (decompression bombs: the header's size is checked first), and images
whose *resized* size would be unbounded (aspect ratio over ``max_aspect``: a 1 x 100000 strip resized to
a shortest side of 256 would be 25.6 M pixels wide).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

MAX_PIXELS = 200_000_000     # a 200 MP phone sensor is real; beyond that, a bomb
MAX_ASPECT = 50.0            # panoramas reach ~10:1


class Unreadable(Exception):
    """A photo without a model input; the message is the reason the manifest records (one line)."""


@dataclass(frozen=True)
class DecodeConfig:
    preprocess: dict                 # the bundle's preprocess block (resolution, interpolation, mean, std)
    exact: bool = False
    max_pixels: int = MAX_PIXELS
    max_aspect: float = MAX_ASPECT

    @property
    def resolution(self) -> int:
        return int(self.preprocess["resolution"])


_heif = None
_transforms: dict = {}


def _register_heif() -> bool:
    """HEIC / HEIF through pillow-heif (the ``index`` extra), registered once per process."""
    global _heif
    if _heif is None:
        try:
            import pillow_heif

            pillow_heif.register_heif_opener()
            _heif = True
        except ImportError:
            _heif = False
    return _heif


def _transform(cfg: DecodeConfig):
    key = tuple(sorted((k, str(v)) for k, v in cfg.preprocess.items()))
    t = _transforms.get(key)
    if t is None:
        from ..preprocess import build_transform

        t = _transforms[key] = build_transform({k: cfg.preprocess[k] for k in
                                                ("resolution", "interpolation", "mean", "std")})
    return t


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:160]


def open_checked(data: bytes, cfg: DecodeConfig):
    """Open (header only) and check size limits; returns the lazy PIL image."""
    from PIL import Image

    if not data:
        raise Unreadable("empty file")
    _register_heif()
    # our own limit below decides; Pillow's (89 M warning, 179 M error) must not refuse a 100 MP photo first
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < cfg.max_pixels:
        Image.MAX_IMAGE_PIXELS = cfg.max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.UnidentifiedImageError:
        head = data[:64].lstrip().lower()
        what = "HTML" if head.startswith((b"<!doctype html", b"<html")) else "not an image"
        raise Unreadable(f"not an image file ({what}; starts with {data[:8]!r})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise Unreadable(f"decompression bomb ({_one_line(e)})") from None
    except Exception as e:
        raise Unreadable(f"unreadable header ({type(e).__name__}: {_one_line(e)})") from None
    w, h = im.size
    if w < 1 or h < 1:
        raise Unreadable(f"no pixels ({w}x{h})")
    if w * h > cfg.max_pixels:
        raise Unreadable(f"decompression bomb: {w}x{h} = {w * h / 1e6:.0f} M pixels > the {cfg.max_pixels / 1e6:.0f} M "
                         "limit (--max-pixels)")
    if max(w, h) / min(w, h) > cfg.max_aspect:
        raise Unreadable(f"extreme aspect ratio {w}x{h} (> {cfg.max_aspect:g}:1): its resize would be unbounded")
    from ..errors import UserError
    from ..preprocess import resized_size

    try:  # the bound every image path shares (classify, embed, training): the resized size
        resized_size(w, h, cfg.resolution)
    except UserError as e:
        raise Unreadable(str(e)) from None
    return im


def model_input(data: bytes, cfg: DecodeConfig) -> np.ndarray:
    """``uint8 [R, R, 3]``: the exact preprocessing (before scaling) of the photo in ``data``."""
    from PIL import Image

    im = open_checked(data, cfg)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)  # GIF / multi-page TIFF: the first frame
            if not cfg.exact and im.format == "JPEG":
                r = cfg.resolution
                im.draft(im.mode, (r, r))  # DCT scaling keeps both sides >= r
            im.load()
            return _transform(cfg).to_uint8(im)
    except Unreadable:
        raise
    except Exception as e:
        msg = _one_line(e)
        if "truncated" in msg:
            raise Unreadable(f"truncated image data ({msg})") from None
        raise Unreadable(f"damaged image data ({type(e).__name__}: {msg})") from None
    finally:
        im.close()


def decode_photo(photo, cfg: DecodeConfig) -> Tuple[Optional[np.ndarray], Optional[str], float, float]:
    """(pixels or None, reason or None, read seconds, decode seconds) for one :class:`sources.Photo`."""
    import time

    from .sources import read_bytes

    t0 = time.perf_counter()
    try:
        data = read_bytes(photo)
    except OSError as e:
        return None, f"cannot read ({e.strerror or e})", time.perf_counter() - t0, 0.0
    t1 = time.perf_counter()
    try:
        px = model_input(data, cfg)
        return px, None, t1 - t0, time.perf_counter() - t1
    except Unreadable as e:
        return None, str(e), t1 - t0, time.perf_counter() - t1
    except MemoryError:
        return None, "out of memory while decoding", t1 - t0, time.perf_counter() - t1


def decode_chunk(photos, cfg: DecodeConfig):
    """A chunk of photos decoded in a worker process: one IPC round trip for several photos."""
    return [decode_photo(p, cfg) for p in photos]


def to_model(pixels: np.ndarray) -> np.ndarray:
    """``uint8 [B, R, R, 3]`` -> the bundles' input: float32 NCHW RGB in [0, 1] (they normalize inside)."""
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)


__all__ = ["DecodeConfig", "Unreadable", "model_input", "open_checked", "decode_photo", "decode_chunk", "to_model",
           "MAX_PIXELS", "MAX_ASPECT"]
