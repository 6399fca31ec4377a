"""Fuzz targets (issue 23): each takes the fuzzer's bytes and feeds them to one of our parsers. Only our
documented error type (:class:`mc2export.errors.UserError`, or the parser's own documented one) may escape;
anything else is a finding. Run with ``python benchmarks/fuzz/run.py TARGET [libFuzzer flags]``.

Targets:
  bundle      config.json / verify/manifest.json bytes of a bundle folder -> read_config, verify_bundle,
              vectors.read (the rules of docs/bundle.md, "Reading a bundle safely")
  checkpoint  a weights file -> read_checkpoint (safetensors header, pickle refusal: weights_only=True)
  tokenizer   arbitrary Unicode -> tokenize (never an error: any text is a prompt)
  image       image file bytes -> load_image + the preprocess transform (UserError for bad images)
  tar         a webdataset shard -> iter_samples (never an error: damage is counted)
  results     a results file -> bench-report's reader, merge, markdown and SVG
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# in memory where there is a /dev/shm: the bundle target writes and re-hashes a folder on every input
# (libFuzzer ends the process without Python's atexit: MC2EXPORT_FUZZ_WORK=DIR puts it in a folder you remove)
_WORK = Path(tempfile.mkdtemp(prefix="mc2export-fuzz-", dir=os.environ.get("MC2EXPORT_FUZZ_WORK") or (
    "/dev/shm" if Path("/dev/shm").is_dir() else None)))
atexit.register(shutil.rmtree, _WORK, True)


def _write(name: str, data: bytes) -> Path:
    p = _WORK / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


# -- bundle --------------------------------------------------------------------------------------------------

def _bundle_folder() -> Path:
    """A small bundle: stand-in model files (never run), real vectors, a valid config -- what the fuzzer edits."""
    import numpy as np

    from mc2export.export import vectors
    from mc2export.export.bundle import file_table
    from mc2export.export.reading import BUNDLE_VERSION, write_config

    folder = _WORK / "bundle"
    if (folder / "config.json").is_file():
        return folder
    folder.mkdir(parents=True)
    for t in ("image", "text"):
        (folder / f"{t}.onnx").write_bytes(b"stand-in")
    rng = np.random.default_rng(0)
    vectors.write(folder, precision="fp32", tolerance={"cosine_min": 0.99999}, normalized=False, embed_dim=4,
                  image=(rng.integers(0, 256, (16, 2, 2, 3), dtype=np.uint8), rng.normal(size=(16, 4))),
                  text=(rng.integers(0, 49408, (24, 5), dtype=np.int32), rng.normal(size=(24, 4)), ["t"] * 24))
    cfg = {"format": "mc2export-bundle", "bundle_version": BUNDLE_VERSION, "runtime": "onnx", "variant": "s0",
           "precision": "fp32", "batch": 1, "resolution": 2, "preprocess": {"resolution": 2}, "context_length": 5,
           "embed_dim": 4, "models": {t: {"file": f"{t}.onnx", "files": [f"{t}.onnx"]} for t in ("image", "text")},
           "files": file_table(folder)}
    write_config(folder, cfg)
    return folder


def bundle(data: bytes) -> None:
    from mc2export.errors import UserError
    from mc2export.export import vectors
    from mc2export.export.bundle import verify_bundle
    from mc2export.export.reading import CONFIG, read_config, sha256_line

    folder = _bundle_folder()
    which, body = (data[:1] or b"\0")[0] % 2, data[1:]
    keep = {n: (folder / n).read_bytes() for n in (CONFIG, "config.json.sha256", vectors.MANIFEST)}
    try:
        if which == 0:  # config.json, sealed with its own sha256: only the rules stand between it and the reader
            (folder / CONFIG).write_bytes(body)
            (folder / "config.json.sha256").write_text(sha256_line(body))
            try:
                verify_bundle(folder)
            except UserError:
                pass
        else:  # the manifest, read against the (valid) config
            (folder / vectors.MANIFEST).write_bytes(body)
            cfg = read_config(folder)
            try:
                vectors.read(folder, cfg)
            except UserError:
                pass
    finally:
        for n, b in keep.items():
            (folder / n).write_bytes(b)


# -- checkpoint ----------------------------------------------------------------------------------------------

def checkpoint(data: bytes) -> None:
    from mc2export.checkpoint import read_checkpoint
    from mc2export.errors import UserError

    suffix = (".safetensors", ".pt")[(data[:1] or b"\0")[0] % 2]
    p = _write("w" + suffix, data[1:])
    try:
        read_checkpoint(p)
    except UserError:
        pass


# -- tokenizer -----------------------------------------------------------------------------------------------

def tokenizer(data: bytes) -> None:
    from mc2export.tokenizer import tokenize

    text = data.decode("utf-8", "replace")
    if len(data) >= 4 and data[0] & 1:  # arbitrary code points too (lone surrogates, private use, > BMP)
        text = "".join(chr(int.from_bytes(data[i:i + 3], "little") % 0x110000) for i in range(1, len(data) - 2, 3))
    t = tokenize([text, text[:10]], context_length=77)
    assert t.shape == (2, 77) and int(t[0, 0]) == 49406


# -- image ---------------------------------------------------------------------------------------------------

def image(data: bytes) -> None:
    from mc2export.errors import UserError
    from mc2export.preprocess import build_transform, load_image

    p = _write("img", data)
    try:
        img = load_image(p)
        x = build_transform({"resolution": 32, "interpolation": "bilinear", "mean": [0, 0, 0], "std": [1, 1, 1]}).to_uint8(img)
        assert x.shape == (32, 32, 3)
    except UserError:
        pass


# -- tar -----------------------------------------------------------------------------------------------------

def tar(data: bytes) -> None:
    from mc2export.train.data import Stats, iter_samples, safe_member

    p = _write("s.tar", data)
    stats = Stats()
    stats.warn = lambda *a, **k: None  # quiet: thousands of damaged shards
    for s in iter_samples(str(p), stats):
        assert isinstance(s["__key__"], str) and safe_member(s["__key__"] + ".x")


# -- results -------------------------------------------------------------------------------------------------

def results(data: bytes) -> None:
    from mc2export.bench import report
    from mc2export.bench.schema import load_results
    from mc2export.errors import UserError

    p = _write("r.json", data)
    try:
        doc = load_results(p)
    except UserError:
        return
    rs = report.merge([doc])
    report.markdown(rs)
    try:
        report.svg_plot(rs)
    except UserError:
        pass


TARGETS = {"bundle": bundle, "checkpoint": checkpoint, "tokenizer": tokenizer, "image": image, "tar": tar,
           "results": results}
CORPUS = Path(__file__).resolve().parent / "corpus"

__all__ = ["TARGETS", "CORPUS"]
