"""The ``verify/`` part of a bundle: verification vectors (format: ``docs/bundle.md``, "``verify/``").

A few probe inputs exactly as the models take them (images after the variant's resize + center crop, as
uint8 NHWC; token rows as int32) and the embeddings the folded PyTorch model gives for them in fp32 (the
reference the export's validation computed: no second reference run), with the tolerance of the bundle's
precision tier. Raw little-endian arrays without a header, so that a Swift / Kotlin / JavaScript app reads
each with one buffer view; ``manifest.json`` holds their shapes. Written by the export before the checksums
(so they are in ``config.json`` ``files``); read by ``mc2export verify``, ``mc2export bench --device android``
and the sample apps.

Only numpy here: the readers run where the bundle runs (an ARM board, a phone's host), not where it was made.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import UserError

DIR = "verify"
MANIFEST = f"{DIR}/manifest.json"
VERSION = 1
# rows of the export's probe set (validate.probe_images / probe_texts) that travel with the bundle:
# images 0, 5, 10, 15 = red circle (landscape), black ring (portrait), green triangle (portrait),
# purple checkerboard (landscape); texts 0 = a label prompt, 8 = a caption, 17 = the empty string,
# 18 = a text longer than 77 tokens, 19 = one with a literal <end_of_text>, 20 = non-ASCII text.
IMAGE_ROWS = (0, 5, 10, 15)
TEXT_ROWS = (0, 8, 17, 18, 19, 20)
_FILES = {"image": ("image_inputs.u8", "image_expected.f32"), "text": ("text_tokens.i32", "text_expected.f32")}
_DTYPES = {"uint8": "<u1", "int32": "<i4", "float32": "<f4"}


def tier(precision: str) -> str:
    """The tolerance tier of a precision (``validate.tolerance_for``'s grouping)."""
    return precision if precision in ("fp32", "fp16", "bf16") else "compressed"


def write(folder: Path, *, precision: str, tolerance: dict, normalized: bool, embed_dim: int,
          image: Optional[tuple] = None, text: Optional[tuple] = None, per_tower: Optional[dict] = None) -> dict:
    """Write ``folder/verify/``. ``image``: (uint8 ``[N, R, R, 3]`` probe images, fp32 reference ``[N, D]``);
    ``text``: (int32 ``[M, 77]`` probe tokens, fp32 reference ``[M, D]``, the probe texts). Full probe sets:
    the rows of ``IMAGE_ROWS`` / ``TEXT_ROWS`` are taken here. ``per_tower``: {tower: (precision,
    tolerance)} where a tower's precision is not the bundle's (OpenVINO ``auto`` chooses per tower): the
    tower's entry then carries its own ``precision`` / ``tier`` / ``tolerance``, and the bundle-level
    tolerance stays the bundle precision's (for ``auto``: int8's, the loosest). Returns the manifest."""
    out = Path(folder) / DIR
    out.mkdir(parents=True, exist_ok=True)
    towers = {}
    for tower, data, rows in (("image", image, IMAGE_ROWS), ("text", text, TEXT_ROWS)):
        if data is None:
            continue
        inputs, expected = np.asarray(data[0])[list(rows)], np.asarray(data[1], dtype=np.float32)[list(rows)]
        in_dtype = "uint8" if tower == "image" else "int32"
        in_name, exp_name = _FILES[tower]
        _save(out / in_name, inputs, in_dtype)
        _save(out / exp_name, expected, "float32")
        entry = {"inputs": {"file": f"{DIR}/{in_name}", "dtype": in_dtype, "shape": list(inputs.shape)},
                 "expected": {"file": f"{DIR}/{exp_name}", "dtype": "float32", "shape": list(expected.shape)},
                 "probe_rows": list(rows)}
        if per_tower and tower in per_tower:
            p, tol = per_tower[tower]
            entry.update(precision=p, tier=tier(p), tolerance=dict(tol))
        if tower == "image":
            entry["inputs"]["layout"] = "NHWC RGB"
        else:
            entry["texts"] = [data[2][i] for i in rows]
        towers[tower] = entry
    manifest = {"version": VERSION, "byte_order": "little", "reference": "folded PyTorch model, fp32",
                "precision": precision, "tier": tier(precision), "tolerance": dict(tolerance),
                "output_normalized": bool(normalized), "embed_dim": int(embed_dim), "towers": towers}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def _save(path: Path, array: np.ndarray, dtype: str) -> None:
    path.write_bytes(np.ascontiguousarray(array, dtype=_DTYPES[dtype]).tobytes())


def tolerance(manifest: dict, tower: str) -> dict:
    """The tolerance ``tower``'s outputs must hold: its own where the manifest gives one, else the bundle's."""
    return manifest["towers"][tower].get("tolerance") or manifest["tolerance"]


def read(bundle: Path) -> dict:
    """The manifest with each tower's ``inputs`` / ``expected`` arrays loaded (``"array"`` keys); a
    ``UserError`` naming the fix when the bundle has no vectors or they do not match their manifest."""
    bundle = Path(bundle)
    path = bundle / MANIFEST
    hint = "re-export the bundle with this mc2export (bundles written before verification vectors have none)"
    if not path.is_file():
        raise UserError(f"bundle '{bundle}' has no verification vectors ({MANIFEST} is missing): {hint}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        towers = manifest["towers"]
        for tower, entry in towers.items():
            for part in ("inputs", "expected"):
                spec = entry[part]
                entry[part]["array"] = _load(bundle / spec["file"], spec["dtype"], spec["shape"])
            if len(entry["inputs"]["array"]) != len(entry["expected"]["array"]):
                raise ValueError(f"{tower}: {len(entry['inputs']['array'])} inputs, "
                                 f"{len(entry['expected']['array'])} expected rows")
        float(manifest["tolerance"]["cosine_min"])
        for tower in towers:
            float(tolerance(manifest, tower)["cosine_min"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"bundle '{bundle}' has unreadable verification vectors ({e.__class__.__name__}: {e}): "
                        f"{hint}") from None
    return manifest


def _load(path: Path, dtype: str, shape: Sequence[int]) -> np.ndarray:
    data = np.fromfile(path, dtype=_DTYPES[dtype])
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path.name} holds {data.size} {dtype} values, the manifest says {list(shape)}")
    return data.reshape(shape)


def model_input(tower: str, rows: np.ndarray) -> np.ndarray:
    """Vector rows as an ONNX / ExecuTorch / OpenVINO model takes them: float32 NCHW in [0, 1]
    (``uint8 / 255``) for images, int32 token rows for text (a Core ML ImageType gets the uint8 pixels back
    exactly: ``rint(x * 255)`` of these values is the original byte)."""
    if tower == "image":
        return np.ascontiguousarray(rows.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
    return np.ascontiguousarray(rows, dtype=np.int32)


__all__ = ["DIR", "MANIFEST", "IMAGE_ROWS", "TEXT_ROWS", "write", "read", "tolerance", "model_input", "tier"]
