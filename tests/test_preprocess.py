"""Preprocessing against open_clip's golden transform output (shared/reference/golden/preprocess)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from mc2export.errors import UserError
from mc2export.preprocess import (
    OPENAI_MEAN,
    OPENAI_STD,
    ImageTransform,
    PreprocessConfig,
    build_transform,
    load_image,
    preprocess_batch,
)

MODELS = ["MobileCLIP2-S0", "MobileCLIP2-S4", "MobileCLIP2-L-14", "MobileCLIP2-B"]


@pytest.fixture(scope="module")
def golden_dir(reference):
    return reference / "golden" / "preprocess"


@pytest.fixture(scope="module")
def index(golden_dir):
    return json.loads((golden_dir / "index.json").read_text())


@pytest.fixture(scope="module")
def images(golden_dir, index):
    return {item["name"]: load_image(golden_dir / item["file"]) for item in index["images"]}


@pytest.mark.parametrize("model", MODELS)
def test_golden_pixels(model, golden_dir, index, images):
    entry = index["models"][model]
    cfg = PreprocessConfig.from_dict(entry)
    assert cfg.resolution == entry["size"][0] and cfg.interpolation == entry["interpolation"]
    transform = build_transform(cfg)
    g = np.load(golden_dir / entry["file"])
    assert len(g["names"]) == 6
    for i, name in enumerate(g["names"]):
        img = images[str(name)]
        rgb = transform.to_uint8(img)
        assert np.array_equal(rgb, g["rgb_uint8"][i]), f"{model}/{name}: rgb_uint8 differs"
        x = transform(img)
        assert x.dtype == torch.float32 and x.shape == (3, cfg.resolution, cfg.resolution)
        ref = g["pixel_values"][i].astype(np.float32)
        assert np.abs(x.numpy() - ref).max() <= 1 / 255, f"{model}/{name}"
        # the golden values are the reference's fp32 output stored as float16: ours round to the same
        assert np.array_equal(x.numpy().astype(np.float16), g["pixel_values"][i]), f"{model}/{name}"


def test_batch_and_paths(golden_dir, index, images):
    entry = index["models"]["MobileCLIP2-S0"]
    cfg = PreprocessConfig.from_dict(entry)
    paths = [golden_dir / item["file"] for item in index["images"][:2]]
    batch = preprocess_batch([paths[0], str(paths[1]), images["gray_128x96"]], cfg)
    assert batch.shape == (3, 3, 256, 256)
    g = np.load(golden_dir / entry["file"])
    assert np.array_equal(batch.numpy().astype(np.float16), g["pixel_values"][[0, 1, 4]])
    assert preprocess_batch([], cfg).shape == (0, 3, 256, 256)
    assert torch.equal(preprocess_batch([images["gray_128x96"]], build_transform(cfg))[0], batch[2])


def test_config_round_trip_and_repr():
    cfg = PreprocessConfig(224, "bicubic", OPENAI_MEAN, OPENAI_STD)
    d = cfg.to_dict()
    assert d == {"resolution": 224, "interpolation": "bicubic", "mean": list(OPENAI_MEAN), "std": list(OPENAI_STD),
                 "resize_mode": "shortest", "crop": "center"}
    assert PreprocessConfig.from_dict(json.loads(json.dumps(d))) == cfg
    t = build_transform(d)
    assert isinstance(t, ImageTransform) and t.config == cfg
    text = repr(t)
    assert "Resize(size=224" in text and "bicubic" in text and "CenterCrop(size=(224, 224))" in text


@pytest.mark.parametrize(
    "bad",
    [
        {"resolution": 0, "interpolation": "bilinear", "mean": [0, 0, 0], "std": [1, 1, 1]},
        {"resolution": 224, "interpolation": "lanczos3", "mean": [0, 0, 0], "std": [1, 1, 1]},
        {"resolution": 224, "interpolation": "bilinear", "mean": [0, 0], "std": [1, 1, 1]},
        {"resolution": 224, "interpolation": "bilinear", "mean": [0, 0, 0], "std": [1, 0, 1]},
        {"resolution": 224, "interpolation": "bilinear", "mean": [0, 0, 0], "std": [1, 1, 1], "resize_mode": "squash"},
        {"resolution": 224, "interpolation": "bilinear", "mean": [0, 0, 0], "std": [1, 1, 1], "colour": 1},
        {"resolution": 224, "interpolation": "bilinear", "mean": [0, 0, 0]},
        {"size": [224, 256], "interpolation": "bilinear", "mean": [0, 0, 0], "std": [1, 1, 1]},
    ],
)
def test_bad_config(bad):
    with pytest.raises(UserError) as err:
        PreprocessConfig.from_dict(bad)
    assert "\n" not in str(err.value)


def _pattern(w: int, h: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 255) // max(w - 1, 1), (y * 255) // max(h - 1, 1), ((x // 4 + y // 4) % 2) * 200 + 20],
                    axis=-1).astype(np.uint8)


S0 = PreprocessConfig(64, "bilinear", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
S4 = PreprocessConfig(64, "bicubic", OPENAI_MEAN, OPENAI_STD)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_exif_orientation(tmp_path, fmt):
    upright = Image.fromarray(_pattern(120, 80))  # landscape as displayed
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # portrait as stored; tag 6 = rotate 90 CW to show
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / f"rotated.{fmt}"
    stored.save(path, exif=exif, **({"quality": 95} if fmt == "jpeg" else {}))
    img = load_image(path)
    assert img.size == (80, 120) and img.getexif().get(0x0112) == 6
    t = build_transform(S4)
    got = t(img)
    if fmt == "png":
        expected = t(upright)
    else:  # lossy: compare with the decoded stored pixels turned upright by hand
        expected = t(Image.fromarray(np.asarray(img)).transpose(Image.Transpose.ROTATE_270))
    assert torch.equal(got, expected)
    assert not torch.equal(got, t(Image.fromarray(np.asarray(img))))  # ignoring the tag would differ


def _check_sane(x: torch.Tensor, cfg: PreprocessConfig):
    assert x.shape == (3, cfg.resolution, cfg.resolution) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    lo = (0 - torch.tensor(cfg.mean)) / torch.tensor(cfg.std)
    hi = (1 - torch.tensor(cfg.mean)) / torch.tensor(cfg.std)
    assert (x >= lo.view(3, 1, 1) - 1e-5).all() and (x <= hi.view(3, 1, 1) + 1e-5).all()


def test_cmyk():
    rgb = _pattern(100, 70)
    # C, M, Y = 255 - R, G, B and K = 0: Pillow's CMYK -> RGB is then exact and linear
    cmyk = Image.merge("CMYK", [Image.fromarray(255 - rgb[..., c]) for c in range(3)] + [Image.new("L", (100, 70))])
    t = build_transform(S0)
    x = t(cmyk)
    _check_sane(x, S0)
    diff = np.abs(t.to_uint8(cmyk).astype(int) - t.to_uint8(Image.fromarray(rgb)).astype(int)).max()
    assert diff <= 1


def test_16bit_gray(tmp_path):
    a = (np.arange(90 * 60, dtype=np.uint32).reshape(60, 90) * 12).astype(np.uint16)
    a[:4, :4] = 65535
    im16 = Image.fromarray(a)
    assert im16.mode == "I;16"
    im16.save(tmp_path / "g16.png")
    loaded = load_image(tmp_path / "g16.png")
    assert loaded.mode.startswith("I")
    ref8 = Image.fromarray(np.rint(a / 257).astype(np.uint8))  # what an 8-bit export would hold
    t = build_transform(S0)
    for img in (im16, loaded, im16.convert("I")):
        x = t(img)
        _check_sane(x, S0)
        assert torch.equal(x, t(ref8))
    assert t(im16).max() > 0.9  # not clipped to white after 255, not divided to black


def test_la_and_other_modes():
    t = build_transform(S4)
    gray = Image.fromarray(_pattern(90, 50)[..., 0])
    opaque = Image.merge("LA", [gray, Image.new("L", gray.size, 255)])
    assert torch.equal(t(opaque), t(gray))
    clear = Image.merge("LA", [gray, Image.new("L", gray.size, 0)])
    assert t.to_uint8(clear).max() == 0  # fully transparent -> black, as open_clip does for RGBA
    ramp = Image.merge("LA", [gray, Image.fromarray(np.tile(np.arange(90, dtype=np.uint8) * 2, (50, 1)))])
    _check_sane(t(ramp), S4)
    # other modes: finite, in range
    pa = Image.fromarray(_pattern(40, 30)).convert("P").convert("PA")
    f01 = Image.fromarray(_pattern(40, 30)[..., 0].astype(np.float32) / 255.0)
    for img in (pa, gray.convert("1"), f01, Image.fromarray(_pattern(40, 30)).convert("YCbCr")):
        _check_sane(t(img), S4)
    assert torch.equal(t(f01), t(Image.fromarray(_pattern(40, 30)[..., 0])))


def test_small_image_upscaled():
    t = build_transform(S0)
    x = t(Image.fromarray(_pattern(10, 20)))
    _check_sane(x, S0)
    assert t.to_uint8(Image.fromarray(_pattern(64, 64))).tobytes() == _pattern(64, 64).tobytes()  # no-op size


def test_non_image_input():
    with pytest.raises(UserError):
        build_transform(S0)(np.zeros((8, 8, 3), np.uint8))


def test_load_image_errors(tmp_path):
    with pytest.raises(UserError) as err:
        load_image(tmp_path / "missing.jpg")
    assert "missing.jpg" in str(err.value) and "\n" not in str(err.value)
    bad = tmp_path / "garbage.jpg"
    bad.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(UserError) as err:
        load_image(bad)
    msg = str(err.value)
    assert "garbage.jpg" in msg and "not an image" in msg and "\n" not in msg
    cut = tmp_path / "cut.png"
    Image.fromarray(_pattern(200, 200)).save(tmp_path / "whole.png")
    cut.write_bytes((tmp_path / "whole.png").read_bytes()[:300])
    with pytest.raises(UserError) as err:
        load_image(cut)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError):
        load_image(tmp_path)
