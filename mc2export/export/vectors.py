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


def tower_precision(manifest: dict, tower: str) -> str:
    """The precision ``tower`` was exported at: the bundle's, or for an OpenVINO ``auto`` bundle the one the
    tower names (the only case where a tower's entry is read for it)."""
    p = manifest["precision"]
    return manifest["towers"][tower].get("precision", p) if p == "auto" else p


def tolerance(manifest: dict, tower: str) -> dict:
    """The tolerance ``tower``'s outputs must hold, from its precision's tier in our code
    (:func:`.validate.tolerance_for`); the manifest's ``tolerance`` numbers are informational only."""
    from .validate import tolerance_for

    return tolerance_for(tower_precision(manifest, tower))


def read(bundle: Path, config: Optional[dict] = None) -> dict:
    """The manifest with each tower's ``inputs`` / ``expected`` arrays loaded (``"array"`` keys), checked
    under the reading rules (``docs/bundle.md``): paths inside the bundle, types, finite numbers, shapes
    consistent with each other and -- given the bundle's ``config`` (already read by
    :func:`.reading.read_config`) -- with its resolution, context length, embedding size, precision and
    towers (every tower with a model has vectors, and no others). A ``UserError`` naming the fix otherwise."""
    from .reading import MANIFEST_VERSION, TIERS, BadJSON, inside, loads

    bundle = Path(bundle)
    hint = "re-export the bundle with this mc2export (bundles written before verification vectors have none)"
    path = bundle / MANIFEST
    if not path.is_file():
        raise UserError(f"bundle '{bundle}' has no verification vectors ({MANIFEST} is missing): {hint}")

    def bad(why: str):
        raise UserError(f"bundle '{bundle}' has unreadable verification vectors ({why}): {hint}")

    try:
        manifest = loads(inside(bundle, MANIFEST, "the manifest").read_bytes())
    except (OSError, BadJSON) as e:
        bad(f"{MANIFEST}: {e}")
    if not isinstance(manifest, dict):
        bad(f"{MANIFEST} is not an object")
    if manifest.get("version") != MANIFEST_VERSION or isinstance(manifest.get("version"), bool):
        bad(f"{MANIFEST} version {str(manifest.get('version'))[:20]}: written by another mc2export")
    precision, towers = manifest.get("precision"), manifest.get("towers")
    if precision not in TIERS:
        bad(f"precision {str(precision)[:40]!r} is not one this mc2export knows")
    if not isinstance(towers, dict) or not towers or not set(towers) <= {"image", "text"}:
        bad("towers must name image and/or text")
    embed = manifest.get("embed_dim")
    if config is not None:
        from .reading import resolution

        if precision != config["precision"]:
            bad(f"precision {precision} but config.json says {config['precision']}")
        if set(towers) != set(config["models"]):
            bad(f"vectors for {', '.join(sorted(towers))} but models for {', '.join(sorted(config['models']))}: "
                "every tower must be checked")
        if config.get("embed_dim") is not None and embed != config["embed_dim"]:
            bad(f"embed_dim {embed} but config.json says {config.get('embed_dim')}")
    if not (isinstance(embed, int) and not isinstance(embed, bool) and 1 <= embed <= 8192):
        bad("embed_dim must be an integer in 1..8192")
    for tower, entry in towers.items():
        if not isinstance(entry, dict):
            bad(f"{tower}: not an object")
        if precision == "auto":
            if entry.get("precision", "int8") not in TIERS:
                bad(f"{tower}: precision {str(entry.get('precision'))[:40]!r} is not one this mc2export knows")
            chosen = ((config or {}).get("models", {}).get(tower, {}).get("openvino") or {}).get("precision")
            if chosen is not None and TIERS.get(chosen) != TIERS[entry.get("precision", "int8")]:
                # config.json records what auto chose (int8-bf16 is int8 at a bf16 hint: the same tier)
                bad(f"{tower}: precision {entry.get('precision')} but config.json says {chosen}")
        want_dtype = {"inputs": "uint8" if tower == "image" else "int32", "expected": "float32"}
        arrays = {}
        for part in ("inputs", "expected"):
            spec = entry.get(part)
            if not isinstance(spec, dict):
                bad(f"{tower}.{part}: not an object")
            if spec.get("dtype") != want_dtype[part]:
                bad(f"{tower}.{part}.dtype must be {want_dtype[part]}")
            shape = spec.get("shape")
            if not (isinstance(shape, list) and shape and len(shape) <= 4 and all(
                    isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 1 << 20 for n in shape)):
                bad(f"{tower}.{part}.shape must be a list of positive integers")
            arrays[part] = _load(inside(bundle, spec.get("file"), f"{MANIFEST} {tower}.{part}.file"),
                                 spec["dtype"], shape, bad)
        x, y = arrays["inputs"], arrays["expected"]
        n = x.shape[0]
        if not 1 <= n <= 10000 or y.shape != (n, embed):
            bad(f"{tower}: expected shape {list(y.shape)}, want [{n}, {embed}] for {n} input rows")
        if config is not None:
            if tower == "image":
                r = resolution(config)
                if x.ndim != 4 or x.shape[1:] != (r, r, 3):
                    bad(f"image inputs {list(x.shape)}, want [n, {r}, {r}, 3] for resolution {r}")
            else:
                c = config.get("context_length") or (config.get("tokenizer") or {}).get("context_length")
                if x.ndim != 2 or x.shape[1] != c:
                    bad(f"text tokens {list(x.shape)}, want [m, {c}] for context length {c}")
        if not np.isfinite(y).all():
            bad(f"{tower}: expected vectors hold NaN or Inf")
        spec_in, spec_out = entry["inputs"], entry["expected"]
        spec_in["array"], spec_out["array"] = x, y
    return manifest


def _load(path: Path, dtype: str, shape: Sequence[int], bad) -> np.ndarray:
    want = int(np.prod(shape)) * np.dtype(_DTYPES[dtype]).itemsize
    try:
        size = path.stat().st_size
        if not path.is_file() or size != want:
            bad(f"{path.name} holds {size} bytes, the manifest's {dtype} {list(shape)} needs {want}")
        data = np.fromfile(path, dtype=_DTYPES[dtype])
    except OSError as e:
        bad(f"{path.name}: {e.strerror or e}")
    return data.reshape(shape)


def model_input(tower: str, rows: np.ndarray) -> np.ndarray:
    """Vector rows as an ONNX / ExecuTorch / OpenVINO model takes them: float32 NCHW in [0, 1]
    (``uint8 / 255``) for images, int32 token rows for text (a Core ML ImageType gets the uint8 pixels back
    exactly: ``rint(x * 255)`` of these values is the original byte)."""
    if tower == "image":
        return np.ascontiguousarray(rows.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
    return np.ascontiguousarray(rows, dtype=np.int32)


__all__ = ["DIR", "MANIFEST", "IMAGE_ROWS", "TEXT_ROWS", "write", "read", "tolerance", "tower_precision", "model_input",
           "tier"]
