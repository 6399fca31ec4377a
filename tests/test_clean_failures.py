"""Clean failures (issue 23): a full disk, an output folder deleted under a run, text that is not UTF-8 --
one line ``error: ...`` and exit 2, nothing half-written, and inputs checked before slow work."""
from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path

import pytest

import tinybundle as T
from mc2export.outputs import TMP_PREFIX, write_failure

FIX = Path(__file__).parent / "fixtures" / "bench"


from test_bench_units import run  # noqa: E402  (the CLI runner the bench tests use)


def error_line(code, err):
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs (we run as root in CI); without mount rights, the monkeypatched test below still runs."""
    d = tmp_path / "disk"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(d)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (not root): test_disk_full_monkeypatched covers the same path")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _fill(d: Path) -> None:
    fd = os.open(d / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_disk_full_on_a_real_tmpfs(tiny_disk, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    b = T.make(tmp_path / "b")
    _fill(tiny_disk)
    line = error_line(*run(capsys, "verify", b, "-q", "--json", tiny_disk / "v.json")[::2])
    assert "disk is full" in line or "not writable" in line
    os.unlink(tiny_disk / "filler")
    big = "x" * 200_000  # the report does not fit in 64 KiB
    code, _, err = run(capsys, "bench-report", FIX / "app_ios_result.json", "--out", tiny_disk / "rep", "--title", big)
    assert "disk is full" in error_line(code, err)
    assert not [p for p in (tiny_disk / "rep").iterdir() if p.name.startswith(TMP_PREFIX)]  # nothing half-written


def test_disk_full_monkeypatched(tmp_path, capsys, monkeypatch):
    import mc2export.outputs as O

    real_fdopen = os.fdopen

    def full(fd, mode="r", *a, **kw):
        f = real_fdopen(fd, mode, *a, **kw)

        class Full:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

            def write(self, data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return Full()

    monkeypatch.setattr(O.os, "fdopen", full)
    code, _, err = run(capsys, "bench-report", FIX / "app_ios_result.json", "--out", tmp_path / "rep")
    assert "the disk is full" in error_line(code, err)
    assert not [p for p in (tmp_path / "rep").iterdir() if p.name.startswith(TMP_PREFIX)]


def test_wrapped_and_vanished_write_errors_are_one_line():
    assert "disk is full" in write_failure(RuntimeError("[enforce fail at inline_container.cc:595] . "
                                                        "PytorchStreamWriter failed writing file data/0: file write "
                                                        "failed (No space left on device)"))
    gone = FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/out/.mc2export-tmp-b/config.json")
    assert "a folder vanished" in write_failure(gone)
    assert write_failure(KeyError("x")) is None and write_failure(ValueError("No such file")) is None


def test_output_folder_deleted_under_a_command(tmp_path, capsys, monkeypatch):
    import shutil

    import mc2export.outputs as O

    real = O.write_atomic

    def vanish(path, data):
        shutil.rmtree(Path(path).parent)  # another process deletes the folder mid-run
        with open(Path(path).parent / "x", "w"):
            pass
        return real(path, data)

    monkeypatch.setattr(O, "write_atomic", vanish)
    code, _, err = run(capsys, "bench-report", FIX / "app_ios_result.json", "--out", tmp_path / "gone" / "rep")
    assert "a folder vanished" in error_line(code, err)


def test_calibration_captions_not_utf8_fail_before_slow_work(tmp_path, capsys):
    pytest.importorskip("openvino")
    cal = tmp_path / "cal"
    cal.mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(cal / "a.png")
    (cal / "captions.txt").write_bytes(b"a photo\n\xff\xfe broken\n")
    t0 = time.perf_counter()
    code, _, err = run(capsys, "openvino", "--variant", "s0", "--random-weights", "--precision", "int8",
                       "--calibration", cal, "--out", tmp_path / "b")
    line = error_line(code, err)
    assert "not UTF-8 text (byte 0xff on line 2)" in line
    assert time.perf_counter() - t0 < 30 and not (tmp_path / "b").exists()  # before the model was built
    (cal / "captions.txt").write_text("\n \n")
    assert "is empty" in error_line(*run(capsys, "openvino", "--variant", "s0", "--random-weights", "--precision",
                                         "int8", "--calibration", cal, "--out", tmp_path / "b")[::2])


def test_aspect_ratio_bomb_is_refused_before_the_resize(tmp_path):
    """A 1 x 100000 PNG (a few hundred bytes, far under Pillow's pixel limit) would resize to 256 x 25,600,000."""
    import sys

    from PIL import Image

    from mc2export.errors import UserError
    from mc2export.preprocess import MAX_RESIZED_PIXELS, build_transform, load_image, resized_size

    p = tmp_path / "bomb.png"
    Image.new("L", (1, 100000)).save(p, optimize=True)
    assert p.stat().st_size < 2000
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="extreme aspect ratio"):
        build_transform({"resolution": 256, "interpolation": "bilinear", "mean": [0, 0, 0], "std": [1, 1, 1]}).to_uint8(
            load_image(p))
    assert time.perf_counter() - t0 < 5
    assert resized_size(4000, 3000, 256) == (341, 256) and resized_size(256, 256 * 1000, 256)[1] * 256 <= MAX_RESIZED_PIXELS
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "python"))
    try:
        import mc2bundle
    finally:
        sys.path.pop(0)
    with pytest.raises(mc2bundle.BundleError, match="extreme aspect ratio"):
        mc2bundle.load_crop(p, 256, "bilinear")


def test_image_bombs_are_refused_from_the_header(tmp_path):
    """Fuzz finding (benchmarks/results/fuzz.md): a 160-byte TIFF declaring 4 x 33,554,436 pixels, under Pillow's
    error limit, took > 10 s to decode. The header's size is checked first (mc2export and examples/python)."""
    import base64

    from mc2export.errors import UserError
    from mc2export.preprocess import load_image
    from mc2export.train.data import SampleError, decode_image

    data = base64.b64decode(FUZZ_TIFF)
    p = tmp_path / "bomb.tif"
    p.write_bytes(data)
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="extreme aspect ratio|megapixels"):
        load_image(p)
    with pytest.raises(SampleError):
        decode_image(data)
    assert time.perf_counter() - t0 < 2


FUZZ_TIFF = ("SUkqAAgAAAAJAAABBAABAAAABAAAAAEBBAABAAAABAAAAgADAAEBAAAAEAAAAAMBAwABAAAAAQAAAAYBAwABAAAAAQAAABEBBAABAAAA"
             "egAAABYBBAABAAAABAAAABcBBAABAAAAIAAAABwBAwABAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==")
