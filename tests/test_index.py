"""``mc2export index`` / ``search``: the library format, crash safety, incremental reruns, hostile files,
search against a numpy reference, the HTML sheet, HEIC, and the Ray engine against the local one.

Photos are made here (small synthetic images); the model is the session's MobileCLIP2-S0 ONNX bundle of the
fidelity kit's seed-0 weights (``app_bundles["s0"]``, shared with the sample-app tests; random weights
give every photo the same embedding, which would make these tests blind)."""
from __future__ import annotations

import errno
import importlib.util
import html.parser
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mc2export.cli import main

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="session")
def s0_onnx(app_bundles):
    return app_bundles["s0"]


def _photo(path: Path, seed: int, size=(320, 240), fmt=None, **save) -> Path:
    """A smooth random picture (gradients + blobs: JPEG-friendly, distinct per seed)."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        a, b, p = rng.uniform(-1, 1, 3)
        img[..., c] = 127 + 100 * np.sin(a * x / 37 + b * y / 29 + p * 6)
    for _ in range(3):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, 60)
        img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(path, fmt, **save)
    return path


def _album(root: Path, n: int = 8, start: int = 0) -> Path:
    for i in range(start, start + n):
        _photo(root / f"sub{i % 2}" / f"p{i:03d}.jpg", i, quality=90)
    return root


def _run(*args) -> int:
    with pytest.raises(SystemExit) as e:
        main(list(map(str, args)))
    return e.value.code


def _index(photos, lib, bundle, *extra) -> int:
    return _run("index", *([photos] if not isinstance(photos, (list, tuple)) else photos), "--out", lib,
                "--bundle", bundle, "--workers", 1, "--threads", 1, "-q", *extra)


def _dump(lib: Path):
    """Everything a library holds: each photo once with its status, place and embedding bytes."""
    from mc2export.library.store import Library

    with Library.open(lib) as L:
        out = []
        for path, size, mtime, status, shard, row, reason in L.photos():
            vec = L.vector(shard, row).tobytes() if status == "ok" else None
            out.append((path, size, mtime, status, shard, row, reason, vec))
        return out, L.counts()


def test_index_search_and_reference(tmp_path, s0_onnx):
    photos = _album(tmp_path / "photos", 6)
    _photo(photos / "odd" / 'a<b>&"c.png', 99)                 # escaped in the HTML sheet
    _photo(photos / "g.gif", 7, fmt="GIF")
    _photo(photos / "w.webp", 8, fmt="WEBP")
    _photo(photos / "t.tiff", 9, fmt="TIFF")
    lib = tmp_path / "lib"
    assert _index(photos, lib, s0_onnx) == 0
    rows, counts = _dump(lib)
    assert counts["ok"] == 10 and counts["skipped"] == 0 and counts["rows"] == 10
    stats = json.loads((lib / "stats.json").read_text())
    assert stats["indexed"] == 10 and set(stats["stages_s"]) >= {"read", "decode", "infer", "write"}

    # an exact search equals a brute-force numpy ranking of the stored rows
    from mc2export.library.search import exact_scores
    from mc2export.library.store import Library

    rows = sorted(rows, key=lambda r: (r[4], r[5]))  # storage order: the tie-break of both rankings
    mat = np.stack([np.frombuffer(v, np.float16).astype(np.float32) for *_, v in rows])
    for seed in range(3):
        q = np.random.default_rng(seed).normal(size=mat.shape[1]).astype(np.float32)
        with Library.open(lib) as L:
            got = exact_scores(L, q, 4)
            paths = L.at([(s, r) for _, s, r in got])
        ref = np.argsort(-(mat @ q), kind="stable")[:4]
        assert paths == [rows[i][0] for i in ref]
        np.testing.assert_allclose([g[0] for g in got], (mat @ q)[ref], rtol=1e-5, atol=1e-5)

    # the CLI: words through the bundle's text tower, JSON rows best first, and the contact sheet
    js, page = tmp_path / "r.json", tmp_path / "r.html"
    assert _run("search", lib, "a dog on the beach", "-k", 3, "--json", js, "--html", page) == 0
    res = json.loads(js.read_text())["results"]
    assert [r["rank"] for r in res] == [1, 2, 3] and res[0]["score"] >= res[1]["score"] >= res[2]["score"]
    from mc2export.library.search import QueryEncoder

    with Library.open(lib) as L:
        qt = QueryEncoder(L).text("a dog on the beach")
    order = np.argsort(-(mat @ qt), kind="stable")[:3]
    assert [r["path"] for r in res] == [rows[i][0] for i in order]
    np.testing.assert_allclose([r["score"] for r in res], (mat @ qt)[order], atol=1e-4)

    assert _run("search", lib, "x", "-k", 20, "--html", page) == 0
    text = page.read_text()
    _well_formed(text)
    assert text.count("data:image/jpeg;base64,") == 10
    assert "a&lt;b&gt;&amp;&quot;c.png" in text and 'a<b>&"c' not in text

    # an image query finds that photo first
    assert _run("search", lib, "--image", photos / "sub0" / "p002.jpg", "-k", 1, "--json", js) == 0
    assert json.loads(js.read_text())["results"][0]["path"].endswith("p002.jpg")


class _Checker(html.parser.HTMLParser):
    VOID = {"meta", "img", "br", "link", "input", "hr"}

    def __init__(self):
        super().__init__()
        self.stack = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def _well_formed(text: str) -> None:
    assert text.startswith("<!DOCTYPE html>")
    c = _Checker()
    c.feed(text)
    c.close()
    assert c.stack == []
    assert "src=\"http" not in text and "<script" not in text  # self-contained


def test_incremental_rerun_and_compact(tmp_path, s0_onnx):
    photos = _album(tmp_path / "photos", 6)
    lib = tmp_path / "lib"
    assert _index(photos, lib, s0_onnx) == 0
    import fcntl

    with open(lib / ".lock", "a+") as f:  # no decode worker of the finished run still holds the lock
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    before, _ = _dump(lib)
    # unchanged: nothing to do, not even the model
    assert _index(photos, lib, s0_onnx) == 0
    assert json.loads((lib / "stats.json").read_text())["unchanged"] == 6
    assert _dump(lib)[0] == before
    # one added, one changed, one deleted
    _photo(photos / "new.jpg", 50)
    changed = photos / "sub1" / "p001.jpg"
    _photo(changed, 51)
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    (photos / "sub0" / "p002.jpg").unlink()
    assert _index(photos, lib, s0_onnx) == 0
    s = json.loads((lib / "stats.json").read_text())
    assert (s["new"], s["changed"], s["deleted"], s["unchanged"]) == (1, 1, 1, 4)
    rows, counts = _dump(lib)
    assert counts["ok"] == 6 and counts["deleted"] == 1 and counts["rows"] == 8 and counts["dead_rows"] == 2
    status = {Path(p).name: st for p, *_, st, _, _, _, _ in [(r[0], r[3], r[3], r[4], r[5], r[6]) for r in rows]}
    assert status["p002.jpg"] == "deleted"
    # search never returns a dead row
    from mc2export.library.search import exact_scores
    from mc2export.library.store import Library

    with Library.open(lib) as L:
        hits = L.at([(s_, r) for _, s_, r in exact_scores(L, np.ones(L.dim, np.float32), 20)])
    assert len(hits) == 6 and None not in hits and not any(h.endswith("p002.jpg") for h in hits)
    live = {r[0]: r[7] for r in rows if r[3] == "ok"}
    assert _run("index", "--out", lib, "--compact") == 0
    rows2, counts2 = _dump(lib)
    assert counts2["rows"] == 6 and counts2["dead_rows"] == 0 and counts2["deleted"] == 0
    assert {r[0]: r[7] for r in rows2 if r[3] == "ok"} == live
    assert sorted(p.name for p in lib.iterdir() if p.name.startswith("shards-")) == ["shards-1"]


def test_model_mismatch_refused(tmp_path, s0_onnx, capsys):
    from mc2export.library.store import Library, Model

    photos = _album(tmp_path / "photos", 1)
    lib = tmp_path / "lib"
    Library.open(lib, Model("mobileclip2-s2", "0" * 64, 512, "another bundle")).close()
    capsys.readouterr()
    assert _index(photos, lib, s0_onnx) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: library") and "another model" in err[0]
    assert _dump(lib)[1]["ok"] == 0


def test_one_writer_per_library(tmp_path, s0_onnx, capsys):
    from mc2export.library.indexer import _lock

    photos = _album(tmp_path / "photos", 1)
    held = _lock(tmp_path / "lib")
    try:
        capsys.readouterr()
        assert _index(photos, tmp_path / "lib", s0_onnx) == 2
        assert "another mc2export run is writing" in capsys.readouterr().err
    finally:
        held.close()
    assert _index(photos, tmp_path / "lib", s0_onnx) == 0


def _bomb_png(path: Path, w: int, h: int) -> None:
    """A PNG whose header claims w x h pixels (a decompression bomb is refused before its data is read)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_hostile_files_skipped_and_reported(tmp_path, s0_onnx, capsys):
    photos = _album(tmp_path / "photos", 2)
    (photos / "page.jpg").write_text("<!DOCTYPE html><html><body>not a photo</body></html>")
    good = (photos / "sub0" / "p000.jpg").read_bytes()
    (photos / "cut.jpg").write_bytes(good[: len(good) // 2])
    _bomb_png(photos / "bomb.png", 100_000, 100_000)
    _photo(photos / "strip.png", 3, size=(4000, 20))
    (photos / "empty.jpg").write_bytes(b"")
    lib = tmp_path / "lib"
    capsys.readouterr()
    assert _index(photos, lib, s0_onnx) == 0
    cap = capsys.readouterr()
    rows, counts = _dump(lib)
    assert counts["ok"] == 2 and counts["skipped"] == 5
    reasons = {Path(r[0]).name: r[6] for r in rows if r[3] == "skipped"}
    assert "HTML" in reasons["page.jpg"]
    assert "truncated" in reasons["cut.jpg"]
    assert "decompression bomb" in reasons["bomb.png"]
    assert "aspect ratio" in reasons["strip.png"]
    assert reasons["empty.jpg"] == "empty file"
    assert all("\n" not in r for r in reasons.values())
    assert "2 indexed, 5 skipped" in cap.out and "skipped " in cap.err and "page.jpg" in cap.err
    # unchanged hostile files are not retried
    assert _index(photos, lib, s0_onnx) == 0
    assert json.loads((lib / "stats.json").read_text())["unchanged"] == 7


def test_decode_reduced_exif_and_formats(tmp_path):
    from mc2export.library.decode import DecodeConfig, model_input

    pre = {"resolution": 256, "interpolation": "bilinear", "mean": [0.5] * 3, "std": [0.5] * 3}
    big = _photo(tmp_path / "big.jpg", 1, size=(2048, 1536), quality=95)
    data = big.read_bytes()
    fast = model_input(data, DecodeConfig(pre)).astype(np.float32)
    exact = model_input(data, DecodeConfig(pre, exact=True)).astype(np.float32)
    assert fast.shape == exact.shape == (256, 256, 3)
    assert np.abs(fast - exact).mean() < 3.0  # DCT-scaled decode: close to the full-size path
    # EXIF orientation 6 (rotate 90 CW to view) gives the input of the upright photo
    im = Image.open(big)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    upright = io.BytesIO()
    im.transpose(Image.Transpose.ROTATE_270).save(upright, "PNG")
    a = model_input(buf.getvalue(), DecodeConfig(pre, exact=True)).astype(np.float32)
    b = model_input(upright.getvalue(), DecodeConfig(pre, exact=True)).astype(np.float32)
    assert np.abs(a - b).mean() < 3.0 and np.abs(a - exact).mean() > 10


def test_heic_read(tmp_path, s0_onnx):
    pillow_heif = pytest.importorskip("pillow_heif")
    from mc2export.library.decode import DecodeConfig, model_input

    src = _photo(tmp_path / "src.png", 5, size=(512, 384))
    heif = pillow_heif.from_pillow(Image.open(src))
    heic = tmp_path / "photos" / "x.heic"
    heic.parent.mkdir()
    heif.save(heic, quality=95)
    pre = {"resolution": 256, "interpolation": "bicubic", "mean": [0.5] * 3, "std": [0.5] * 3}
    a = model_input(heic.read_bytes(), DecodeConfig(pre)).astype(np.float32)
    b = model_input(src.read_bytes(), DecodeConfig(pre)).astype(np.float32)
    assert np.abs(a - b).mean() < 4.0
    assert _index(tmp_path / "photos", tmp_path / "lib", s0_onnx, "--workers", 0) == 0  # found and indexed
    rows, counts = _dump(tmp_path / "lib")
    assert counts["ok"] == 1 and rows[0][0].endswith("x.heic")


def test_disk_full_stops_the_run_cleanly(tmp_path, s0_onnx, monkeypatch, capsys):
    from mc2export.library import store

    photos = _album(tmp_path / "photos", 6)
    lib = tmp_path / "lib"
    real, calls = os.pwrite, []

    def fills_up(fd, data, off):
        calls.append(off)
        if len(calls) > 1:  # the second batch finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, off)

    monkeypatch.setattr(store.os, "pwrite", fills_up)
    capsys.readouterr()
    assert _index(photos, lib, s0_onnx, "--workers", 0, "--commit-every", 2) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the disk is full") and "run the same command again" in err[0]
    _, part = _dump(lib)
    assert part["ok"] == 2 and part["rows"] == 2
    monkeypatch.setattr(store.os, "pwrite", real)
    assert _index(photos, lib, s0_onnx, "--workers", 0, "--commit-every", 2) == 0
    assert _dump(lib)[1]["ok"] == 6


def test_commit_is_crash_safe_and_disk_full_stops_cleanly(tmp_path, monkeypatch):
    """Rows written but not committed are cut on open; a full disk undoes the batch and keeps the rest."""
    from mc2export.library import store
    from mc2export.library.store import DiskFull, Item, Library, Model

    lib = tmp_path / "lib"
    m = Model("mobileclip2-s0", "c" * 64, 8, "test")
    rng = np.random.default_rng(0)
    with Library.open(lib, m) as L:
        L.commit([Item(f"/p{i}", 1, 1, rng.normal(size=8)) for i in range(3)])
        f = L.shard_file(0)
        f.write_bytes(f.read_bytes() + b"\1" * 16 * 2)  # a killed run's rows that never committed
    with Library.open(lib, m) as L:
        assert f.stat().st_size == 3 * 16 and L.counts()["rows"] == 3
        real = os.pwrite

        def full(fd, data, off):
            real(fd, bytes(data)[:5], off)
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(store.os, "pwrite", full)
        with pytest.raises(DiskFull, match="disk is full"):
            L.commit([Item("/p9", 1, 1, rng.normal(size=8))])
        monkeypatch.setattr(store.os, "pwrite", real)
        assert f.stat().st_size == 3 * 16 and L.counts() == {"ok": 3, "skipped": 0, "deleted": 0, "rows": 3,
                                                              "dead_rows": 0}
        L.commit([Item("/p9", 1, 1, rng.normal(size=8))])
        assert L.counts()["rows"] == 4


def _children(pid: int) -> list:
    p = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in p.read_text().split()] if p.is_file() else []


def test_resume_after_sigkill(tmp_path, s0_onnx):
    """A subprocess killed by SIGKILL mid-run, then rerun, gives the library an uninterrupted run gives."""
    photos = _album(tmp_path / "photos", 16)
    ref = tmp_path / "ref"
    assert _index(photos, ref, s0_onnx, "--commit-every", 4) == 0
    lib = tmp_path / "lib"
    cmd = [sys.executable, "-m", "mc2export.cli", "index", str(photos), "--out", str(lib), "--bundle", str(s0_onnx),
           "--workers", "1", "--threads", "1", "-q", "--commit-every", "4"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    done = 0
    while time.time() < deadline and proc.poll() is None:
        if (lib / "manifest.sqlite").is_file():
            try:
                with sqlite3.connect(f"file:{lib / 'manifest.sqlite'}?mode=ro", uri=True, timeout=1) as db:
                    done = db.execute("SELECT COUNT(*) FROM photos").fetchone()[0]
            except sqlite3.Error:
                done = 0
            if done >= 4:
                break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed"
    workers = _children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.05)
    assert not [w for w in workers if Path(f"/proc/{w}").exists()], "decode workers outlived the killed run"
    _, part = _dump(lib)
    assert 4 <= part["ok"] < 16
    assert _index(photos, lib, s0_onnx, "--commit-every", 4) == 0
    assert _dump(lib) == _dump(ref)


def test_ray_engine_matches_local(tmp_path, s0_onnx):
    pytest.importorskip("ray")
    photos = _album(tmp_path / "photos", 6)
    (photos / "page.jpg").write_text("<html>no</html>")
    local, ray_lib = tmp_path / "local", tmp_path / "ray"
    assert _index(photos, local, s0_onnx, "--commit-every", 4) == 0
    assert _index(photos, ray_lib, s0_onnx, "--commit-every", 4, "--engine", "ray") == 0
    assert _dump(ray_lib) == _dump(local)
    assert json.loads((ray_lib / "stats.json").read_text())["engine"] == "ray"


def test_default_model_exported_once_into_the_cache(tmp_path, s0_onnx, monkeypatch):
    """Without --bundle: the machine's fast format is exported once into MC2EXPORT_CACHE, then reused."""
    import shutil

    import mc2export.export as export
    from mc2export.library.model import default_format

    calls = []

    def fake_export(fmt, variant, *, out, **kw):  # stands in for the minutes-long real export
        calls.append((fmt, variant, kw["precision"], kw["towers"], kw["batch"]))
        shutil.copytree(s0_onnx, out)

    monkeypatch.setattr(export, "export_bundle", fake_export)
    monkeypatch.setenv("MC2EXPORT_CACHE", str(tmp_path / "cache"))
    ckpt = tmp_path / "w.safetensors"
    ckpt.write_bytes(b"weights")
    photos = _album(tmp_path / "photos", 2)
    lib = tmp_path / "lib"
    for extra in ([], [3]):
        if extra:
            _photo(photos / "more.jpg", 3)
        assert _run("index", photos, "--out", lib, "--checkpoint", ckpt, "--workers", 0, "-q") == 0
    fmt, precision = default_format()
    assert calls == [(fmt, "mobileclip2-s0", precision, "image,text", 8)]
    assert fmt == ("openvino" if importlib.util.find_spec("openvino") and importlib.util.find_spec("nncf") else "onnx")
    assert _dump(lib)[1]["ok"] == 3


def test_ann_index_recall_and_dead_rows(tmp_path):
    pytest.importorskip("faiss")
    from mc2export.library.search import ann_fresh, build_ann, exact_scores, search
    from mc2export.library.store import Item, Library, Model

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 32))
    v = centres[rng.integers(0, 40, 4000)] + rng.normal(0, 0.5, (4000, 32))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    with Library.open(tmp_path / "lib", Model("mobileclip2-s0", "a" * 64, 32, "synthetic")) as L:
        L.commit([Item(f"/p{i:05d}", 1, 1, v[i]) for i in range(4000)])
        info = build_ann(L, k=10)
        assert ann_fresh(L) and info["recall_at_k"] >= 0.95 and info["rows"] == 4000
        q = v[7] + rng.normal(0, 0.05, 32)
        best = exact_scores(L, q, 1)[0]
        L.tombstone([L.at([best[1:]])[0]])  # the best match is deleted: neither search may return it
        hits, method = search(L, q, 10, exact=False)
        assert method == "ann" and len(hits) == 10 and (best[1], best[2]) not in {(h.shard, h.row) for h in hits}
        exact, _ = search(L, q, 10, exact=True)
        assert len({h.path for h in hits} & {h.path for h in exact}) >= 8
        L.commit([Item("/new", 1, 1, v[0])])
        assert not ann_fresh(L)  # a stale index is not used
        assert search(L, q, 10)[1] == "exact"


def test_webdataset_tar_and_files_from(tmp_path, s0_onnx):
    import tarfile

    src = _album(tmp_path / "src", 3)
    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tf:
        for f in sorted(src.rglob("*.jpg"))[:2]:
            tf.add(f, arcname=f"{f.stem}.jpg")
        tf.add(src / "sub0" / "p000.jpg", arcname="p000.json")  # not an image name: ignored
    listing = tmp_path / "list.txt"
    listing.write_text(f"{src / 'sub1' / 'p001.jpg'}\n\n")
    lib = tmp_path / "lib"
    assert _run("index", shard, "--files-from", listing, "--out", lib, "--bundle", s0_onnx, "--workers", 1,
                "-q") == 0
    rows, counts = _dump(lib)
    keys = [r[0] for r in rows]
    assert counts["ok"] == 3 and sum("::" in k for k in keys) == 2
    vec = {k.rsplit("/", 1)[-1].split("::")[-1]: r[7] for k, r in zip(keys, rows)}
    assert vec["p001.jpg"] != vec["p000.jpg"]
    from mc2export.library.sheet import thumbnail

    assert thumbnail(next(k for k in keys if "::" in k)).startswith("data:image/jpeg;base64,")


def test_progress_lines():
    from mc2export.library.progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, log = Tty(), io.StringIO()
    for out in (tty, log):
        p = Progress(10, out=out, every=0.0)
        p.update(ok=3, skipped=1)
        p.add("decode", 0.5)
        p.finish()
    assert tty.getvalue().startswith("\rindexed 4/10 ") and "skipped 1" in tty.getvalue() and "ETA" in tty.getvalue()
    assert log.getvalue().startswith("indexed 4/10 ") and "\r" not in log.getvalue()
    assert Progress(1, out=io.StringIO()).every == 30.0 and Progress(1, out=Tty()).every == 0.5


def test_decoder_shares_the_resized_size_bound():
    """Issue 23: index's decoder holds the bound of every other image path (preprocess.resized_size) even where
    its own aspect-ratio limit is raised."""
    import io

    from PIL import Image

    from mc2export.library.decode import DecodeConfig, Unreadable, open_checked

    strip = io.BytesIO()
    Image.new("RGB", (1, 100000)).save(strip, "PNG")
    with pytest.raises(Unreadable, match="extreme aspect ratio"):
        open_checked(strip.getvalue(), DecodeConfig({"resolution": 256}))
    with pytest.raises(Unreadable, match="256x25600000 pixels"):
        open_checked(strip.getvalue(), DecodeConfig({"resolution": 256}, max_aspect=1e9))
