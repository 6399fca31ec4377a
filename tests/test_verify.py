"""``mc2export verify``: a bundle's models on its verification vectors (``verify/``), in this machine's runtime.

The real runs use the session's MobileCLIP2-S0 bundles (``s0_bundles`` in conftest: ONNX with both towers,
ExecuTorch with the text tower). The failure case alters the ONNX image tower's weights *and* rewrites the
checksums in ``config.json`` to match: the checksums then pass and only the vectors can catch it."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from mc2export.cli import main
from mc2export.export import vectors
from mc2export.export.bundle import file_table
from mc2export.export.reading import write_config


def run(capsys, *argv):
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def linked_copy(src: Path, dst: Path) -> Path:
    """A copy of a bundle whose files are hard links (cheap); replace a file with os.replace, never in place."""
    shutil.copytree(src, dst, copy_function=os.link)
    return dst


def rewrite_checksums(folder: Path) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg["files"] = file_table(folder)
    write_config(folder, cfg)  # never in place: it may be a hard link


def fake_bundle(folder: Path, fmt: str, towers=("image", "text"), precision="fp32", delegate=None) -> Path:
    """Stand-in model files (never run) with real vectors: for the paths that stop before a model loads."""
    folder.mkdir(parents=True)
    ext = {"onnx": "onnx", "executorch": "pte", "coreml": "mlpackage"}[fmt]
    models = {}
    for t in towers:
        (folder / f"{t}.{ext}").write_bytes(b"stand-in")
        models[t] = {"file": f"{t}.{ext}", "files": [f"{t}.{ext}"], **({"delegate": delegate} if delegate else {})}
    rng = np.random.default_rng(0)
    vectors.write(folder, precision=precision, tolerance={"cosine_min": 0.999}, normalized=True, embed_dim=8,
                  image=(rng.integers(0, 256, (16, 4, 4, 3), dtype=np.uint8), rng.normal(size=(16, 8)))
                  if "image" in towers else None,
                  text=(rng.integers(0, 49408, (24, 77), dtype=np.int32), rng.normal(size=(24, 8)),
                        [f"t{i}" for i in range(24)]) if "text" in towers else None)
    cfg = {"format": "mc2export-bundle", "bundle_version": 2, "runtime": fmt, "variant": "mobileclip2-s0",
           "precision": precision, "batch": 1, "resolution": 4, "context_length": 77, "embed_dim": 8, "models": models,
           "weights": {"source": "random", "random_weights": True}, "validation": "validation.json"}
    (folder / "validation.json").write_text("{}")
    write_config(folder, cfg)
    rewrite_checksums(folder)
    return folder


def test_fresh_onnx_bundle_passes(s0_bundles, tmp_path, capsys):
    code, out, err = run(capsys, "verify", s0_bundles["onnx"], "--json", tmp_path / "v.json")
    assert code == 0, err
    head, rule, image, text, tail = out.strip().splitlines()
    for col in ("tower", "runtime", "rows", "cosine min", "max-abs/std", "tolerance", "verdict"):
        assert col in head
    assert image.split()[:3] == ["image", "onnxruntime", "4"] and image.endswith("pass")
    assert text.split()[:3] == ["text", "onnxruntime", "6"] and "max-abs <= 1e-04 x std" in text
    assert "all towers hold" in tail
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["status"] == "passed" and doc["exit_code"] == 0 and doc["tier"] == "fp32"
    assert doc["runtime"]["name"] == "onnxruntime" and doc["runtime"]["version"]
    for tower, rows in (("image", 4), ("text", 6)):
        t = doc["towers"][tower]
        assert t["verdict"] == "passed" and t["rows"] == rows and len(t["cosine_per_row"]) == rows
        assert t["cosine_min"] >= 0.99999 and t["max_abs_over_std"] <= 1e-4
    assert doc["device"]["cpu_features_detected"]
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_fresh_executorch_bundle_passes(s0_bundles, capsys):
    code, out, err = run(capsys, "verify", s0_bundles["executorch"], "-q")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[2].split()[:3] == ["text", "executorch", "6"] and lines[2].endswith("pass")
    assert len(lines) == 4  # the bundle holds the text tower only: no image row


def test_altered_weights_fail_with_exit_3(s0_bundles, tmp_path, capsys):
    """Weights changed and config.json's checksums updated to match: the checksums pass, the vectors do not."""
    import onnx
    from onnx import numpy_helper

    b = linked_copy(s0_bundles["onnx"], tmp_path / "altered")
    model = onnx.load(str(b / "image.onnx"))
    rng = np.random.default_rng(0)
    for t in model.graph.initializer:  # every weight 20 % off (random weights: many branches are scaled ~1e-5)
        w = numpy_helper.to_array(t)
        if w.dtype == np.float32 and w.size >= 1000:
            t.CopyFrom(numpy_helper.from_array(w * (1 + 0.2 * rng.standard_normal(w.shape)).astype(w.dtype), t.name))
    onnx.save(model, str(b / "image.onnx.new"))
    os.replace(b / "image.onnx.new", b / "image.onnx")  # a new file: the shared bundle's link is untouched
    rewrite_checksums(b)
    code, out, err = run(capsys, "verify", b, "-q", "--json", tmp_path / "v.json")
    assert code == 3, err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("verify FAILED")]
    assert "image tower in onnxruntime" in line and "cosine min" in line and "x std" in line
    assert "tolerance cos >= 0.99999" in line
    assert "FAIL" in [r.split()[-1] for r in out.splitlines() if r.startswith("image")]
    assert [r.split()[-1] for r in out.splitlines() if r.startswith("text")] == ["pass"]
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["status"] == "failed" and doc["exit_code"] == 3 and not doc["passed"]
    assert doc["towers"]["image"]["cosine_min"] < 0.99999 and doc["towers"]["text"]["verdict"] == "passed"


def test_changed_file_without_new_checksum_is_bad_input(s0_bundles, tmp_path, capsys):
    b = linked_copy(s0_bundles["executorch"], tmp_path / "edited")
    exp = b / "verify" / "text_expected.f32"
    data = bytearray(exp.read_bytes())
    data[0] ^= 0xFF
    exp.unlink()
    exp.write_bytes(bytes(data))
    code, _, err = run(capsys, "verify", b)
    assert code == 2 and err.count("\n") == 2 and "does not match its config.json" in err  # progress + error


def test_bad_input_is_exit_2(tmp_path, capsys):
    code, _, err = run(capsys, "verify", tmp_path / "nothing-here")
    assert code == 2 and "bundle not found" in err
    b = fake_bundle(tmp_path / "b", "onnx")
    shutil.rmtree(b / "verify")
    rewrite_checksums(b)
    code, _, err = run(capsys, "verify", b)
    assert code == 2 and "no verification vectors" in err and "re-export" in err
    b2 = fake_bundle(tmp_path / "b2", "onnx")
    code, _, err = run(capsys, "verify", b2, "--runtime", "executorch")
    assert code == 2 and "runtime executorch cannot run a onnx bundle" in err
    code, _, err = run(capsys, "verify", b2, "--runtime", "torch")
    assert code == 2 and "cannot verify a bundle" in err


def test_coreml_on_linux_cannot_run_here(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.platform", "linux")
    b = fake_bundle(tmp_path / "ml", "coreml", precision="fp16")
    code, out, err = run(capsys, "verify", b, "--json", tmp_path / "v.json")
    assert code == 4 and out == "", (out, err)
    assert "cannot run here (nothing was verified)" in err and "Core ML prediction needs macOS" in err
    doc = json.loads((tmp_path / "v.json").read_text())
    assert doc["status"] == "cannot-run" and doc["passed"] is False and doc["towers"] == {}


def test_executorch_coreml_delegate_off_apple_cannot_run_here(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.platform", "linux")
    pytest.importorskip("executorch")
    b = fake_bundle(tmp_path / "etml", "executorch", towers=("text",), delegate="CoreML")
    code, _, err = run(capsys, "verify", b)
    assert code == 4 and "Core ML delegate, which runs on iOS/macOS only" in err


def test_runtime_not_installed_cannot_run_here(tmp_path, capsys, monkeypatch):
    from mc2export.bench import runtimes

    real = runtimes._installed
    monkeypatch.setattr(runtimes, "_installed", lambda m: False if m == "onnxruntime" else real(m))
    b = fake_bundle(tmp_path / "o", "onnx")
    code, _, err = run(capsys, "verify", b)
    assert code == 4 and "runtime onnxruntime is not installed here" in err


def test_check_outputs_per_tier():
    from mc2export.bench.verify import check_outputs

    rng = np.random.default_rng(1)
    ref = rng.normal(size=(4, 64))
    fp32 = {"cosine_min": 0.99999, "max_abs_over_std": 1e-4}
    assert check_outputs(ref + 1e-7, ref, fp32)["verdict"] == "passed"
    off = check_outputs(ref + rng.normal(0, 1e-3, ref.shape), ref, fp32)  # cosine ~1 - 5e-7: max-abs fails
    assert off["verdict"] == "failed" and off["cosine_min"] > 0.99999 and "x std >" in off["violations"][0]
    assert check_outputs(ref + rng.normal(0, 1e-3, ref.shape), ref, {"cosine_min": 0.999})["verdict"] == "passed"
    one_row = ref.copy()
    one_row[2] = -one_row[2]  # a single bad row fails the tower
    res = check_outputs(one_row, ref, {"cosine_min": 0.99})
    assert res["verdict"] == "failed" and res["cosine_per_row"][2] == pytest.approx(-1.0)
    assert check_outputs(ref[:3], ref, fp32)["verdict"] == "failed"  # wrong shape
    nan = ref.copy()
    nan[0, 0] = np.nan
    assert "non-finite outputs" in check_outputs(nan, ref, {"cosine_min": 0.99})["violations"]


def test_vectors_round_trip_and_model_input(tmp_path):
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (16, 5, 5, 3), dtype=np.uint8)
    m = vectors.write(tmp_path, precision="int8", tolerance={"cosine_min": 0.99}, normalized=False, embed_dim=4,
                      image=(u8, rng.normal(size=(16, 4))))
    assert m["tier"] == "compressed" and list(m["towers"]) == ["image"]
    assert sorted(p.name for p in (tmp_path / "verify").iterdir()) == ["image_expected.f32", "image_inputs.u8",
                                                                       "manifest.json"]
    back = vectors.read(tmp_path)
    got = back["towers"]["image"]["inputs"]["array"]
    assert got.dtype == np.uint8 and np.array_equal(got, u8[list(vectors.IMAGE_ROWS)])
    x = vectors.model_input("image", got)
    assert x.shape == (4, 3, 5, 5) and x.dtype == np.float32
    assert np.array_equal(np.rint(x * 255).astype(np.uint8).transpose(0, 2, 3, 1), got)  # Core ML gets the bytes
    (tmp_path / "verify" / "image_expected.f32").write_bytes(b"\0" * 12)
    with pytest.raises(Exception, match="unreadable verification vectors"):
        vectors.read(tmp_path)
