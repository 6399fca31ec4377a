"""A real, tiny ONNX bundle in a second (no export, no torch): two one-MatMul towers with the names, shapes and
verify/ vectors an export writes, for the tests of the reading rules (tests/test_reading_rules.py).
``reseal(folder)``: recompute the file table and config.json.sha256 -- what an attacker who edits a bundle
can always do, so only the reading rules (never the checksums) must catch the edit."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mc2export.export import vectors
from mc2export.export.bundle import file_table
from mc2export.export.reading import BUNDLE_VERSION, write_config

R, D, C = 4, 8, 77


def _model(path: Path, tower: str, seed: int) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    if tower == "image":
        x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, R, R])
        w = numpy_helper.from_array(rng.normal(size=(3 * R * R, D)).astype(np.float32), "w")
        nodes = [helper.make_node("Flatten", ["image"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["embedding"])]
    else:
        x = helper.make_tensor_value_info("tokens", TensorProto.INT32, [1, C])
        w = numpy_helper.from_array(rng.normal(size=(C, D)).astype(np.float32) * 1e-4, "w")
        nodes = [helper.make_node("Cast", ["tokens"], ["flat"], to=TensorProto.FLOAT),
                 helper.make_node("MatMul", ["flat", "w"], ["embedding"])]
    y = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, D])
    graph = helper.make_graph(nodes, tower, [x], [y], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {s.get_inputs()[0].name: row[None]})[0] for row in x])


def make(folder: Path, seed: int = 0) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    u8 = rng.integers(0, 256, (16, R, R, 3), dtype=np.uint8)
    tokens = rng.integers(0, 49408, (24, C), dtype=np.int32)
    models = {}
    for tower, inp in (("image", {"name": "image", "dtype": "float32", "shape": [1, 3, R, R]}),
                       ("text", {"name": "tokens", "dtype": "int32", "shape": [1, C]})):
        _model(folder / f"{tower}.onnx", tower, seed + (tower == "text"))
        models[tower] = {"file": f"{tower}.onnx", "files": [f"{tower}.onnx"], "inputs": [inp],
                         "outputs": [{"name": "embedding", "dtype": "float32", "shape": [1, D]}]}
    ref_img = _run(folder / "image.onnx", vectors.model_input("image", u8))
    ref_txt = _run(folder / "text.onnx", tokens)
    vectors.write(folder, precision="fp32", tolerance={"cosine_min": 0.99999, "max_abs_over_std": 1e-4},
                  normalized=False, embed_dim=D, image=(u8, ref_img), text=(tokens, ref_txt, [f"t{i}" for i in range(24)]))
    (folder / "validation.json").write_text('{"passed": true}\n')
    cfg = {"format": "mc2export-bundle", "bundle_version": BUNDLE_VERSION, "runtime": "onnx",
           "variant": "mobileclip2-s0", "precision": "fp32", "batch": 1, "resolution": R,
           "preprocess": {"resolution": R, "resize": "shortest", "crop": "center", "interpolation": "bilinear",
                          "mean": [0, 0, 0], "std": [1, 1, 1]},
           "context_length": C, "embed_dim": D, "output_normalized": False, "logit_scale": 100.0,
           "models": models, "weights": {"source": "random", "random_weights": True}, "validation": "validation.json",
           "files": file_table(folder)}
    write_config(folder, cfg)
    return folder


def config(folder: Path) -> dict:
    return json.loads((Path(folder) / "config.json").read_text())


def manifest(folder: Path) -> dict:
    return json.loads((Path(folder) / vectors.MANIFEST).read_text())


def reseal(folder: Path, cfg: dict = None) -> None:
    """Recompute config.json's file table and its sha256 file (after an edit, on purpose)."""
    cfg = cfg if cfg is not None else config(folder)
    cfg["files"] = file_table(folder)
    write_config(folder, cfg)


def edit_manifest(folder: Path, fn) -> None:
    m = manifest(folder)
    fn(m)
    (Path(folder) / vectors.MANIFEST).write_text(json.dumps(m))
    reseal(folder)
