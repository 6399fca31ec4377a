"""Helpers for the fidelity-kit tests: golden models, their variants, and seed-0 checkpoint files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

# golden model -> our variant id. open_clip MobileCLIP-B follows timm's ViT; apple_v1 mobileclip_b Apple's.
VARIANT_OF = {
    "open_clip/MobileCLIP2-S0": "mobileclip2-s0", "open_clip/MobileCLIP2-S2": "mobileclip2-s2",
    "open_clip/MobileCLIP2-B": "mobileclip2-b", "open_clip/MobileCLIP2-S3": "mobileclip2-s3",
    "open_clip/MobileCLIP2-S4": "mobileclip2-s4", "open_clip/MobileCLIP2-L-14": "mobileclip2-l14",
    "open_clip/MobileCLIP-S1": "mobileclip-s1", "open_clip/MobileCLIP-S2": "mobileclip-s2",
    "open_clip/MobileCLIP-B": "mobileclip-b",
    "apple_v1/mobileclip_s0": "mobileclip-s0", "apple_v1/mobileclip_s1": "mobileclip-s1",
    "apple_v1/mobileclip_s2": "mobileclip-s2", "apple_v1/mobileclip_b": "mobileclip-b",
    "timm/fastvit_mci0": "mobileclip2-s0", "timm/fastvit_mci1": "mobileclip-s1", "timm/fastvit_mci2": "mobileclip2-s2",
    "timm/fastvit_mci3": "mobileclip2-s3", "timm/fastvit_mci4": "mobileclip2-s4",
    "timm/vit_base_mci_224": "mobileclip2-b", "timm/vit_large_patch14_clip_224": "mobileclip2-l14",
}
# Large whole models: their golden tests are marked slow. The default run still covers their features:
# timm/fastvit_mci3 (5 stages, LayerNorm2d attention, no stem scale branch; MCi4 is the same design),
# timm/vit_large_patch14_clip_224 (ViT-L/14) and the 768-wide text tower (tests/test_text.py).
LARGE = {"open_clip/MobileCLIP2-S3", "open_clip/MobileCLIP2-S4", "open_clip/MobileCLIP2-L-14", "timm/fastvit_mci4"}


def index(reference: Path) -> dict:
    return json.loads((reference / "golden" / "index.json").read_text())["models"]


def write_official(reference: Path, detweights, name: str, folder: Path) -> Path:
    """Seed-0 weights of golden model ``name`` in its official container; returns the file."""
    layout, model = name.split("/")
    sd = detweights.deterministic_state_dict(detweights.load_shapes(reference / "keys" / layout / f"{model}.txt"), 0)
    if layout == "apple_v1":
        path = folder / f"{model}.pt"
        torch.save(sd, path)
    else:
        from safetensors.torch import save_file

        path = folder / ("open_clip_model.safetensors" if layout == "open_clip" else "model.safetensors")
        save_file(sd, str(path))
    return path


def golden(reference: Path, name: str):
    return np.load(reference / "golden" / f"{name}.npz")


def max_rel(ours: torch.Tensor, ref: np.ndarray, scale: float) -> float:
    return float(np.abs(ours.detach().numpy() - ref).max() / scale)


# The two whole models the export tests check in every format (golden name, variant).
EXPORT_CASES = {"s0": ("open_clip/MobileCLIP2-S0", "mobileclip2-s0"), "mcs0": ("apple_v1/mobileclip_s0", "mobileclip-s0")}


def lazy_bundles(fmt: str, checkpoints: dict, root: Path) -> dict:
    """fp32 ``fmt`` bundles with raw (unnormalized) outputs, comparable with the golden features; each
    exported once, on first use (so that a test's setup holds one export)."""
    import mc2export.export as E

    class Lazy(dict):
        def __missing__(self, key):
            self[key] = root / key
            E.export_bundle(fmt, EXPORT_CASES[key][1], out=self[key], checkpoint=checkpoints[key], normalize=False,
                            precision="fp32")
            return self[key]

    return Lazy()
