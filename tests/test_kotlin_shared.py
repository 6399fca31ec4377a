"""The sample apps' shared Kotlin code (examples/android/shared) and the vectors it is tested against.

* The committed vectors (examples/shared/vectors) must be what ``mc2export app-vectors`` writes today:
  a tokenizer or preprocessing change in Python shows up here first.
* ``run_jvm_tests.sh`` compiles the Kotlin sources with ``kotlinc`` (1.3+) once per run and runs their JUnit
  tests: tokenizer id-for-id on every vector, preprocessing byte-for-byte (PIL's resampling port), EXIF,
  config parsing, labels, zero-shot math, the photo index and the benchmark document -- which is then
  validated here against the harness's schema (mc2export/bench/schema.json) and its statistics.
  Skipped only when ``kotlinc`` is not installed (CI installs it: .ci/run).
"""
from __future__ import annotations

import json
import os

import numpy as np
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO / "examples" / "shared" / "vectors"
SCRIPT = REPO / "examples" / "android" / "shared" / "run_jvm_tests.sh"


def _content(path: Path) -> str:
    """What must not change: JSON and raw bytes as they are; PNGs by decoded pixels (zlib versions differ);
    the JPEG (encoder versions differ) by size and EXIF orientation only."""
    import hashlib

    import numpy as np
    from PIL import Image

    if path.suffix == ".png":
        with Image.open(path) as im:
            return hashlib.sha256(np.asarray(im).tobytes()).hexdigest()
    if path.suffix == ".jpg":
        with Image.open(path) as im:
            return f"{im.size} {im.getexif().get(0x0112)}"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_committed_vectors_are_current(tmp_path):
    from mc2export.appvectors import write_vectors

    fresh = write_vectors(tmp_path / "v")
    committed = json.loads((VECTORS / "manifest.json").read_text(encoding="utf-8"))
    stale = sorted(k for k in fresh["files"]
                   if k not in committed["files"] or _content(VECTORS / k) != _content(tmp_path / "v" / k))
    extra = sorted(set(committed["files"]) - set(fresh["files"]) - {"bundle_expected.json"})
    assert not stale and not extra, (f"examples/shared/vectors is stale ({stale[:5]} changed, {extra[:5]} extra): run "
                                     "`mc2export app-vectors --out examples/shared/vectors` and commit the result")
    for rel, meta in committed["files"].items():  # and the committed files are the ones listed
        p = VECTORS / rel
        assert p.is_file() and p.stat().st_size == meta["bytes"], rel
    assert committed["total_bytes"] < 2 * 1024 * 1024


def test_vectors_cover_what_the_apps_must_match():
    text = json.loads((VECTORS / "text.json").read_text(encoding="utf-8"))
    c = text["counts"]
    assert c["total"] >= 150 and c["exact"] >= 150 and c["python_only"] >= 3 and c["truncated"] >= 3
    assert {t["note"] for t in text["texts"] if not t["exact"]} >= {"mojibake (ftfy repairs it)"}
    images = json.loads((VECTORS / "images.json").read_text(encoding="utf-8"))
    combos = {(k["resolution"], k["interpolation"]) for k in images["cases"]}
    from mc2export import cards

    for vid in cards.list_variants():  # every preprocessing a card uses is covered
        pre = cards.get_card(vid)["preprocess"]
        assert (pre["resolution"], pre["interpolation"]) in combos, vid
    assert {i["orientation"] for i in images["images"]} >= {1, 3, 6}
    assert any(i["mode"] == "RGBA" for i in images["images"])


def test_app_vectors_cli_errors(tmp_path):
    from typer.testing import CliRunner

    from mc2export.cli import app

    r = CliRunner().invoke(app, ["app-vectors", "--out", str(tmp_path / "v"), "--bundle", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "not found" in r.output
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text('{"format": "other"}')
    r = CliRunner().invoke(app, ["app-vectors", "--out", str(tmp_path / "v"), "--bundle", str(tmp_path / "b")])
    assert r.exit_code == 2 and "not an mc2export bundle" in r.output
    assert not (tmp_path / "v").exists()  # nothing written on error


def test_portable_cleaning_reference():
    from mc2export.appvectors import portable_clean
    from mc2export.tokenizer import clean_text

    for s in ["Tom &amp; Jerry", "dog\u2019s \u201cbest\u201d", "\ufb01sh", "\uff2c\uff2f\uff35\uff24", "  a \t b\n"]:
        assert portable_clean(s) == clean_text(s)
    assert portable_clean("caf\u00c3\u00a9") != clean_text("caf\u00c3\u00a9")  # mojibake: python-only


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
    cfg = {"format": "mc2export-bundle", "bundle_version": 1, "runtime": "onnx", "variant": "mobileclip2-s0", "precision": "fp32",
           "batch": 1, "preprocess": {"resolution": r, "resize": "shortest", "crop": "center", "interpolation": "bilinear",
                                      "mean": [0, 0, 0], "std": [1, 1, 1]},
           "tokenizer": {"vocab": "vocab.json", "merges": "merges.txt", "context_length": 77}, "embed_dim": d,
           "logit_scale": 100.0, "output_normalized": False,
           "models": {"image": {"file": "image.onnx", "input": {"range": [0.0, 1.0], "normalization": "inside the model"}},
                      "text": {"file": "text.onnx"}}, "files": files}
    (folder / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return folder


def test_kotlin_shared_code_matches_python(tmp_path):
    if shutil.which("kotlinc") is None:
        pytest.skip("kotlinc not found: `apt-get install kotlin junit4` (CI installs it in .ci/run)")
    from mc2export.bench.schema import validate
    from mc2export.bench.stats import summarize
    from mc2export.tokenizer import get_tokenizer

    get_tokenizer().export_vocab(tmp_path / "vocab")  # the tokenizer loads vocab.json + merges.txt, as in a bundle
    bench = tmp_path / "bench.json"
    verify = write_verify_fixture(tmp_path / "verify-bundle")
    env = dict(os.environ, MC2_VOCAB=str(tmp_path / "vocab"), MC2_BENCH_OUT=str(bench), MC2_VERIFY=str(verify))
    r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=900, cwd=REPO)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert "OK (" in r.stdout, out[-3000:]
    assert "171 exact strings match Python" in r.stdout or "exact strings match Python" in r.stdout
    assert "verify-report: " in r.stdout and "bounded-decode 4000x3000" in r.stdout, out[-3000:]
    assert "Tests run" not in r.stdout and "Ignored" not in r.stdout  # nothing failed, nothing skipped
    print("\n".join(line for line in r.stdout.splitlines() if line.startswith(("bounded-decode", "verify-report"))))
    # the Kotlin benchmark document is the harness's own format, with the harness's statistics
    doc = json.loads(bench.read_text(encoding="utf-8"))
    validate(doc, what="the Kotlin benchmark document")
    for tower in doc["results"][0]["towers"].values():
        ref = summarize(tower["samples_ms"])
        for k in ("p50", "p90", "p99", "mean", "trimmed_mean", "min", "max", "std"):
            assert tower["stats"][k] == pytest.approx(ref[k], abs=2e-4), k
