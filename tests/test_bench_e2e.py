"""``mc2export bench`` end to end on real MobileCLIP2-S0 bundles (ONNX Runtime and ExecuTorch, quick mode).

The bundles are built through the export commands with ``--random-weights`` (latency does not depend on
the weight values): ONNX with both towers, ExecuTorch with the text tower only (``--towers text``: lowering
both S0 towers to XNNPACK takes ~100 s on this 2-core machine, the text tower alone ~45 s).

Exporting costs 1.5-3.5 minutes here, so the bundles are kept between sessions in
``$TMPDIR/mc2export-bench-test-bundles/<key>``, where the key hashes every source file of the package and the
model cards (anything that could change an export) and the versions of torch / onnx / onnxruntime /
executorch: any change re-exports, and older keys are deleted. ``MC2EXPORT_BENCH_BUNDLES=DIR`` uses DIR
instead; ``MC2EXPORT_BENCH_BUNDLES=fresh`` exports into the session's temporary folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from mc2export.bench import schema
from mc2export.cli import main


def run(capsys, *argv):
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def _export(fmt: str, out: Path, towers: str) -> Path:
    if (out / "config.json").is_file():
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    with pytest.raises(SystemExit) as e:
        main([fmt, "--variant", "s0", "--random-weights", "--towers", towers, "--out", str(tmp), "--force",
              "--quiet"])
    assert e.value.code == 0, f"{fmt} export of S0 failed"
    try:
        os.replace(tmp, out)  # atomic: a concurrent session may have won the race
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


_NOT_EXPORT = {"cli.py", "zoo.py", "zeroshot.py", "hub.py", "appvectors.py"}


def _cache_key() -> str:
    from importlib import metadata

    import mc2export

    pkg = Path(mc2export.__file__).parent
    h = hashlib.sha256()
    # what an export depends on: the model code, the exporters, the cards (not the CLI, trainer, harness, ...)
    files = [p for p in pkg.glob("*.py") if p.name not in _NOT_EXPORT] + list((pkg / "export").rglob("*.py")) + \
        list(pkg.parent.joinpath("models").glob("*.json")) + list((pkg / "assets").glob("*"))
    for p in sorted(files):
        h.update(p.relative_to(pkg.parent).as_posix().encode() + b"\0" + p.read_bytes())
    for dist in ("torch", "onnx", "onnxruntime", "onnxscript", "executorch", "numpy"):
        try:
            h.update(f"{dist}={metadata.version(dist)}".encode())
        except metadata.PackageNotFoundError:
            pass
    return h.hexdigest()[:16]


def _bundle_root(tmp_path_factory) -> Path:
    env = os.environ.get("MC2EXPORT_BENCH_BUNDLES", "")
    if env == "fresh":
        return tmp_path_factory.mktemp("bench-bundles")
    if env:
        return Path(env)
    base = Path(tempfile.gettempdir()) / "mc2export-bench-test-bundles"
    key = _cache_key()
    base.mkdir(parents=True, exist_ok=True)
    for old in base.iterdir():  # one key at a time: ~530 MB each
        if old.name != key:
            shutil.rmtree(old, ignore_errors=True)
    (base / key).mkdir(exist_ok=True)
    return base / key


@pytest.fixture(scope="session")
def s0_bundles(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("executorch")
    root = _bundle_root(tmp_path_factory)
    return {"onnx": _export("onnx", root / "s0-onnx", "image,text"),
            "executorch": _export("executorch", root / "s0-executorch-text", "text")}


@pytest.fixture(scope="session")
def quick_run(s0_bundles, tmp_path_factory):
    """One `mc2export bench` over both bundles in quick mode (each tower in its own process)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("bench-out")
    proc = subprocess.run([sys.executable, "-m", "mc2export.cli", "bench", str(s0_bundles["onnx"]),
                           str(s0_bundles["executorch"]), "--mode", "quick", "--json", str(out / "r.json"),
                           "--csv", str(out / "r.csv")], capture_output=True, text=True, timeout=600)
    return proc, out


def test_bench_s0_quick_prints_table_with_verdict(quick_run):
    proc, _ = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    head = out.splitlines()[0]
    for col in ("variant", "runtime", "image ms", "text ms", "total ms", "target ms", "verdict"):
        assert col in head
    rows = [line for line in out.splitlines() if line.startswith("mobileclip2-s0 ") and "quick (p50)" in line]
    assert len(rows) == 2 and "onnxruntime" in rows[0] and "executorch" in rows[1]
    assert all("MEETS" in r or "MISSES" in r for r in rows)  # a desktop/server CPU is held to the target
    assert "a desktop/server CPU, held to the card's target" in out


def test_bench_s0_json_and_csv_follow_the_schema(quick_run):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "r.json").read_text())
    assert schema.errors(doc) == []
    assert schema.csv_errors((out / "r.csv").read_text()) == []
    ort, et = doc["results"]
    assert (ort["runtime"]["name"], et["runtime"]["name"]) == ("onnxruntime", "executorch")
    assert list(ort["towers"]) == ["image", "text"] and list(et["towers"]) == ["text"]
    assert ort["total"]["headline_ms"] == pytest.approx(ort["towers"]["image"]["headline_ms"]
                                                        + ort["towers"]["text"]["headline_ms"], abs=1e-3)
    assert ort["verdict"]["target_ms"] == pytest.approx(4.8) and et["verdict"]["target_ms"] == pytest.approx(3.3)
    for r in (ort, et):
        assert r["mode"]["name"] == "quick" and r["mode"]["standard"] is True
        assert r["bundle"]["random_weights"] is True and len(r["bundle"]["checksum"]) == 64
        assert r["runtime"]["threads"] >= 1 and r["runtime"]["version"]
        assert r["device"]["cpu"] and r["device"]["memory_gb"] and r["device"]["load_avg"] is not None
        for t in r["towers"].values():
            assert t["iterations"] >= 20 and len(t["samples_ms"]) == t["iterations"]
            assert sum(t["samples_ms"]) >= 2000.0  # >= 20 calls AND >= 2 s
            st = t["stats"]
            assert st["min"] <= st["p50"] <= st["p90"] <= st["p99"] <= st["max"]
            assert t["headline_ms"] == st["p50"]
            assert t["load_ms"]["cold"] > 0 and t["load_ms"]["warm"] > 0
            assert t["memory"]["scope"] == "subprocess" and t["memory"]["peak_rss_mb"] > 100
    assert ort["bundle"]["exporter_versions"]["onnxruntime"] and et["bundle"]["exporter_versions"]["executorch"]


def test_bench_report_over_the_run(quick_run, tmp_path, capsys):
    proc, out = quick_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    code, stdout, err = run(capsys, "bench-report", out / "r.json",
                            Path(__file__).parent / "fixtures" / "bench" / "app_ios_result.json", "--out", tmp_path)
    assert code == 0, err
    md = (tmp_path / "report.md").read_text()
    assert md.count("| mobileclip2-s0 |") == 3 and (tmp_path / "latency.svg").stat().st_size > 1000


def test_torch_baseline_in_process(s0_bundles, tmp_path, capsys):
    """The PyTorch baseline rebuilds the bundle's variant (random weights, as recorded), folded."""
    code, out, err = run(capsys, "bench", s0_bundles["executorch"], "--runtime", "torch", "--iterations", "3",
                         "--seconds", "0", "--warmup", "1", "--no-isolate", "--json", tmp_path / "t.json")
    assert code == 0, err
    doc = json.loads((tmp_path / "t.json").read_text())
    assert schema.errors(doc) == []
    (r,) = doc["results"]
    t = r["towers"]["text"]
    assert r["runtime"]["name"] == "torch" and r["mode"]["standard"] is False
    assert t["iterations"] == 3 and t["memory"]["scope"] == "process"
    assert t["runtime_info"]["weights"] == "random weights (as the bundle)" and t["runtime_info"]["model"] == "folded"
