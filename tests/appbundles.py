"""Bundles for the sample-app tests (web, Kotlin): exported once per session (tests/conftest.py), and
verification vectors written per the contract of docs/bundle.md ("verify/: verification vectors").

``ensure_verify`` leaves a ``verify/`` folder the exporter wrote alone; for a bundle without one it writes
it from the folded PyTorch model, as the contract says (probe images after resize + center crop, token
rows, fp32 embeddings, the precision tier's tolerance), and lists the files in config.json. It is the
stand-in the app readers are tested against until every export writes the folder itself.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

import numpy as np

IMAGE_ROWS = (0, 5, 10, 15)


def _text_rows(texts) -> list:
    """A label prompt, a caption, the empty string, a text over 77 tokens, a literal <end_of_text>, non-ASCII."""
    pick = [0, 8, texts.index(""), next(i for i, t in enumerate(texts) if len(t) > 300),
            next(i for i, t in enumerate(texts) if "<end_of_text>" in t), next(i for i, t in enumerate(texts) if not t.isascii())]
    return pick


def write_verify(bundle: Path, checkpoint: Path, *, image_rows=IMAGE_ROWS) -> dict:
    """Write ``bundle/verify/`` from the folded model of ``checkpoint``; returns the manifest."""
    import torch

    import mc2export
    from mc2export import cards
    from mc2export.export import validate as V

    bundle = Path(bundle)
    cfg = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
    card = cards.get_card(cfg["variant"])
    probe = V.probe_inputs(card)
    texts = V.probe_texts()
    model = mc2export.create_model(cfg["variant"], checkpoint=checkpoint, fold=True).eval()
    normalized = bool(cfg["output_normalized"])
    d = bundle / "verify"
    d.mkdir(exist_ok=True)
    towers, files = {}, {}

    def put(name: str, arr: np.ndarray, dtype: str) -> dict:
        data = np.ascontiguousarray(arr, dtype={"uint8": "u1", "int32": "<i4", "float32": "<f4"}[dtype]).tobytes()
        (d / name).write_bytes(data)
        files[f"verify/{name}"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        return {"file": f"verify/{name}", "dtype": dtype, "shape": list(arr.shape)}

    with torch.no_grad():
        if "image" in cfg["models"]:
            rows = list(image_rows)
            u8 = probe["image_uint8"][rows]
            x = torch.from_numpy(u8).permute(0, 3, 1, 2).float().div(255)
            exp = model.encode_image(x, normalize=normalized).numpy()
            towers["image"] = {"inputs": {**put("image_inputs.u8", u8, "uint8"), "layout": "NHWC RGB"},
                               "expected": put("image_expected.f32", exp, "float32"), "probe_rows": rows}
        if "text" in cfg["models"]:
            rows = _text_rows(texts)
            tok = probe["text"][rows]
            exp = model.encode_text(tok.long(), normalize=normalized).numpy()
            towers["text"] = {"inputs": put("text_tokens.i32", tok.numpy(), "int32"),
                              "expected": put("text_expected.f32", exp, "float32"),
                              "texts": [texts[i] for i in rows], "probe_rows": rows}
    precision = cfg.get("precision", "fp32")
    tier = precision if precision in ("fp32", "fp16") else "compressed"
    manifest = {"version": 1, "byte_order": "little", "reference": "folded PyTorch model, fp32",
                "precision": precision, "tier": tier, "tolerance": V.tolerance_for(precision),
                "output_normalized": normalized, "embed_dim": cfg["embed_dim"], "towers": towers}
    data = (json.dumps(manifest, indent=1) + "\n").encode()
    (d / "manifest.json").write_bytes(data)
    files["verify/manifest.json"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    cfg.setdefault("files", {}).update(files)
    (bundle / "config.json").write_text(json.dumps(cfg, indent=1), encoding="utf-8")
    return manifest


def ensure_verify(bundle: Path, checkpoint: Optional[Path]) -> Path:
    """``bundle`` with a verify/ folder: the exporter's when it wrote one, else ours (see the module doc)."""
    if not (Path(bundle) / "verify" / "manifest.json").is_file():
        write_verify(bundle, checkpoint)
    return Path(bundle)


def export_onnx(variant: str, checkpoint: Path, out: Path) -> Path:
    """An fp32 ONNX bundle as a user makes it (`mc2export onnx --variant V --checkpoint F --out DIR`)."""
    from typer.testing import CliRunner

    from mc2export.cli import app

    r = CliRunner().invoke(app, ["onnx", "--variant", variant, "--checkpoint", str(checkpoint), "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output[-3000:]
    return out


def lazy_onnx_bundles(checkpoints: dict, root: Path) -> dict:
    """{"s0" | "mcs0": bundle folder}, each exported (with verify/) on first use: see tests/conftest.py."""
    from golden import EXPORT_CASES

    class Lazy(dict):
        def __missing__(self, key):
            out = export_onnx(EXPORT_CASES[key][1], checkpoints[key], Path(root) / key)
            self[key] = ensure_verify(out, checkpoints[key])
            return self[key]

    return Lazy()
