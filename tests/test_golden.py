"""Every golden model of the fidelity kit, loaded from its official file format through our loader,
reproduces the reference features: train-time and folded, image and text."""
from __future__ import annotations

import pytest
import torch

import mc2export
from golden import LARGE, VARIANT_OF, golden, index, max_rel, write_official

TOL = 1e-4  # of the output std (issue acceptance)

CASES = [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in VARIANT_OF]


@pytest.mark.parametrize("name", CASES)
def test_golden_features(name, reference, detweights, tmp_path):
    info = index(reference)[name]
    path = write_official(reference, detweights, name, tmp_path)
    g = golden(reference, name)
    model = mc2export.create_model(VARIANT_OF[name], checkpoint=path)
    path.unlink()  # free the disk early: the large towers are GBs
    assert model.towers == (("image", "text") if info["has_text"] else ("image",))
    with torch.no_grad():
        img = torch.from_numpy(g["image"])
        results = {"train": (model.encode_image(img), None)}
        tokens = torch.from_numpy(g["tokens"]) if info["has_text"] else None
        if tokens is not None:
            results["train"] = (results["train"][0], model.encode_text(tokens))
        for mode, ref_only in (("fold-reference", True), ("fold", False)):
            folded = mc2export.fold(model, reference_only=ref_only)
            results[mode] = (folded.encode_image(img), folded.encode_text(tokens) if tokens is not None else None)
            del folded
    for mode, (fi, ft) in results.items():
        key = "" if mode == "train" else "_reparam"
        err = max_rel(fi, g["image_features" + key], info["image_features_std"])
        assert err <= TOL, f"{name} {mode} image: max-abs {err:.2e} x std"
        if ft is not None:
            err = max_rel(ft, g["text_features" + key], info["text_features_std"])
            assert err <= TOL, f"{name} {mode} text: max-abs {err:.2e} x std"
