"""The export commands through the CLI: success, bad input (one line, exit 2, nothing written), validation
failure (exit 3), Ctrl-C (exit 130), --force; and that the heavy toolchains stay lazy."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from mc2export import cli  # noqa: E402
from mc2export.export import bundle as B  # noqa: E402


def run_cli(args, capsys):
    try:
        cli.main(args)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    return code, out, err


def leftovers(folder: Path):
    return [p.name for p in folder.iterdir() if p.name.startswith(".mc2export-tmp-")]


def assert_one_line_error(code, err, expected_code=2):
    assert code == expected_code, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err


@pytest.fixture(scope="module")
def s0_checkpoint(reference, detweights, tmp_path_factory):
    from golden import write_official

    return write_official(reference, detweights, "open_clip/MobileCLIP2-S0", tmp_path_factory.mktemp("ck"))


@pytest.fixture(scope="module")
def random_bundle(tmp_path_factory):
    """One real CLI export (ONNX image tower, random weights), shared by the tests that inspect it."""
    root = tmp_path_factory.mktemp("cli")
    out = root / "b"
    try:
        cli.main(["onnx", "--variant", "s0", "--random-weights", "--towers", "image", "--out", str(out), "-q"])
    except SystemExit as e:
        assert not e.code, e.code
    return out


def test_success_random_weights_stamped(random_bundle):
    cfg = B.verify_bundle(random_bundle)
    assert cfg["weights"]["source"] == "random" and cfg["weights"]["random_weights"] is True
    assert set(cfg["models"]) == {"image"} and cfg["tokenizer"] is None
    assert cfg["output_normalized"] is True
    from mc2export.export.onnx import read_metadata

    meta = read_metadata(random_bundle / "image.onnx")
    assert meta["mc2export.random_weights"] == "true" and "RANDOM WEIGHTS" in meta["description"]
    val = json.loads((random_bundle / "validation.json").read_text())
    assert val["passed"] and val["towers"]["image"]["cosine_min"] >= 0.99999
    assert not leftovers(random_bundle.parent)
    assert oct(random_bundle.stat().st_mode & 0o777) != oct(0o700)


@pytest.mark.parametrize("args, needle", [
    (["onnx", "--variant", "s9"], "unknown variant"),
    (["coreml", "--variant", "s0", "--precision", "int4"], "precision"),
    (["onnx", "--variant", "s0", "--towers", "audio"], "--towers"),
    (["executorch", "--variant", "s0", "--batch", "0"], "--batch"),
    (["onnx", "--variant", "s0", "--random-weights", "--checkpoint", "x.pt"], "one weight source"),
    (["executorch", "--variant", "s0", "--delegate", "vulkan"], "unknown ExecuTorch delegate"),
    (["executorch", "--variant", "s0", "--delegate", "coreml", "--precision", "int8"], "--delegate xnnpack"),
    (["onnx", "--variant", "s0", "--delegate", "coreml"], "ExecuTorch option"),
])
def test_bad_options(args, needle, capsys, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli(args + ["--out", str(out)], capsys)
    assert_one_line_error(code, err)
    assert needle in err
    assert not out.exists() and not leftovers(tmp_path)


def test_existing_out_needs_force(random_bundle, capsys):
    before = sorted(p.name for p in random_bundle.iterdir())
    code, _, err = run_cli(["onnx", "--variant", "s0", "--random-weights", "--out", str(random_bundle)], capsys)
    assert_one_line_error(code, err)
    assert "--force" in err
    assert sorted(p.name for p in random_bundle.iterdir()) == before


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(["onnx", "--variant", "s0", "--random-weights", "--out", str(blocker / "sub")], capsys)
    assert_one_line_error(code, err)
    assert "cannot write" in err
    code, _, err = run_cli(["onnx", "--variant", "s0", "--random-weights", "--out", str(blocker)], capsys)
    assert_one_line_error(code, err)


def test_checkpoint_of_another_variant(s0_checkpoint, tmp_path, capsys):
    out = tmp_path / "o"
    code, _, err = run_cli(["onnx", "--variant", "mobileclip2-s2", "--checkpoint", str(s0_checkpoint),
                            "--out", str(out)], capsys)
    assert_one_line_error(code, err)
    assert "mobileclip2-s0" in err  # the hint names the variant the file holds
    assert not out.exists() and not leftovers(tmp_path)


def test_missing_checkpoint(tmp_path, capsys):
    code, _, err = run_cli(["onnx", "--variant", "s0", "--checkpoint", str(tmp_path / "nope.pt"),
                            "--out", str(tmp_path / "o")], capsys)
    assert_one_line_error(code, err)


def test_ctrl_c_mid_export_leaves_nothing(tmp_path, capsys, monkeypatch):
    """Ctrl-C after the image tower was exported (while the text tower starts): nothing half-written."""
    from mc2export.export import onnx as O

    real = O.export

    def interrupted(tower, *a, **kw):
        if tower == "text":
            raise KeyboardInterrupt
        return real(tower, *a, **kw)

    monkeypatch.setattr(O, "export", interrupted)
    out = tmp_path / "o"
    code, _, err = run_cli(["onnx", "--variant", "s0", "--random-weights", "--out", str(out), "-q"], capsys)
    assert code == 130 and "interrupted" in err
    assert not out.exists() and not leftovers(tmp_path)


def test_validation_failure_writes_nothing(tmp_path, capsys, monkeypatch):
    from mc2export.export import onnx as O

    real = O.runner

    def broken(*a, **kw):
        run, io, how = real(*a, **kw)
        return (lambda x: run(x) * 1.001), io, how

    monkeypatch.setattr(O, "runner", broken)
    out = tmp_path / "o"
    code, _, err = run_cli(["onnx", "--variant", "s0", "--random-weights", "--towers", "image", "--out", str(out),
                            "-q"], capsys)
    assert code == 3
    assert "failed validation" in err and "max-abs" in err and "tolerance" in err
    assert not out.exists() and not leftovers(tmp_path)


def test_force_replaces(random_bundle, capsys):
    old = json.loads((random_bundle / "config.json").read_text())["files"]["image.onnx"]["sha256"]
    code, out, err = run_cli(["onnx", "--variant", "s0", "--random-weights", "--towers", "image", "--force",
                              "--no-normalize", "--out", str(random_bundle)], capsys)
    assert code == 0, err
    assert "image.onnx" in out and "cosine min" in out  # the summary table
    cfg = B.verify_bundle(random_bundle)
    assert cfg["output_normalized"] is False and cfg["files"]["image.onnx"]["sha256"] != old
    assert not leftovers(random_bundle.parent)


def test_heavy_imports_stay_lazy():
    code = ("import sys, mc2export, mc2export.cli; "
            "heavy = [m for m in ('coremltools', 'onnx', 'onnxruntime', 'executorch') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_fixed_batch(tmp_path, capsys):
    out = tmp_path / "b2"
    code, _, err = run_cli(["onnx", "--variant", "s0", "--random-weights", "--towers", "image", "--batch", "2",
                            "--out", str(out), "-q"], capsys)
    assert code == 0, err
    cfg = B.verify_bundle(out)
    assert cfg["batch"] == 2
    assert cfg["models"]["image"]["inputs"][0]["shape"] == [2, 3, 256, 256]
    assert cfg["models"]["image"]["outputs"][0]["shape"] == [2, 512]


def test_trained_custom_student_exports_from_its_checkpoint(tmp_path):
    """A student trained on a custom card exports by its id: the card travels in the checkpoint."""
    import subprocess
    import sys

    import mc2export
    from mc2export import cards

    card = mc2export.get_card("s0")
    card.update(id="tiny-export-student", name="Tiny export student", aliases=[], embed_dim=64)
    card["image"].update(layers=[1, 1, 1, 1], embed_dims=[16, 32, 64, 128])
    card["text"].update(width=64, heads=2, layers=2)
    cards.register_card(card)
    ckpt = mc2export.save_checkpoint(mc2export.create_model("tiny-export-student"), tmp_path / "student.safetensors")
    r = subprocess.run([sys.executable, "-m", "mc2export.cli", "onnx", "--variant", "tiny-export-student",
                        "--checkpoint", str(ckpt), "--out", str(tmp_path / "bundle"), "-q"],
                       capture_output=True, text=True, timeout=600)  # a fresh process: the card is unknown there
    assert r.returncode == 0, r.stderr
    assert {"image.onnx", "text.onnx", "config.json"} <= {p.name for p in (tmp_path / "bundle").iterdir()}
