"""Shared test fixtures: where the fidelity kit lives, seed-0 checkpoints written in official formats, and
MobileCLIP2-S0 bundles exported once (``s0_bundles``: the bench and verify tests)."""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("MC2EXPORT_REFERENCE", REPO.parent / "shared" / "reference")).resolve()


def _require_reference() -> Path:
    if not (REFERENCE / "detweights.py").is_file():
        pytest.fail(
            f"fidelity kit not found at {REFERENCE}: set MC2EXPORT_REFERENCE to the shared/reference folder",
            pytrace=False,
        )
    return REFERENCE


@pytest.fixture(scope="session")
def reference() -> Path:
    return _require_reference()


@pytest.fixture(scope="session")
def detweights(reference):
    sys.path.insert(0, str(reference))
    import detweights as mod  # the kit's deterministic weight generator

    return mod


@pytest.fixture(scope="session")
def checkpoints(reference, detweights, tmp_path_factory):
    """The fidelity kit's seed-0 weights of the export test cases (golden.EXPORT_CASES) in their official
    layouts, written once for the ONNX, Core ML and ExecuTorch export tests."""
    from golden import EXPORT_CASES, write_official

    d = tmp_path_factory.mktemp("ckpt")
    return {k: write_official(reference, detweights, name, d) for k, (name, _) in EXPORT_CASES.items()}


# -- MobileCLIP2-S0 bundles for the bench / verify tests --------------------------------------------------
# Built through the export commands with --random-weights (latency does not depend on the weight values, and
# the verification vectors hold the reference of the same weights): ONNX with both towers, ExecuTorch with
# the text tower only (lowering both S0 towers to XNNPACK takes ~100 s on this 2-core machine, the text tower
# ~45 s). Exporting costs 1.5-3.5 minutes here, so the bundles are kept between sessions in
# $TMPDIR/mc2export-bench-test-bundles/<key>, where the key hashes every source file of the package and the
# model cards (anything that could change an export) and the versions of torch / onnx / onnxruntime /
# executorch: any change re-exports, and older keys are deleted. MC2EXPORT_BENCH_BUNDLES=DIR uses DIR
# instead; MC2EXPORT_BENCH_BUNDLES=fresh exports into the session's temporary folder.

def _export(fmt: str, out: Path, towers: str) -> Path:
    from mc2export.cli import main

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
def app_bundles(checkpoints, tmp_path_factory):
    """fp32 ONNX bundles as ``mc2export onnx`` writes them, with verify/, for the sample-app tests (web,
    Python prototypes): ``app_bundles["s0"]`` (MobileCLIP2-S0), ``["mcs0"]`` (MobileCLIP-S0); each exported
    once per session, on first use (tests/appbundles.py)."""
    from appbundles import lazy_onnx_bundles

    return lazy_onnx_bundles(checkpoints, tmp_path_factory.mktemp("app-onnx"))


def pytest_terminal_summary(terminalreporter, config):
    """Lines a test collected for the log (``config.mc2_summary``: e.g. the Swift test counts), shown under -q."""
    for line in config.__dict__.get("mc2_summary", []):
        terminalreporter.write_line(line)
