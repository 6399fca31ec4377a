"""benchmarks/arm_verify.py without emulation: its requirement filtering and its results files (the script
itself needs root, qemu-user-static and ~2 hours; it is not part of CI)."""
from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import arm_verify as A  # noqa: E402


def test_executorch_requirements_drop_packages_without_arm_wheels(tmp_path):
    meta = "\n".join(["Name: executorch", "Requires-Dist: coremltools==9.0; platform_system == \"Darwin\"",
                      "Requires-Dist: hydra-core>=1.3.0", "Requires-Dist: omegaconf>=2.3.0",
                      "Requires-Dist: torch>=2.13.0a0", "Requires-Dist: numpy>=2.0.0",
                      "Requires-Dist: pytest; extra == \"test\"", ""])
    with zipfile.ZipFile(tmp_path / "executorch-1.4.1-cp311-cp311-manylinux_2_28_aarch64.whl", "w") as z:
        z.writestr("executorch-1.4.1.dist-info/METADATA", meta)
    assert A.executorch_requirements(tmp_path) == ["torch>=2.13.0a0", "numpy>=2.0.0"]
    assert "manylinux_2_27_aarch64" in A.PLATFORMS and "manylinux2014_aarch64" in A.PLATFORMS


def _report(cos, verdict="passed"):
    return {"status": verdict, "tolerance": {"cosine_min": 0.999}, "runtime": {"name": "onnxruntime"},
            "device": {"arch": "aarch64", "cpu_features_detected": ["ASIMD", "ASIMDHP"]},
            "towers": {t: {"cosine_min": cos, "max_abs_over_std": 1e-3, "verdict": verdict, "seconds": {"run": 50.0}}
                       for t in ("image", "text")}}


def test_results_files(tmp_path):
    cpus = ["max", "cortex-a76"]
    names = [A.bundle_name(f, p) for f, p in A.BUNDLES]
    runs = {(c, n): {"exit_code": 0, "wall_seconds": 300.0, "report": _report(0.99998)} for c in cpus for n in names}
    runs["cortex-a76", names[4]] = {"exit_code": 3, "wall_seconds": 310.0, "report": _report(0.98, "failed")}
    checks = {"runs": runs, "host": {n: {"exit_code": 0, "report": _report(0.9999999)} for n in names},
              "qemu": "qemu 10", "source": "abc"}
    steps = A.Steps(tmp_path / "root", set())
    steps.data = {"debootstrap": {"seconds": 23.0, "finished": "x"}}
    A.write_results(tmp_path / "out", cpus, checks, steps, threads=2)
    doc = json.loads((tmp_path / "out" / "arm_verify.json").read_text())
    assert len(doc["runs"]) == 2 * len(A.BUNDLES) == 18 and doc["all_hold"] is False and doc["cpu_features_detected"]["max"]
    md = (tmp_path / "out" / "arm_verify.md").read_text()
    assert md.count("| cortex-a76 | executorch | fp16 | image | 0.9800000 |") == 1
    assert "| debootstrap | 23 |" in md and "NOT all hold" in md and "qemu 10" in md


def test_bundle_selection_includes_litert():
    """LiteRT bundles (fp32, int8, int8-static) are checked beside ONNX and ExecuTorch; --formats selects; the root gains
    ai-edge-litert's aarch64 wheel in an environment step of its own (roots built before it gain it too)."""
    import pytest

    assert A.select_bundles(["litert"]) == [("litert", "fp32"), ("litert", "int8"), ("litert", "int8-static")]
    assert A.select_bundles(["onnx", "litert", "onnx"]) == [("onnx", "fp32"), ("onnx", "fp16"), ("onnx", "int8"),
                                                          ("litert", "fp32"), ("litert", "int8"),
                                                          ("litert", "int8-static")]
    assert A.select_bundles(list(A.PRECISIONS)) == A.BUNDLES and ("litert", "int8") in A.BUNDLES
    with pytest.raises(SystemExit, match="--formats takes"):
        A.select_bundles(["tflite"])
    assert A.LITERT.startswith("ai-edge-litert==") and "litert" in A.ENV_STEPS
    assert A.ENV_STEPS.index("litert") < A.ENV_STEPS.index("mc2export")
    assert A.bundle_name("litert", "int8") == "mobileclip2-s0-litert-int8"
