"""The sample apps' shared Kotlin code (examples/android/shared) and the vectors it is tested against.

* The committed vectors (examples/shared/vectors) must be what ``mc2export app-vectors`` writes today:
  a tokenizer or preprocessing change in Python shows up here first.
* ``run_jvm_tests.sh`` compiles the Kotlin sources with ``kotlinc`` (1.3+) once per run and runs their JUnit
  tests: tokenizer id-for-id on every vector, preprocessing byte-for-byte (PIL's resampling port), EXIF,
  config parsing, labels, zero-shot math, the photo index (the shared index vectors of
  mc2export.appindex, a writer killed with SIGKILL mid-append) and the benchmark document -- which is then
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
FIXTURES = REPO / "examples" / "shared" / "fixtures"
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


def test_committed_fixtures_are_current(tmp_path):
    """examples/shared/fixtures (the verify/ fixture bundle and the tokenizer slice the Swift tests run on by
    default) is what tests/app_fixtures.py writes, and the slice tokenizes every vector string as the full
    vocabulary does."""
    from app_fixtures import slice_ids, write_fixtures

    fresh = write_fixtures(tmp_path / "f")
    stale = [rel for rel in fresh if not (FIXTURES / rel).is_file() or (FIXTURES / rel).read_bytes() != (tmp_path / "f" / rel).read_bytes()]
    extra = [str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*") if p.is_file() and str(p.relative_to(FIXTURES)) not in fresh]
    assert not stale and not extra, (f"examples/shared/fixtures is stale ({stale[:5]}, extra {extra[:5]}): run "
                                     "`python tests/app_fixtures.py` and commit the result")
    sl = json.loads((FIXTURES / "tokenizer_slice.json").read_text(encoding="utf-8"))
    text = json.loads((VECTORS / "text.json").read_text(encoding="utf-8"))
    for e in text["texts"]:
        want = e["ids"] if e["exact"] else e["portable_ids"]
        assert slice_ids(sl, e["clean"] if e["exact"] else e["portable_clean"]) == want, e["text"]
    assert (FIXTURES / "tokenizer_slice.json").stat().st_size < 200_000


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
    # the message of the reading rules (mc2export.export.reading) or of the older reader
    assert r.exit_code == 2 and ("not an mc2export bundle" in r.output or "not an mc2export-bundle config" in r.output), r.output
    assert not (tmp_path / "v").exists()  # nothing written on error


def test_portable_cleaning_reference():
    from mc2export.appvectors import portable_clean
    from mc2export.tokenizer import clean_text

    for s in ["Tom &amp; Jerry", "dog\u2019s \u201cbest\u201d", "\ufb01sh", "\uff2c\uff2f\uff35\uff24", "  a \t b\n"]:
        assert portable_clean(s) == clean_text(s)
    assert portable_clean("caf\u00c3\u00a9") != clean_text("caf\u00c3\u00a9")  # mojibake: python-only


def test_kotlin_shared_code_matches_python(tmp_path):
    if shutil.which("kotlinc") is None:
        pytest.skip("kotlinc not found: `apt-get install kotlin junit4` (CI installs it in .ci/run)")
    from mc2export.bench.schema import validate
    from mc2export.bench.stats import summarize
    from mc2export.tokenizer import get_tokenizer

    get_tokenizer().export_vocab(tmp_path / "vocab")  # the tokenizer loads vocab.json + merges.txt, as in a bundle
    bench = tmp_path / "bench.json"
    from bundle_v2 import v2_copy

    verify = v2_copy(FIXTURES / "verify-bundle", tmp_path / "verify-bundle")  # a no-op copy once the fixture is v2
    env = dict(os.environ, MC2_VOCAB=str(tmp_path / "vocab"), MC2_BENCH_OUT=str(bench), MC2_VERIFY=str(verify))
    r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=900, cwd=REPO)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert "OK (" in r.stdout, out[-3000:]
    assert "171 exact strings match Python" in r.stdout or "exact strings match Python" in r.stdout
    assert "verify-report: " in r.stdout and "bounded-decode 4000x3000" in r.stdout, out[-3000:]
    # the photo index: the shared vectors read, searched and written as Python does, and a SIGKILLed appender
    assert "index-vectors: 58 live photos, 15 searches as Python" in r.stdout, out[-3000:]
    assert r.stdout.count("kill-during-append round") == 3, out[-3000:]
    assert "Tests run" not in r.stdout and "Ignored" not in r.stdout  # nothing failed, nothing skipped
    print("\n".join(line for line in r.stdout.splitlines() if line.startswith(("bounded-decode", "verify-report", "index-", "kill-"))))
    # the Kotlin benchmark document is the harness's own format, with the harness's statistics
    doc = json.loads(bench.read_text(encoding="utf-8"))
    validate(doc, what="the Kotlin benchmark document")
    for tower in doc["results"][0]["towers"].values():
        ref = summarize(tower["samples_ms"])
        for k in ("p50", "p90", "p99", "mean", "trimmed_mean", "min", "max", "std"):
            assert tower["stats"][k] == pytest.approx(ref[k], abs=2e-4), k
