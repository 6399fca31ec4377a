"""Bundles for the sample-app tests (web, Kotlin, the Python prototypes): fp32 ONNX bundles exported once
per session (tests/conftest.py ``app_bundles``), as a user makes them, with the ``verify/`` vectors the
exporter writes (docs/bundle.md, "``verify/``")."""
from __future__ import annotations

from pathlib import Path


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
            assert (out / "verify" / "manifest.json").is_file(), f"the export wrote no verify/ in {out}"
            self[key] = out
            return out

    return Lazy()
