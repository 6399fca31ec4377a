"""The bundle reading rules (docs/bundle.md, "Reading a bundle safely"; issue 23): nothing a file says is trusted.

Each case edits a real, tiny ONNX bundle (tests/tinybundle.py) the way an attacker or a careless user would,
then *reseals* it (file table and config.json.sha256 recomputed): the checksums pass, so only the reading
rules can refuse it. Readers: ``mc2export verify`` (exit 2 bad input, 3 out of tolerance), ``load_bundle``
(bench, eval-zeroshot), examples/python/mc2bundle.py and the web server's symlink rule."""
from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import tinybundle as T
from mc2export.cli import main
from mc2export.errors import UserError
from mc2export.export import reading
from mc2export.export.reading import write_config

pytest.importorskip("onnxruntime")
REPO = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def one_line_error(code, err, want_code=2):
    assert code == want_code, err
    lines = [ln for ln in err.splitlines() if not ln.startswith(("[mc2export]", "  "))]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def tiny(tmp_path):
    return T.make(tmp_path / "b")


def test_a_fresh_tiny_bundle_passes_verify(tiny, tmp_path, capsys):
    code, out, err = run(capsys, "verify", tiny, "-q", "--json", tmp_path / "v.json")
    assert code == 0, err
    assert "all towers hold" in out
    assert (tiny / "config.json.sha256").read_text() == reading.sha256_line((tiny / "config.json").read_bytes())


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.f32", "verify/../../outside.f32", "verify//x",
                                  "verify\\image_expected.f32", "./verify/image_expected.f32", ""])
def test_manifest_paths_outside_the_bundle_are_refused(tiny, tmp_path, capsys, path):
    (tmp_path / "outside.f32").write_bytes(b"\0" * 4 * 4 * T.D)
    T.edit_manifest(tiny, lambda m: m["towers"]["image"]["expected"].__setitem__("file", path))
    line = one_line_error(*run(capsys, "verify", tiny)[::2])
    assert "verify/manifest.json image.expected.file" in line and "passwd" not in line.replace(path, "")
    assert "bytes" not in line  # the size of an outside file is never said


def test_a_symlink_out_of_the_bundle_is_refused(tiny, tmp_path, capsys):
    secret = tmp_path / "secret.f32"
    secret.write_bytes((tiny / "verify" / "image_expected.f32").read_bytes())
    (tiny / "verify" / "image_expected.f32").unlink()
    (tiny / "verify" / "image_expected.f32").symlink_to(secret)
    T.reseal(tiny)
    line = one_line_error(*run(capsys, "verify", tiny)[::2])
    assert "leaves the bundle folder" in line
    from mc2export.bench.bundles import load_bundle

    with pytest.raises(UserError, match="leaves the bundle folder"):  # bench, eval-zeroshot
        load_bundle(tiny)


def test_a_fifo_in_the_bundle_is_refused_not_hashed(tiny, capsys):
    os.mkfifo(tiny / "verify" / "pipe")  # listed or not: opening it to hash it would wait forever
    cfg = T.config(tiny)
    cfg["files"]["verify/pipe"] = {"sha256": "0" * 64, "bytes": 0}
    write_config(tiny, cfg)
    assert "not a regular file" in one_line_error(*run(capsys, "verify", tiny)[::2])


def test_the_tolerance_comes_from_the_tier_not_the_file(tiny, capsys):
    """cosine_min -1 in the manifest and an unrelated model's outputs as the expected vectors: still the fp32
    tier's cos >= 0.99999, so the tower fails (exit 3)."""
    p = tiny / "verify" / "image_expected.f32"
    np.random.default_rng(9).normal(size=(4, T.D)).astype("<f4").tofile(p)

    def loosen(m):
        m["tolerance"] = {"cosine_min": -1}
        m["towers"]["image"]["tolerance"] = {"cosine_min": -1, "max_abs_over_std": 1e30}
    T.edit_manifest(tiny, loosen)
    code, out, err = run(capsys, "verify", tiny, "-q")
    assert code == 3, err
    assert "tolerance cos >= 0.99999" in err and "all towers hold" not in out


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_expected_vectors_are_bad_input(tiny, capsys, bad):
    p = tiny / "verify" / "text_expected.f32"
    a = np.fromfile(p, "<f4")
    a[3] = bad
    a.tofile(p)
    T.reseal(tiny)
    assert "NaN or Inf" in one_line_error(*run(capsys, "verify", tiny)[::2])


def test_every_tower_with_a_model_is_checked(tiny, capsys):
    T.edit_manifest(tiny, lambda m: m["towers"].pop("text"))
    assert "every tower must be checked" in one_line_error(*run(capsys, "verify", tiny)[::2])


def test_model_io_names_must_be_config_names(tiny, capsys):
    cfg = T.config(tiny)
    cfg["models"]["image"]["inputs"][0]["name"] = "pixels"
    T.reseal(tiny, cfg)
    line = one_line_error(*run(capsys, "verify", tiny)[::2])
    assert "image model's inputs ['image'] but config.json says ['pixels']" in line


def test_an_edited_config_is_detected(tiny, capsys):
    data = (tiny / "config.json").read_text().replace('"fp32"', '"int8"', 1)
    (tiny / "config.json").write_text(data)
    assert "config.json does not match config.json.sha256" in one_line_error(*run(capsys, "verify", tiny)[::2])
    (tiny / "config.json.sha256").unlink()
    assert "config.json does not match config.json.sha256" in one_line_error(*run(capsys, "verify", tiny)[::2])


@pytest.mark.parametrize("version", [1, 3, "2", True, None])
def test_unknown_bundle_version_is_refused(tiny, capsys, version):
    cfg = T.config(tiny)
    cfg["bundle_version"] = version
    write_config(tiny, cfg)
    assert "written by another mc2export" in one_line_error(*run(capsys, "verify", tiny)[::2])


def test_unknown_manifest_version_and_precision_are_refused(tiny, capsys):
    T.edit_manifest(tiny, lambda m: m.__setitem__("version", 2))
    assert "version 2" in one_line_error(*run(capsys, "verify", tiny)[::2])
    T.edit_manifest(tiny, lambda m: m.update(version=1, precision="fp64"))
    assert "fp64" in one_line_error(*run(capsys, "verify", tiny)[::2])


@pytest.mark.parametrize("edit, words", [
    (lambda c: c.update(embed_dim="big"), "embed_dim"),
    (lambda c: c.update(precision=["fp32"]), "precision"),
    (lambda c: c.update(batch=1.5), "batch"),
    (lambda c: c["preprocess"].update(resolution=100000), "preprocess.resolution"),
    (lambda c: c.update(models={"image": {"file": 7}}), "models.image"),
    (lambda c: c.update(models={"image": {"file": "/etc/passwd"}}), "models.image.file"),
    (lambda c: c.update(files={"image.onnx": {"sha256": "x", "bytes": -1}}), "files"),
    (lambda c: c.update(logit_scale="100"), "logit_scale"),
])
def test_wrong_typed_config_fields_are_refused(tiny, capsys, edit, words):
    cfg = T.config(tiny)
    edit(cfg)
    write_config(tiny, cfg)
    assert words in one_line_error(*run(capsys, "verify", tiny)[::2])


@pytest.mark.parametrize("text", ['{"a": ' * 100000 + "1" + "}" * 100000, '{"x": NaN}', '{"x": 1e999}',
                                  '[' * 40 + ']' * 40, "\xff\xfe"])
def test_deep_or_non_finite_json_is_one_line(tiny, capsys, text):
    data = text.encode("latin-1")
    (tiny / "config.json").write_bytes(data)
    (tiny / "config.json.sha256").write_text(reading.sha256_line(data))
    assert "not valid JSON" in one_line_error(*run(capsys, "verify", tiny)[::2])
    assert "not valid JSON" in one_line_error(*run(capsys, "bench", tiny)[::2])


@pytest.mark.parametrize("edit, words", [
    (lambda m: m["towers"]["image"]["inputs"].update(shape=[0, T.R, T.R, 3]), "shape"),
    (lambda m: m["towers"]["image"]["inputs"].update(shape=[5, T.R, T.R, 3]), "bytes"),
    (lambda m: m["towers"]["image"]["expected"].update(dtype="float64"), "dtype"),
    (lambda m: m.update(embed_dim=9), "embed_dim"),
])
def test_bad_vectors_are_bad_input_not_a_model_failure(tiny, capsys, edit, words):
    T.edit_manifest(tiny, edit)
    assert words in one_line_error(*run(capsys, "verify", tiny)[::2])


def test_vectors_at_another_resolution_are_bad_input(tiny, capsys):
    cfg = T.config(tiny)
    cfg["preprocess"]["resolution"] = cfg["resolution"] = 2
    write_config(tiny, cfg)
    assert "resolution 2" in one_line_error(*run(capsys, "verify", tiny)[::2])


def test_verify_json_never_inside_the_bundle(tiny, capsys):
    before = (tiny / "validation.json").read_bytes()
    line = one_line_error(*run(capsys, "verify", tiny, "--json", tiny / "validation.json")[::2])
    assert "inside the bundle" in line and (tiny / "validation.json").read_bytes() == before
    line = one_line_error(*run(capsys, "bench", tiny, "--csv", tiny / "verify" / "x.csv")[::2])
    assert "inside the bundle" in line and not (tiny / "verify" / "x.csv").exists()


# -- examples/python (a standalone reader) and the web server -------------------------------------------------

def _example_bundle():
    sys.path.insert(0, str(REPO / "examples" / "python"))
    try:
        import mc2bundle
    finally:
        sys.path.pop(0)
    return mc2bundle


@pytest.mark.parametrize("path", ["/etc/passwd", "../b2/image.onnx", "sub/../../x.onnx", "link.onnx"])
def test_examples_python_loads_models_only_from_inside(tiny, tmp_path, path):
    mb = _example_bundle()
    mb.Bundle(tiny)  # the untouched bundle loads
    (tmp_path / "x.onnx").write_bytes((tiny / "image.onnx").read_bytes())
    (tiny / "link.onnx").symlink_to(tmp_path / "x.onnx")
    cfg = T.config(tiny)
    cfg["models"]["image"]["file"] = path
    write_config(tiny, cfg)
    with pytest.raises(mb.BundleError, match="not a path inside the bundle"):
        mb.Bundle(tiny)


def test_examples_python_checks_version_hash_and_names(tiny):
    mb = _example_bundle()
    cfg = T.config(tiny)
    (tiny / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(mb.BundleError, match="does not match config.json.sha256"):
        mb.Bundle(tiny)
    write_config(tiny, {**cfg, "bundle_version": 1})
    with pytest.raises(mb.BundleError, match="bundle_version 1"):
        mb.Bundle(tiny)
    cfg["models"]["text"]["outputs"][0]["name"] = "emb"
    write_config(tiny, cfg)
    with pytest.raises(mb.BundleError, match="outputs"):
        mb.Bundle(tiny)


def test_web_server_does_not_follow_symlinks_out(tiny, tmp_path):
    sys.path.insert(0, str(REPO / "examples" / "web"))
    try:
        import serve
    finally:
        sys.path.pop(0)
    (tmp_path / "secret.txt").write_text("secret")
    (tiny / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (tiny / "inner.json").symlink_to(tiny / "validation.json")
    server, url = serve.start(REPO / "examples" / "web", {"bundle": tiny})
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url + "bundle/leak.txt", timeout=10)
        assert e.value.code == 404
        assert urllib.request.urlopen(url + "bundle/inner.json", timeout=10).read() == b'{"passed": true}\n'
        assert urllib.request.urlopen(url + "bundle/config.json", timeout=10).status == 200
    finally:
        server.shutdown()


def test_eval_zeroshot_json_never_inside_the_bundle(tiny, tmp_path, capsys):
    (tmp_path / "data" / "cat").mkdir(parents=True)
    line = one_line_error(*run(capsys, "eval-zeroshot", tmp_path / "data", "--bundle", tiny,
                               "--json", tiny / "validation.json")[::2])
    assert "inside the bundle" in line and (tiny / "validation.json").read_text() == '{"passed": true}\n'
