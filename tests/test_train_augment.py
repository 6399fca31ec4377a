"""Stored augmentations replay exactly: the parameters of a random draw give the same pixels again."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
from PIL import Image

from mc2export.train.augment import (OP_NAMES, AugmentConfig, check_params, draw, draw_crop, magnitude_table,
                                     random_view, replay, sample_rng, to_tensor)


def _photo(w=48, h=40, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w)[None, :, None] * np.array([1.0, 0.5, 0.2]) + rng.normal(0, 20, (h, w, 3))
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def test_replay_of_stored_parameters_is_exact_and_covers_every_op():
    cfg = AugmentConfig(size=32)
    img = _photo()
    seen = set()
    for seed in range(60):
        view, params = random_view(img, cfg, random.Random(seed))
        stored = json.loads(json.dumps({"param_aug": [params]}))["param_aug"][0]  # as written to paug.json
        check_params(stored)
        assert stored == draw(cfg, random.Random(seed), *img.size)  # same RNG use as the generator's draw
        again = replay(img, stored, cfg.size, cfg.size, cfg.interpolation)
        assert np.array_equal(np.asarray(view), np.asarray(again)), f"seed {seed}: {stored}"
        seen.update(op for op, _ in stored[1])
    assert seen == set(range(len(OP_NAMES)))  # all 14 RandAugment ops were exercised


def test_magnitudes_follow_torchvision_randaugment_at_bin_9_of_31():
    t = magnitude_table(AugmentConfig(), 224)
    assert t["ShearX"] == pytest.approx(0.09) and t["Rotate"] == pytest.approx(9.0)
    assert t["Brightness"] == pytest.approx(0.27) and t["Solarize"] == pytest.approx(178.5)
    assert t["TranslateX"] == pytest.approx(150 / 331 * 224 * 9 / 30, rel=1e-6) and t["Posterize"] == 7.0


def test_translation_scales_with_the_replay_resolution():
    img = Image.new("RGB", (32, 32), (200, 200, 200))
    idx = OP_NAMES.index("TranslateX")
    params = [[0, 0, 32, 32], [[idx, 10.4], [0, 0.0]]]
    small = np.asarray(replay(img, params, 32, gen_size=32))
    big = np.asarray(replay(img, params, 64, gen_size=32))
    assert (small[:, :10] == 0).all() and (small[:, 10:] == 200).all()   # int(10.4) px, black fill
    assert (big[:, :20] == 0).all() and (big[:, 20:] == 200).all()       # int(10.4 * 2)


def test_colour_ops_and_skipped_randaugment():
    img = _photo()
    post = np.asarray(replay(img, [[0, 0, 40, 48], [[OP_NAMES.index("Posterize"), 4.0]]], 40, 40))
    assert (post % 16 == 0).all()
    sol = replay(img, [[0, 0, 40, 48], [[OP_NAMES.index("Solarize"), 128.0]]], 40, 40)
    assert np.asarray(sol).max() <= 255
    plain = replay(img, [[0, 0, 40, 48], None], 40, 40)            # RandAugment skipped (p < 1)
    ident = replay(img, [[0, 0, 40, 48], [[0, 0.0], [0, 0.0]]], 40, 40)
    assert np.array_equal(np.asarray(plain), np.asarray(ident))
    cfg = AugmentConfig(size=16, p=0.0)
    assert draw(cfg, random.Random(0), 48, 40)[1] is None


def test_crop_boxes_stay_inside_and_fall_back_to_the_center():
    rng = random.Random(0)
    for _ in range(300):
        w, h = rng.randint(1, 300), rng.randint(1, 300)
        i, j, ch, cw = draw_crop(rng, w, h, (0.08, 1.0), (3 / 4, 4 / 3))
        assert 0 <= i and 0 <= j and 0 < ch and 0 < cw and i + ch <= h and j + cw <= w
    # an extreme panorama never satisfies the ratio: torchvision's central fallback crop
    assert draw_crop(random.Random(0), 1000, 10, (0.9, 1.0), (3 / 4, 4 / 3)) == [0, 493, 10, 13]


def test_sample_rng_depends_only_on_seed_and_key():
    assert sample_rng(0, "k1").random() == sample_rng(0, "k1").random()
    assert sample_rng(0, "k1").random() != sample_rng(1, "k1").random() != sample_rng(0, "k2").random()


def test_to_tensor_normalizes_like_torchvision():
    img = Image.fromarray(np.full((2, 2, 3), 255, np.uint8))
    x = to_tensor(img, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert x.shape == (3, 2, 2) and float(x.min()) == 1.0


@pytest.mark.parametrize("bad", [[], [[1, 2, 3]], [[0, 0, 1, 1], [[99, 0.0]]], [[0, 0, 1, 1], [[0]]]])
def test_malformed_parameters_are_rejected(bad):
    with pytest.raises(ValueError):
        check_params(bad)
