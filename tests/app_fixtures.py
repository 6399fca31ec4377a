"""Small committed fixtures for the sample apps' tests (examples/shared/fixtures), written here:

* ``verify-bundle/``: an ONNX-bundle folder (config.json, R = 16, D = 8) whose ``verify/`` follows
  docs/bundle.md and whose "models" are linear maps kept in ``fake_model/`` (expected = W @ model input:
  image float32 NCHW u8/255, text the token ids), so a port's verify/ reader is checked -- input conversion
  included -- without running a network. Used by the Kotlin VerifyTest and the Swift VerifyTests.
* ``tokenizer_slice.json``: the part of CLIP's vocabulary that tokenizing every string of
  examples/shared/vectors/text.json (and the Swift label tests' prompts) touches -- the byte symbols, the
  merges applied (in rank order) and their ids -- so the Swift tokenizer tests run from committed files
  (the full vocab.json + merges.txt is 1.5 MB). BPE on the slice equals BPE on the full table for these
  strings: a merge that is never applied never wins, so leaving it out changes nothing.

``python tests/app_fixtures.py`` rewrites them (tests/test_kotlin_shared.py checks they are current).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
from mc2export.export.reading import write_config

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "examples" / "shared" / "fixtures"
VECTORS = REPO / "examples" / "shared" / "vectors"
LABEL_TEST_LABELS = ("cat", " ".join(f"word{i}" for i in range(1, 101)))  # VectorTests.testLabelsAndTruncation


def write_verify_fixture(folder: Path, rng_seed: int = 0) -> Path:
    """A small ONNX-bundle folder (config.json, R = 16, D = 8) with verify/ per docs/bundle.md whose "models"
    are linear maps kept in fake_model/: expected = W @ model input (image: float32 NCHW u8/255; text: the
    token ids), so the JVM test checks the input conversion its own code does."""
    import hashlib

    rng = np.random.default_rng(rng_seed)
    r, d, n, m = 16, 8, 2, 3
    images = rng.integers(0, 256, (n, r, r, 3), dtype=np.uint8)
    tokens = np.zeros((m, 77), np.int32)
    for i, k in enumerate((5, 12, 77)):
        tokens[i, :k] = rng.integers(1, 49406, k)
        tokens[i, 0], tokens[i, k - 1] = 49406, 49407
    w_img = rng.normal(0, 0.05, (d, 3 * r * r)).astype(np.float32)
    w_txt = rng.normal(0, 1e-4, (d, 77)).astype(np.float32)
    x = images.transpose(0, 3, 1, 2).reshape(n, -1).astype(np.float32) / np.float32(255)
    exp_img = (w_img.astype(np.float64) @ x.astype(np.float64).T).T.astype(np.float32)
    exp_txt = (w_txt.astype(np.float64) @ tokens.astype(np.float64).T).T.astype(np.float32)
    (folder / "verify").mkdir(parents=True)
    (folder / "fake_model").mkdir()
    files = {}
    for name, arr in (("image_inputs.u8", images), ("image_expected.f32", exp_img), ("text_tokens.i32", tokens),
                      ("text_expected.f32", exp_txt)):
        data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        (folder / "verify" / name).write_bytes(data)
        files[f"verify/{name}"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    w_img.astype("<f4").tofile(folder / "fake_model" / "image_w.f32")
    w_txt.astype("<f4").tofile(folder / "fake_model" / "text_w.f32")
    manifest = {"version": 1, "byte_order": "little", "reference": "fake linear model", "precision": "fp32", "tier": "fp32",
                "tolerance": {"cosine_min": 0.99999, "max_abs_over_std": 1e-4}, "output_normalized": False, "embed_dim": d,
                "towers": {"image": {"inputs": {"file": "verify/image_inputs.u8", "dtype": "uint8", "shape": [n, r, r, 3],
                                                "layout": "NHWC RGB"},
                                     "expected": {"file": "verify/image_expected.f32", "dtype": "float32", "shape": [n, d]},
                                     "probe_rows": [0, 1]},
                           "text": {"inputs": {"file": "verify/text_tokens.i32", "dtype": "int32", "shape": [m, 77]},
                                    "expected": {"file": "verify/text_expected.f32", "dtype": "float32", "shape": [m, d]},
                                    "texts": ["a", "b", "c"], "probe_rows": [0, 1, 2]}}}
    data = json.dumps(manifest).encode()
    (folder / "verify" / "manifest.json").write_bytes(data)
    files["verify/manifest.json"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    cfg = {"format": "mc2export-bundle", "bundle_version": 2, "runtime": "onnx", "variant": "mobileclip2-s0", "precision": "fp32",
           "batch": 1, "preprocess": {"resolution": r, "resize": "shortest", "crop": "center", "interpolation": "bilinear",
                                      "mean": [0, 0, 0], "std": [1, 1, 1]},
           "tokenizer": {"vocab": "vocab.json", "merges": "merges.txt", "context_length": 77}, "embed_dim": d,
           "logit_scale": 100.0, "output_normalized": False,
           "models": {"image": {"file": "image.onnx", "input": {"range": [0.0, 1.0], "normalization": "inside the model"}},
                      "text": {"file": "text.onnx"}}, "files": files}
    write_config(folder, cfg)
    return folder


def _pieces(cleaned: str) -> List[str]:
    from mc2export.appvectors import _tokenizer
    from mc2export.tokenizer import _PATTERN

    table = _tokenizer()._tables.latin1_to_unicode
    return [p.encode("utf-8").decode("latin-1").translate(table) for p in _PATTERN.findall(cleaned)]


def _bpe(piece: str, ranks: Dict[tuple, int], applied=None) -> List[str]:
    from mc2export.export.validate import minimal_bpe

    return [piece] if piece in ("<start_of_text>", "<end_of_text>") else minimal_bpe(ranks, piece, applied)


def tokenizer_slice() -> dict:
    from mc2export.appvectors import _tokenizer
    from mc2export.zeroshot import SIMPLE_TEMPLATES

    data = _tokenizer()._tables
    text = json.loads((VECTORS / "text.json").read_text(encoding="utf-8"))
    cleaned = [e["clean"] if e["exact"] else e["portable_clean"] for e in text["texts"]]
    cleaned += [t.format(label).lower() for label in LABEL_TEST_LABELS for t in SIMPLE_TEMPLATES]
    applied: set = set()
    for c in cleaned:
        for piece in _pieces(c):
            _bpe(piece, data.ranks, applied)
    merges = sorted(applied, key=lambda m: data.ranks[m])
    symbols = list(data.byte_encoder.values())
    tokens = symbols + [s + "</w>" for s in symbols] + [a + b for a, b in merges] + ["<start_of_text>", "<end_of_text>"]
    return {"note": "CLIP BPE restricted to what examples/shared/vectors/text.json needs (tests/app_fixtures.py): "
                    "merges in rank order, ids as in the full vocabulary",
            "merges": [list(m) for m in merges], "vocab": {t: data.encoder[t] for t in tokens}}


def slice_ids(sl: dict, cleaned: str) -> List[int]:
    """[SOT, ids..., EOT] (truncated to 77) for cleaned text, with the slice alone."""
    ranks = {tuple(m): i for i, m in enumerate(sl["merges"])}
    ids = [sl["vocab"][s] for p in _pieces(cleaned) for s in _bpe(p, ranks)]
    row = [49406, *ids, 49407]
    return row if len(row) <= 77 else row[:76] + [49407]


def write_fixtures(root: Path = FIXTURES) -> List[str]:
    """Write every fixture under ``root``; returns their paths relative to it."""
    import shutil

    root = Path(root)
    if (root / "verify-bundle").exists():
        shutil.rmtree(root / "verify-bundle")
    root.mkdir(parents=True, exist_ok=True)
    write_verify_fixture(root / "verify-bundle")
    (root / "tokenizer_slice.json").write_text(json.dumps(tokenizer_slice(), ensure_ascii=False, indent=0) + "\n",
                                               encoding="utf-8")
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    for rel in write_fixtures(Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURES):
        print(rel)
