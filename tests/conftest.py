"""Shared test fixtures: where the fidelity kit lives, and seed-0 checkpoints written in official formats."""
from __future__ import annotations

import os
import sys
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


@pytest.fixture(scope="session")
def app_bundles(checkpoints, tmp_path_factory):
    """fp32 ONNX bundles as ``mc2export onnx`` writes them, with verify/, for the sample-app tests (web,
    Python prototypes): ``app_bundles["s0"]`` (MobileCLIP2-S0), ``["mcs0"]`` (MobileCLIP-S0); each exported
    once per session, on first use (tests/appbundles.py)."""
    from appbundles import lazy_onnx_bundles

    return lazy_onnx_bundles(checkpoints, tmp_path_factory.mktemp("app-onnx"))
