"""examples/web in a real headless Chromium (Debian's chromium, driven by Playwright; no browser download).

Against what the Python package computes: the JavaScript tokenizer id for id on every string of
``mc2export app-vectors`` (and on random strings against the portable cleaning), the preprocessing byte for
byte on every image case (and the float tensors bit for bit), the browser's own image decoding against PIL,
embeddings of MobileCLIP2-S0 and MobileCLIP-S0 fp32 ONNX bundles through ``window.mc2`` against the folded
PyTorch model (cosine >= 0.99999), the verification vectors (verify/) run on load (pass, and clear failures on
damaged vectors), config.json errors, a classification shown on the page (screenshot, top label checked),
the benchmark document against the harness schema, and the acceptance script examples/web/check_bundle.py.

Skipped only when /usr/bin/chromium is absent (CI installs it: .ci/run). Playwright (PyPI) and
examples/web/node_modules (``npm ci``) are then required.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from mc2export.export.reading import write_config

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "examples" / "web"
VECTORS = REPO / "examples" / "shared" / "vectors"
CHROMIUM = os.environ.get("MC2_CHROMIUM", "/usr/bin/chromium")
# This machine's network is closed: nothing may reach out (and no first-run, sync or component downloads).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} not found: apt-get install chromium (CI installs it in .ci/run)", allow_module_level=True)


def _require_tools():
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("chromium is installed but Playwright is not: pip install playwright (.ci/run does)", pytrace=False)
    if not (WEB / "node_modules" / "onnxruntime-web" / "package.json").is_file():
        pytest.fail("examples/web/node_modules is missing: run `npm ci` in examples/web (.ci/run does)", pytrace=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """examples/web over HTTP on 127.0.0.1 (COOP/COEP: cross-origin isolated, multi-threaded WASM), with
    /vectors/ and /vocab/ mounted; tests mount bundles with ``server.mount(name, folder)``."""
    _require_tools()
    sys.path.insert(0, str(WEB))
    try:
        import serve
    finally:
        sys.path.remove(str(WEB))
    from mc2export.tokenizer import get_tokenizer

    vocab = tmp_path_factory.mktemp("vocab")
    get_tokenizer().export_vocab(vocab)
    mounts = {"vectors": VECTORS, "vocab": vocab}
    srv, url = serve.start(WEB, mounts)
    handler = srv.RequestHandlerClass.func  # functools.partial(handler class, directory=...)

    class Server:
        base = url

        @staticmethod
        def mount(name: str, folder: Path) -> str:
            handler.mounts[name] = Path(folder).resolve()
            return f"/{name}/"

    yield Server
    srv.shutdown()


@pytest.fixture(scope="module")
def app_bundles(app_bundles, tmp_path_factory):
    """The session's ONNX bundles as the app reads them: bundle_version 2 with config.json.sha256
    (tests/bundle_v2.py: a plain copy where the exporter already writes version 2)."""
    from bundle_v2 import v2_copy

    class V2:
        def __init__(self):
            self.done = {}

        def __getitem__(self, key):
            if key not in self.done:
                self.done[key] = v2_copy(app_bundles[key], tmp_path_factory.mktemp("v2") / key)
            return self.done[key]

    return V2()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                                                   viewport={"width": 1000, "height": 900})
        yield ctx
        ctx.close()


@pytest.fixture
def page(browser, server):
    pg = browser.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(server.base + "index.html")
    yield pg
    pg.close()
    assert not errors, errors


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


JS_DECODE = """const u8 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const b64 = (b) => { let s = ""; for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000)); return btoa(s); };"""


# -- tokenizer -------------------------------------------------------------------------------------------------

def test_tokenizer_matches_python_on_every_vector(page):
    text = json.loads((VECTORS / "text.json").read_text(encoding="utf-8"))
    portable = json.loads((VECTORS / "portable.json").read_text(encoding="utf-8"))
    got = page.evaluate("""async (texts) => {
      const t = await import("/mc2/tokenizer.js");
      const [v, m] = await Promise.all([fetch("/vocab/vocab.json").then((r) => r.text()), fetch("/vocab/merges.txt").then((r) => r.text())]);
      const tok = t.ClipTokenizer.fromFiles(v, m);
      return { rows: texts.map((s) => { const r = tok.tokenize(s); return { ids: Array.from(r.row.slice(0, Math.min(r.nTokens, 77))),
               row: Array.from(r.row), truncated: r.truncated, clean: t.clean(s) }; }),
               entities: t.ENTITIES, ligatures: t.LIGATURES, control: t.CONTROL_RANGES, ws: t.PYTHON_WHITESPACE,
               quotes: [t.SINGLE_QUOTES, t.DOUBLE_QUOTES] };
    }""", [e["text"] for e in text["texts"]])
    bad = []
    for e, g in zip(text["texts"], got["rows"]):
        want_ids = e["ids"] if e["exact"] else e["portable_ids"]
        want_clean = e["clean"] if e["exact"] else e["portable_clean"]
        if g["ids"] != want_ids or g["clean"] != want_clean:
            bad.append((e["text"], e["note"], g["ids"][:12], want_ids[:12]))
        assert len(g["row"]) == 77 and all(v == 0 for v in g["row"][len(g["ids"]):])
        assert g["truncated"] == (e["truncated"] if e["exact"] else e["portable_truncated"])
    assert not bad, bad[:5]
    assert sum(e["exact"] for e in text["texts"]) == text["counts"]["exact"] >= 150
    # the cleaning tables are the reference's (mc2export/appvectors.py)
    assert got["entities"] == portable["entities"]
    assert {int(k): v for k, v in got["ligatures"].items()} == {ord(k): v for k, v in portable["ligatures"].items()}
    assert [list(r) for r in got["control"]] == [list(r) for r in portable["control_char_ranges"]]
    assert got["ws"] == portable["python_whitespace"]
    assert got["quotes"] == [portable["single_quotes"], portable["double_quotes"]]


def test_tokenizer_on_random_strings_matches_the_portable_cleaning(page):
    """Strings drawn from the characters the cleaning treats specially: the JavaScript cleaning equals
    portable_clean (Python) and the ids equal Python's BPE of that text; where portable_clean equals
    Python's full cleaning the ids equal mc2export.tokenize."""
    from mc2export.appvectors import _row_for_cleaned, _tokenizer, portable_clean
    from mc2export.tokenizer import clean_text, tokenize

    rng = random.Random(0)
    pool = (list("abcXYZ  '&;#<>.,!?-0123") + ["&amp;", "&lt;", "&#233;", "&#x41;", "&eacute;", "&hearts;", "\n", "\t",
            "\u00a0", "\u3000", "\u2019", "\u201c", "\ufb01", "\uff21", "\uff76", "\x1b[31m", "\x07", "\ufeff",
            "\u0301", "e\u0301", "\u00c9", "\u03a3", "\u0130", "\u4e00", "\U0001f431", "\u0661", "\u00bd", "'S", "'ll"])
    texts = ["".join(rng.choice(pool) for _ in range(rng.randint(0, 14))) for _ in range(300)]
    got = page.evaluate("""async (texts) => {
      const t = await import("/mc2/tokenizer.js");
      const [v, m] = await Promise.all([fetch("/vocab/vocab.json").then((r) => r.text()), fetch("/vocab/merges.txt").then((r) => r.text())]);
      const tok = t.ClipTokenizer.fromFiles(v, m);
      return texts.map((s) => [t.clean(s), Array.from(tok.tokenize(s).row)]);
    }""", texts)
    tok = _tokenizer()
    exact = 0
    for s, (clean, row) in zip(texts, got):
        assert clean == portable_clean(s), repr(s)
        want = _row_for_cleaned(tok, clean)
        assert row[:len(want)] == want, repr(s)
        if clean == clean_text(s):
            exact += 1
            assert row == tokenize([s])[0].tolist(), repr(s)
    assert exact > 200


# -- preprocessing ---------------------------------------------------------------------------------------------

def _stored_rgba(path: Path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA")), im.mode


def test_preprocessing_matches_python_on_every_image_case(page):
    """Pixels as stored (PIL), EXIF orientation read from the file bytes by the JavaScript reader and applied
    by the port, Pillow's resampling port, center crop: the uint8 crop equals Python's byte for byte and the
    float32 tensors (u8/255, and both mean/std sets) bit for bit (SHA-256 of the little-endian bytes)."""
    images = json.loads((VECTORS / "images.json").read_text(encoding="utf-8"))
    cases = []
    for c in images["cases"]:
        path = VECTORS / "images" / c["image"]
        rgba, mode = _stored_rgba(path)
        cases.append({"file": _b64(path.read_bytes()), "rgba": _b64(rgba.tobytes()), "w": rgba.shape[1], "h": rgba.shape[0],
                      "alpha": mode == "RGBA", "r": c["resolution"], "interp": c["interpolation"]})
    sets = {k: v for k, v in images["mean_std"].items()}
    got = page.evaluate("""async ([cases, sets]) => {
      %s
      const p = await import("/mc2/preprocess.js");
      const hex = async (buf) => Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", buf)), (b) => b.toString(16).padStart(2, "0")).join("");
      const le = (f) => { const dv = new DataView(new ArrayBuffer(f.length * 4)); f.forEach((v, i) => dv.setFloat32(i * 4, v, true)); return dv.buffer; };
      const out = [];
      for (const c of cases) {
        const o = p.readOrientation(u8(c.file));
        const up = p.applyOrientation(u8(c.rgba), c.w, c.h, o);
        const crop = p.resizeCrop(up.rgba, up.width, up.height, c.r, p.parseInterpolation(c.interp), c.alpha);
        const f32 = { unit: await hex(le(p.toCHW(crop, c.r))) };
        for (const [name, ms] of Object.entries(sets)) f32[name] = await hex(le(p.toCHW(crop, c.r, ms.mean, ms.std)));
        out.push({ orientation: o, u8: await hex(crop), f32 });
      }
      return out;
    }""" % JS_DECODE, [cases, sets])
    names = {i["file"]: i for i in images["images"]}
    for c, g in zip(images["cases"], got):
        assert g["orientation"] == names[c["image"]]["orientation"], c["image"]
        assert g["u8"] == c["u8_hwc_sha256"], f"{c['image']} {c['resolution']} {c['interpolation']}: crop differs"
        assert g["f32"] == c["f32_chw_sha256"], f"{c['image']} {c['resolution']} {c['interpolation']}: tensors differ"
    assert len(got) == len(images["cases"]) == 18


def test_orientation_reader_and_transforms(page):
    o = json.loads((VECTORS / "orientation.json").read_text(encoding="utf-8"))
    files = {f["file"]: _b64((VECTORS / "images" / f["file"]).read_bytes()) for f in o["files"]}
    got = page.evaluate("""async ([o, files]) => {
      %s
      const p = await import("/mc2/preprocess.js");
      const src = Uint8Array.from(o.input.pixels.flatMap((px) => [...px, 255]));
      return { cases: o.cases.map((c) => { const r = p.applyOrientation(src, o.input.size[0], o.input.size[1], c.orientation);
                 const px = []; for (let i = 0; i < r.width * r.height; i++) px.push(Array.from(r.rgba.slice(i * 4, i * 4 + 3)));
                 return { size: [r.width, r.height], pixels: px }; }),
               files: Object.fromEntries(Object.entries(files).map(([k, v]) => [k, p.readOrientation(u8(v))])) };
    }""" % JS_DECODE, [o, files])
    for c, g in zip(o["cases"], got["cases"]):
        assert g == {"size": c["size"], "pixels": c["pixels"]}, c["orientation"]
    assert got["files"] == {f["file"]: f["orientation"] for f in o["files"]}


def test_browser_decoding_against_pil(page, server):
    """The page's decoder (createImageBitmap: the browser applies EXIF orientation, no colour management,
    no premultiplication) against PIL's exif_transpose: opaque PNGs decode to the same pixels, so their crops
    equal Python's; the JPEG comes out upright; RGBA pixels with 0 < alpha < 255 pass through the canvas's
    premultiplied storage -- the crop difference is measured and bounded here (and documented)."""
    from PIL import Image, ImageOps

    images = json.loads((VECTORS / "images.json").read_text(encoding="utf-8"))
    files = [i["file"] for i in images["images"]]
    got = page.evaluate("""async (files) => {
      %s
      const { decodeImage } = await import("/mc2/engine.js");
      const p = await import("/mc2/preprocess.js");
      const out = {};
      for (const f of files) {
        const d = await decodeImage(await (await fetch("/vectors/images/" + f)).blob());
        const alpha = d.rgba.some((v, i) => i %% 4 === 3 && v !== 255);
        out[f] = { w: d.width, h: d.height, alpha,
                   crop256: b64(p.resizeCrop(d.rgba, d.width, d.height, 256, "bilinear", alpha)),
                   sha: Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", d.rgba))).map((b) => b.toString(16).padStart(2, "0")).join("") };
      }
      return out;
    }""" % JS_DECODE, files)
    expected_crop = {c["image"]: c for c in images["cases"] if (c["resolution"], c["interpolation"]) == (256, "bilinear")}
    for f in files:
        with Image.open(VECTORS / "images" / f) as im:
            up = ImageOps.exif_transpose(im).convert("RGBA")
        g = got[f]
        assert (g["w"], g["h"]) == up.size, f"{f}: not upright"
        if f.endswith(".jpg"):
            continue  # decoders differ by a level or two: orientation only
        crop = np.frombuffer(base64.b64decode(g["crop256"]), np.uint8)
        want = np.asarray(Image.open(VECTORS / "images" / expected_crop[f]["crop_png"]).convert("RGB")).reshape(-1)
        if not g["alpha"]:
            assert g["sha"] == hashlib.sha256(np.asarray(up).tobytes()).hexdigest(), f"{f}: decoded pixels differ from PIL"
            assert np.array_equal(crop, want), f"{f}: crop differs"
        else:  # the canvas round trip (premultiplied storage) may move a level where alpha is small
            diff = np.abs(crop.astype(int) - want.astype(int))
            assert diff.max() <= 2 and (diff > 0).mean() < 0.05, (f, int(diff.max()), float((diff > 0).mean()))


# -- the bundles through window.mc2 --------------------------------------------------------------------------

def _reference(bundle: Path, checkpoint: Path, images, texts):
    """The folded PyTorch model's embeddings and mc2export's preprocessing / tokens (Python's side)."""
    import torch

    import mc2export

    cfg = json.loads((bundle / "config.json").read_text())
    model = mc2export.create_model(cfg["variant"], checkpoint=checkpoint, fold=True).eval()
    pre = mc2export.image_transform(cfg["variant"])
    x = torch.stack([pre(im) for im in images])
    tok = mc2export.tokenize(texts)
    with torch.no_grad():
        return (x.numpy(), model.encode_image(x, normalize=True).numpy(), tok.numpy(),
                model.encode_text(tok, normalize=True).numpy())


def _cos(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


TEXTS = ["a photo of a cat", "", "A Photo Of A DOG.", "caf\u00e9 &amp; cr\u00e8me br\u00fbl\u00e9e", "a red disc on a gradient",
         "a very long caption " + " ".join(f"word{i}" for i in range(90)), "a <end_of_text> b"]


@pytest.mark.parametrize("key", ["s0", "mcs0"])
def test_embeddings_match_python(key, page, server, app_bundles, checkpoints):
    from PIL import Image, ImageOps

    bundle = app_bundles[key]
    images = []
    for name in ("landscape_400x300.png", "portrait_270x480.png", "small_150x100.png", "exif6_260x330.png", "rgba_300x260.png"):
        with Image.open(VECTORS / "images" / name) as im:
            images.append(ImageOps.exif_transpose(im).convert("RGBA" if im.mode == "RGBA" else "RGB"))
    x, img_ref, tok_ref, txt_ref = _reference(bundle, checkpoints[key], images, TEXTS)
    url = server.mount(f"bundle-{key}", bundle)
    payload = [{"rgba": _b64(np.asarray(im.convert("RGBA")).tobytes()), "w": im.size[0], "h": im.size[1]} for im in images]
    got = page.evaluate("""async ([url, images, texts]) => {
      %s
      const info = await mc2.load(url);
      const out = { info, pre: [], img: [], tok: [], txt: [] };
      for (const im of images) {
        const rgba = u8(im.rgba);
        out.pre.push(b64(new Uint8Array(mc2.preprocess(rgba, im.w, im.h).buffer)));
        out.img.push(Array.from(await mc2.embedImage(rgba, im.w, im.h)));
      }
      for (const t of texts) { out.tok.push(Array.from(mc2.tokenize(t))); out.txt.push(Array.from(await mc2.embedText(t))); }
      return out;
    }""" % JS_DECODE, [url, payload, TEXTS])
    info = got["info"]
    assert info["backend"] == "wasm" and info["crossOriginIsolated"] and info["threads"] >= 1
    assert info["verify"]["status"] == "passed", info["verifyLines"]
    pre = np.stack([np.frombuffer(base64.b64decode(s), "<f4") for s in got["pre"]]).reshape(x.shape)
    assert np.array_equal(pre, x), "mc2.preprocess differs from mc2export.image_transform"
    assert np.array_equal(np.array(got["tok"]), tok_ref), "mc2.tokenize differs from mc2export.tokenize"
    ci, ct = _cos(got["img"], img_ref), _cos(got["txt"], txt_ref)
    assert ci.min() >= 0.99999 and ct.min() >= 0.99999, (ci, ct)
    assert np.allclose(np.linalg.norm(got["img"], axis=1), 1, atol=1e-5)  # the bundle's outputs are normalized


# -- verify/ ---------------------------------------------------------------------------------------------------

def _damaged(bundle: Path, root: Path, name: str, edit) -> Path:
    """A copy of the bundle's small files (models linked) with verify/ edited by ``edit(folder)``."""
    d = root / name
    d.mkdir()
    for f in bundle.iterdir():
        if f.suffix == ".onnx":
            (d / f.name).symlink_to(f)
        elif f.is_dir():
            shutil.copytree(f, d / f.name)
        else:
            shutil.copy(f, d / f.name)
    edit(d)
    from bundle_v2 import seal

    seal(d)  # config.json edited on purpose: these cases test verify/, not the config checksum
    return d


def _edit_manifest(**changes):
    def edit(d: Path):
        m = json.loads((d / "verify" / "manifest.json").read_text())
        for k, v in changes.items():
            node = m
            *path, last = k.split(".")
            for p in path:
                node = node[p]
            node[last] = v
        (d / "verify" / "manifest.json").write_text(json.dumps(m))
        cfg = json.loads((d / "config.json").read_text())
        cfg["files"].pop("verify/manifest.json", None)  # edited on purpose: not a checksum failure
        write_config(d, cfg)
    return edit


def _perturb_expected(d: Path):
    p = d / "verify" / "text_expected.f32"
    a = np.fromfile(p, "<f4").reshape(6, -1)
    a[2] += np.float32(0.05) * np.sign(a[2])  # row 2 moves: cosine ~0.99, beyond the fp32 tier
    a.astype("<f4").tofile(p)
    cfg = json.loads((d / "config.json").read_text())
    cfg["files"]["verify/text_expected.f32"]["sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
    write_config(d, cfg)


def _truncate(d: Path):
    p = d / "verify" / "image_expected.f32"
    p.write_bytes(p.read_bytes()[:-4])
    cfg = json.loads((d / "config.json").read_text())
    cfg["files"].pop("verify/image_expected.f32")
    write_config(d, cfg)


def _flip_byte(d: Path):
    p = d / "verify" / "image_inputs.u8"
    b = bytearray(p.read_bytes())
    b[100] ^= 0xFF
    p.write_bytes(bytes(b))


def _nan_expected(d: Path):
    p = d / "verify" / "image_expected.f32"
    a = np.fromfile(p, "<f4")
    a[3] = np.nan
    a.astype("<f4").tofile(p)
    cfg = json.loads((d / "config.json").read_text())
    cfg["files"]["verify/image_expected.f32"]["sha256"] = hashlib.sha256(p.read_bytes()).hexdigest()
    (d / "config.json").write_text(json.dumps(cfg))


def _loose_and_perturbed(d: Path):
    _perturb_expected(d)
    _edit_manifest(tolerance={"cosine_min": -1.0, "max_abs_over_std": 1e9})(d)


CASES = {
    "perturbed": (_perturb_expected, "failed", ["text: 6 rows", "FAIL - cosine min"]),
    # the reading rules (issue 23): the tolerance is the tier's in code, whatever the manifest says
    "loose_tolerance": (_loose_and_perturbed, "failed", ["tier fp32: cosine >= 0.99999", "FAIL - cosine min"]),
    "nan": (_nan_expected, "error", ["image_expected.f32 holds NaN or infinite values"]),
    "precision": (_edit_manifest(precision="int8"), "error", ["precision \"int8\" differs from config.json's \"fp32\""]),
    "older": (_edit_manifest(version=0), "error", ["manifest version 0 is not one this app reads"]),
    "climbs": (_edit_manifest(**{"towers.image.expected.file": "verify/../config.json"}), "error", ["must be a path inside verify/"]),
    "rows": (_edit_manifest(**{"towers.text.inputs.shape": [20000, 77]}), "error", ["text inputs hold 20000 rows (at most 10000)"]),
    "big_endian": (_edit_manifest(byte_order="big"), "error", ['byte_order must be "little"']),
    "newer": (_edit_manifest(version=2), "error", ["manifest version 2 is newer than this app understands"]),
    "shape": (_edit_manifest(**{"towers.image.inputs.shape": [4, 224, 224, 3]}), "error", ["is not [N, 256, 256, 3]"]),
    "dtype": (_edit_manifest(**{"towers.text.inputs.dtype": "int64"}), "error", ['towers.text.inputs.dtype must be "int32"']),
    "size": (_truncate, "error", ["image_expected.f32 holds 8188 bytes, expected 8192"]),
    "checksum": (_flip_byte, "error", ["image_inputs.u8 is damaged (sha256 differs from config.json)"]),
    "outside": (_edit_manifest(**{"towers.text.inputs.file": "../config.json"}), "error", ["must be a path inside verify/"]),
    "absent": (lambda d: shutil.rmtree(d / "verify"), "absent", ["none in this bundle"]),
}


def test_verify_vectors_on_load_and_damaged_vectors(page, server, app_bundles, tmp_path):
    """Each damaged copy is read by the page's verify/ reader with the real S0 models: a perturbed expected
    row fails (naming the tower and the figures), malformed vectors give one clear error, none pass."""
    bundle = app_bundles["s0"]
    urls = {k: server.mount(f"damaged-{k}", _damaged(bundle, tmp_path, k, edit)) for k, (edit, _, _) in CASES.items()}
    ok_url = server.mount("bundle-s0", bundle)
    got = page.evaluate("""async ([ok, urls]) => {
      const { runVerify, describeReport } = await import("/mc2/verify.js");
      const { parseConfig } = await import("/mc2/config.js");
      await mc2.load(ok, { verify: false });
      const report = await mc2.verify();
      const out = { ok: [report.status, describeReport(report)] };
      for (const [k, url] of Object.entries(urls)) {
        const cfg = parseConfig(await (await fetch(url + "config.json")).text());
        const fetchBytes = async (rel, opts = {}) => { const r = await fetch(url + rel); if (r.status === 404 && opts.optional) return null;
                                                      if (!r.ok) throw new Error("HTTP " + r.status); return r.arrayBuffer(); };
        const e = mc2._engine();  // the loaded S0 models run the damaged vectors
        const r = await runVerify({ cfg, fetchBytes, runImage: (x) => e.runImage(x), runText: (x) => e.runText(x),
                                    toModelInput: (c) => e.modelInput(c) });
        out[k] = [r.status, describeReport(r)];
      }
      return out;
    }""", [ok_url, urls])
    assert got["ok"][0] == "passed", got["ok"]
    for k, (_, status, fragments) in CASES.items():
        st, lines = got[k]
        text = "\n".join(lines)
        assert st == status, (k, text)
        for f in fragments:
            assert f in text, (k, f, text)


# -- config.json -----------------------------------------------------------------------------------------------

def test_config_errors_are_one_clear_line(page, app_bundles):
    cfg = json.loads((app_bundles["s0"] / "config.json").read_text())

    def edited(**kw):
        c = json.loads(json.dumps(cfg))
        for k, v in kw.items():
            node = c
            *path, last = k.split(".")
            for p in path:
                node = node[p]
            if v is _DROP:
                node.pop(last)
            else:
                node[last] = v
        return json.dumps(c)

    cases = [("{ not json", "not valid JSON"), ('{"format": "x"}', "not an mc2export bundle"),
             (edited(runtime="executorch"), "the web app runs ONNX bundles"), (edited(batch=4), "--batch 4"),
             (edited(bundle_version=9), "update the app"), (edited(embed_dim="big"), "embed_dim must be an integer"),
             (edited(output_normalized="yes"), "output_normalized must be true or false"),
             (edited(logit_scale="100"), "logit_scale must be a number"), (edited(logit_scale=-1.0), "logit_scale must be positive"),
             (edited(**{"preprocess.interpolation": "lanczos"}), "interpolation 'lanczos' is not supported"),
             (edited(**{"preprocess.std": [1, 0, 1]}), "std must not contain 0"), (edited(preprocess=_DROP), "preprocess is missing"),
             (edited(**{"models.image.file": "image.pte"}), "is not a .onnx model"), (edited(models={}), "neither an image nor a text"),
             (edited(**{"weights.random_weights": "no"}), "random_weights must be true or false")]
    got = page.evaluate("""async (cases) => {
      const { parseConfig } = await import("/mc2/config.js");
      const ok = parseConfig(cases.ok);
      return { ok: [ok.resolution, ok.interpolation, ok.embedDim, ok.normalizeInput, ok.imageModel],
               upper: parseConfig(cases.upper).interpolation,
               errors: cases.bad.map((t) => { try { parseConfig(t); return null; } catch (e) { return e.name + ": " + e.message; } }) };
    }""", {"ok": json.dumps(cfg), "upper": edited(**{"preprocess.interpolation": "BICUBIC"}), "bad": [c for c, _ in cases]})
    assert got["ok"] == [256, "bilinear", 512, False, "image.onnx"] and got["upper"] == "bicubic"
    for (_, fragment), err in zip(cases, got["errors"]):
        assert err is not None and err.startswith("BundleError: ") and fragment in err and "\n" not in err, (fragment, err)


_DROP = object()


# -- the page, as a person uses it -------------------------------------------------------------------------------

LABELS = ["red disc", "blue box", "cat", "dog", "a diagram"]


def _python_top_label(bundle: Path, image_path: Path):
    """Zero-shot with the 7-template ensemble in Python (mc2export's preprocessing and tokenizer, the bundle's
    models in onnxruntime): (probabilities, top label)."""
    import onnxruntime as ort
    from PIL import Image

    import mc2export
    from mc2export.zeroshot import SIMPLE_TEMPLATES

    cfg = json.loads((bundle / "config.json").read_text())
    img = ort.InferenceSession(str(bundle / "image.onnx"), providers=["CPUExecutionProvider"])
    txt = ort.InferenceSession(str(bundle / "text.onnx"), providers=["CPUExecutionProvider"])
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    classes = []
    for label in LABELS:
        tok = mc2export.tokenize([t.format(label) for t in SIMPLE_TEMPLATES]).numpy().astype(np.int32)
        embs = [unit(txt.run(None, {"tokens": tok[i:i + 1]})[0][0].astype(np.float64)) for i in range(len(tok))]
        classes.append(unit(np.mean(embs, 0)))
    with Image.open(image_path) as im:
        x = mc2export.image_transform(cfg["variant"])(im)[None].numpy()
    e = unit(img.run(None, {"image": x})[0][0].astype(np.float64))
    logits = cfg["logit_scale"] * np.stack(classes) @ e
    p = np.exp(logits - logits.max())
    return p / p.sum(), LABELS[int(np.argmax(logits))]


@pytest.fixture
def plain_page(browser, tmp_path_factory):
    """The app served WITHOUT cross-origin isolation headers: onnxruntime-web runs on one thread."""
    sys.path.insert(0, str(WEB))
    try:
        import serve
    finally:
        sys.path.remove(str(WEB))
    return serve


def test_classification_on_the_page_with_screenshot(browser, plain_page, app_bundles, tmp_path):
    """A person's path through the page: load the S0 bundle from the URL field's query parameter, see the
    verification vectors pass, pick a photo, read the ranked labels; then the benchmark tab writes a harness
    document. Served without COOP/COEP: the single-threaded WASM path. The top label is Python's."""
    from mc2export.bench.schema import validate
    from mc2export.bench.stats import summarize

    bundle = app_bundles["s0"]
    photo = VECTORS / "images" / "landscape_400x300.png"
    probs, top = _python_top_label(bundle, photo)
    assert np.sort(probs)[-1] - np.sort(probs)[-2] > 1e-3, "labels nearly tied in Python: pick another photo"
    srv, url = plain_page.start(WEB, {"bundle": bundle}, isolation=False)
    pg = browser.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        pg.goto(url + "index.html?bundle=bundle/")
        pg.wait_for_function("document.getElementById('status').dataset.loaded !== undefined", timeout=180_000)
        assert pg.get_attribute("#status", "data-loaded") == "true", pg.inner_text("#error")
        assert "1 thread" in pg.inner_text("#status") and "MobileCLIP2-S0" in pg.inner_text("#status")
        assert pg.get_attribute("#verify", "data-status") == "passed"
        assert "Verification vectors: PASSED" in pg.inner_text("#verify")
        pg.fill("#labels", ", ".join(LABELS))
        pg.set_input_files("#photo", str(photo))
        pg.wait_for_selector("#ranked li", timeout=120_000)
        shot = tmp_path / "classify.png"
        pg.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if os.environ.get("MC2_TEST_ARTIFACTS"):  # keep the screenshot to look at
            shutil.copy(shot, Path(os.environ["MC2_TEST_ARTIFACTS"]) / "web-classify.png")
        assert pg.get_attribute("#ranked", "data-top") == top
        shown = pg.locator("#ranked li").first.inner_text()
        assert shown.startswith(top) and f"{probs.max() * 100:.1f}%" in shown, (shown, top, probs)
        crop = pg.evaluate("() => { const c = document.getElementById('crop'); return [c.width, c.height]; }")
        assert crop == [256, 256]
        # the benchmark tab: quick protocol, the harness's own document, the verification figures inside
        pg.click("nav button[data-tab=benchmark]")
        pg.click("#bench-run")
        pg.wait_for_selector("#bench-download:not([hidden])", timeout=180_000)
        doc = pg.evaluate("() => mc2app.lastBenchmark")
    finally:
        pg.close()
        srv.shutdown()
    assert not errors, errors
    validate(doc, what="the web app's benchmark document")
    r = doc["results"][0]
    assert doc["tool"]["name"] == "mc2export-web-app" and r["runtime"]["name"] == "onnxruntime" and r["runtime"]["threads"] == 1
    assert r["verdict"]["status"] == "reference" and r["mode"]["standard"] is True
    assert r["verify"]["status"] == "passed" and r["verify"]["towers"]["image"]["cosine_min"] >= 0.99999
    for tower in r["towers"].values():
        assert tower["iterations"] >= 20 and tower["duration_s"] >= 2.0
        ref = summarize(tower["samples_ms"])
        for k in ("p50", "p90", "p99", "mean", "trimmed_mean", "min", "max", "std"):
            assert tower["stats"][k] == pytest.approx(ref[k], abs=2e-4), k
    import hashlib as _h

    files = json.loads((bundle / "config.json").read_text())["files"]
    lines = "".join(f"{n}\t{files[n]['sha256']}\n" for n in sorted(files))
    assert r["bundle"]["checksum"] == _h.sha256(lines.encode()).hexdigest()


def test_acceptance_script_on_a_fresh_onnx_bundle(app_bundles, checkpoints, tmp_path):
    """examples/web/check_bundle.py (run as a user runs it): only the documented window.mc2 API, its own images
    and texts, compared with mc2export's Python pipeline (onnxruntime and the folded PyTorch model)."""
    import subprocess

    script = WEB / "check_bundle.py"
    out = tmp_path / "check.json"
    r = subprocess.run([sys.executable, str(script), str(app_bundles["s0"]), "--checkpoint", str(checkpoints["s0"]),
                        "--chromium", CHROMIUM, "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "PASSED" in r.stdout, r.stdout + r.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["passed"] and len(result["checks"]) == 6 and all(c["ok"] for c in result["checks"])
    assert result["verify"] == "passed"
    bad = subprocess.run([sys.executable, str(script), str(app_bundles["s0"] / "verify")], capture_output=True, text=True)
    assert bad.returncode == 2 and "is not a bundle" in bad.stderr and bad.stderr.count("\n") == 1


def test_tables_are_pythons(page):
    """The JavaScript copies of Python's tables: prompt templates, the paper's latency targets (the model
    cards), the pinned onnxruntime-web version (package.json)."""
    from mc2export import cards
    from mc2export.zeroshot import OPENAI_TEMPLATES, SIMPLE_TEMPLATES

    got = page.evaluate("""async () => {
      const zs = await import("/mc2/zeroshot.js"); const b = await import("/mc2/bench.js"); const e = await import("/mc2/engine.js");
      return { openai: zs.OPENAI_TEMPLATES, simple: zs.SIMPLE_TEMPLATES, targets: b.PAPER_TARGETS, ort: e.ORT_VERSION };
    }""")
    assert got["openai"] == list(OPENAI_TEMPLATES) and got["simple"] == list(SIMPLE_TEMPLATES)
    for vid in cards.list_variants():
        lat = cards.get_card(vid)["paper"]["latency_ms"]
        assert got["targets"][vid] == [lat["image"], lat["text"]], vid
    pkg = json.loads((WEB / "package.json").read_text())
    lock = json.loads((WEB / "package-lock.json").read_text())
    assert pkg["dependencies"]["onnxruntime-web"] == got["ort"] == lock["packages"]["node_modules/onnxruntime-web"]["version"]


# -- the photo index (docs/app_index.md) --------------------------------------------------------------------------

INDEX_VECTORS = VECTORS / "index"


def test_photo_index_reads_searches_and_writes_the_shared_vectors(page):
    """mc2/photoindex.js on the conformance vectors of mc2export.appindex: replay to the same live keys, stamps
    and fp16 bits, the same top-k (keys, scores within the tolerance), the torn and corrupt files kept up to
    their last whole record, another model's index refused, and the writer's file byte-identical to Python's."""
    expected = json.loads((INDEX_VECTORS / "expected.json").read_text(encoding="utf-8"))
    writer = json.loads((INDEX_VECTORS / "writer.json").read_text(encoding="utf-8"))
    got = page.evaluate("""async ([e, w]) => {
      const pi = await import("/mc2/photoindex.js");
      const bytes = async (f) => new Uint8Array(await (await fetch("/vectors/index/" + f)).arrayBuffer());
      const hex = async (buf) => Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", buf)), (b) => b.toString(16).padStart(2, "0")).join("");
      const idx = pi.PhotoIndex.replay(await bytes("library.mc2i"), e.header);
      const keys = idx.keys();
      const all = new Uint16Array(keys.length * idx.dim);
      keys.forEach((k, i) => all.set(idx.vectorBits(k), i * idx.dim));
      const out = { keys, stamps: keys.map((k) => idx.stamp(k)), records: idx.records, valid: idx.validLength,
                    dropped: idx.droppedBytes, firstBits: keys.slice(0, 3).map((k) => Array.from(idx.vectorBits(k))),
                    sha: await hex(all), searches: e.searches.map((s) => idx.search(Float32Array.from(s.query), s.k)) };
      for (const name of ["torn", "corrupt"]) {
        const t = pi.PhotoIndex.replay(await bytes(e[name].file), e.header);
        out[name] = { live: t.size, records: t.records, valid: t.validLength, dropped: t.droppedBytes, last: t.keys().at(-1) };
      }
      try { pi.PhotoIndex.replay(await bytes("other_model.mc2i"), e.header); out.other = "read"; }
      catch (x) { out.other = x.name + ": " + x.message; }
      out.otherAny = pi.PhotoIndex.replay(await bytes("other_model.mc2i")).header.variant;
      const wi = new pi.PhotoIndex(w.header);  // batches of any size give the same bytes
      const parts = [pi.encodeHeader(w.header), wi.encodeBatch(w.operations.slice(0, 7).map((o) => o.op === "put" ? o : { key: o.key, delete: true }))];
      for (const o of w.operations.slice(7)) parts.push(wi.encodeBatch([o.op === "put" ? o : { key: o.key, delete: true }]));
      const file = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let off = 0;
      for (const p of parts) { file.set(p, off); off += p.length; }
      out.writer = { bytes: file.length, sha: await hex(file), length: wi.validLength };
      const c = pi.PhotoIndex.replay(wi.compactBytes(), w.header);  // compaction keeps order, stamps and bits
      out.compacted = { keys: c.keys(), same: c.keys().every((k) => wi.vectorBits(k).every((b, i) => b === c.vectorBits(k)[i])), dead: c.deadBytes };
      return out;
    }""", [expected, writer])
    assert got["keys"] == [x["key"] for x in expected["live"]]
    assert got["stamps"] == [x["stamp"] for x in expected["live"]]
    assert (got["records"], got["valid"], got["dropped"]) == (expected["records"], expected["valid_length"], 0)
    assert got["firstBits"] == expected["first_vector_bits"] and got["sha"] == expected["vectors_sha256"]
    for s, hits in zip(expected["searches"], got["searches"]):
        assert [h["key"] for h in hits] == s["keys"], s["k"]
        assert np.allclose([h["score"] for h in hits], s["scores"], atol=expected["score_tolerance"], rtol=0)
    for name in ("torn", "corrupt"):
        t = expected[name]
        assert (got[name]["live"], got[name]["records"], got[name]["valid"], got[name]["dropped"]) == \
            (t["live"], t["records"], t["valid_length"], t["dropped"]), name
    assert got["torn"]["last"] == expected["torn"]["last_key"]
    assert got["other"].startswith("IndexError: this photo index was built by another model"), got["other"]
    assert got["otherAny"] == "mobileclip2-s2"
    assert got["writer"] == {"bytes": writer["bytes"], "sha": writer["sha256"], "length": writer["bytes"]}
    assert got["compacted"] == {"keys": got["keys"], "same": True, "dead": 0}


def test_photo_index_persists_across_page_loads(browser, server):
    """The journal in IndexedDB: batches appended, the page reloaded, the same index replayed; compaction in one
    transaction; another model's journal refused unless the user agrees to replace it."""
    script = """async ([step, dim]) => {
      const pi = await import("/mc2/photoindex.js");
      const h = { variant: "mobileclip2-s0", precision: "fp32", bundle_sha256: "ab".repeat(32), dim, vector_dtype: "float16" };
      const vec = (i) => Float32Array.from({ length: dim }, (_, j) => Math.sin(i * 7 + j));
      if (step === "write") {
        const p = await pi.openPersistent(h, { name: "t" });
        for (let b = 0; b < 5; b++) await p.append(Array.from({ length: 10 }, (_, i) => ({ key: `photo-${b * 10 + i}`, stamp: b * 10 + i, vector: vec(b * 10 + i) })));
        await p.append([{ key: "photo-3", delete: true }, { key: "photo-4", stamp: 99, vector: vec(99) }]);
        p.journal.close();
        return { size: p.index.size };
      }
      if (step === "read") {
        const p = await pi.openPersistent(h, { name: "t" });
        const out = { size: p.index.size, stamp4: p.index.stamp("photo-4"), has3: p.index.stamp("photo-3"), dead: p.index.deadBytes > 0,
                      top: p.index.search(vec(17), 1)[0].key, before: p.index.validLength };
        await p.compact();
        const again = pi.PhotoIndex.replay(await p.journal.load(), h);
        out.after = { size: again.size, length: again.validLength, keys: again.keys().join() === p.index.keys().join(), dead: again.deadBytes };
        p.journal.close();
        try { await pi.openPersistent({ ...h, variant: "mobileclip2-s2" }, { name: "t", confirmReplace: async () => false }); out.other = "opened"; }
        catch (e) { out.other = e.name + ": " + e.message; }
        const fresh = await pi.openPersistent({ ...h, variant: "mobileclip2-s2" }, { name: "t", confirmReplace: async () => true });
        out.replaced = fresh.index.size;
        fresh.journal.close();
        return out;
      }
    }"""
    pg = browser.new_page()
    pg.goto(server.base + "index.html")
    assert pg.evaluate(script, ["write", 24]) == {"size": 49}
    pg.close()
    pg = browser.new_page()  # a new page of the same profile: what a reload sees
    pg.goto(server.base + "index.html")
    got = pg.evaluate(script, ["read", 24])
    pg.close()
    assert got["size"] == 49 and got["stamp4"] == 99 and got["has3"] is None and got["dead"] and got["top"] == "photo-17"
    assert got["after"]["size"] == 49 and got["after"]["keys"] and got["after"]["dead"] == 0
    assert got["after"]["length"] < got["before"]
    assert got["other"].startswith("IndexError: this photo index was built by another model"), got["other"]
    assert got["replaced"] == 0


def test_bundle_reading_rules_on_load(page, server, app_bundles, tmp_path):
    """mc2.load under the reading rules (docs/bundle.md): bundle_version 2 only, config.json checked against
    config.json.sha256, model paths inside the bundle, the ONNX sessions' input / output names equal to
    config.json's -- each on an edited copy of the S0 bundle, each refused with one line."""
    from bundle_v2 import seal

    bundle = app_bundles["s0"]

    def copy(name, edit=None, sealed=True, drop_sha=False):
        d = tmp_path / name
        shutil.copytree(bundle, d, copy_function=os.link)
        cfg = json.loads((d / "config.json").read_text())
        if edit:
            edit(cfg)
        (d / "config.json").unlink()
        (d / "config.json").write_text(json.dumps(cfg, indent=1))
        if sealed:
            seal(d)
        if drop_sha:
            (d / "config.json.sha256").unlink()
        return server.mount(f"rules-{name}", d)

    def set_(path, value):
        def edit(c):
            node = c
            *parts, last = path.split(".")
            for p in parts:
                node = node[p]
            node[last] = value
        return edit

    image_io = json.loads((bundle / "config.json").read_text())["models"]["image"]
    assert [o["name"] for o in image_io["outputs"]] == ["embedding"], image_io  # the names the exporter writes
    cases = {
        copy("edited", sealed=False): "config.json does not match config.json.sha256",
        copy("no_sha", drop_sha=True): "config.json does not match config.json.sha256",
        copy("v1", set_("bundle_version", 1)): "bundle_version 1: written by an older mc2export",
        copy("climb", set_("models.image.file", "../image.onnx")): "has an empty, '.' or '..' component",
        copy("absolute", set_("models.text.file", "/etc/passwd.onnx")): "is not a relative POSIX path",
        copy("vocab", set_("tokenizer.vocab", "..\\vocab.json")): "is not a relative POSIX path",
        copy("precision", set_("precision", "fp8")): 'precision "fp8" is not one this app knows',
        copy("names", set_("models.image.outputs", [{"name": "features", "dtype": "float32", "shape": [1, 512]}])):
            "the image model's outputs are [\"embedding\"], but config.json says [\"features\"]",
    }
    got = page.evaluate("""async (urls) => {
      const out = {};
      for (const url of urls) {
        try { await mc2.load(url, { verify: false }); out[url] = "loaded"; } catch (e) { out[url] = e.name + ": " + e.message; }
      }
      return out;
    }""", list(cases))
    for url, fragment in cases.items():
        assert got[url].startswith("BundleError: ") and fragment in got[url] and "\n" not in got[url], (url, got[url])


def test_photos_indexed_at_reduced_size_into_the_persistent_index(page, server, app_bundles):
    """The page's indexing (mc2/library.js): photos decoded at about 2R on the short side (a 3000x2000 photo never
    becomes a full-size RGBA array), embedded with the S0 bundle, appended batch by batch to the IndexedDB journal
    under the bundle's header; adding the same files again embeds nothing; the photo's own embedding finds it
    first (the models' weights are synthetic here, so text queries are checked for shape only)."""
    url = server.mount("bundle-s0", app_bundles["s0"])
    names = ["landscape_400x300.png", "portrait_270x480.png", "small_150x100.png", "exif6_260x330.jpg", "rgba_300x260.png"]
    got = page.evaluate("""async ([url, names]) => {
      const info = await mc2.load(url, { verify: false });
      const lib = await import("/mc2/library.js");
      const { decodeImage } = await import("/mc2/engine.js");
      const c = new OffscreenCanvas(3000, 2000);
      const g = c.getContext("2d"); g.fillStyle = "#c03020"; g.fillRect(0, 0, 3000, 2000); g.fillStyle = "#2040c0"; g.fillRect(1000, 500, 1000, 1000);
      const big = new File([await c.convertToBlob({ type: "image/png" })], "big-3000x2000.png", { lastModified: 5 });
      const small = await decodeImage(big, { maxShortSide: 2 * info.resolution });
      const files = [big];
      for (const n of names) files.push(new File([await (await fetch("/vectors/images/" + n)).blob()], n, { lastModified: 7 }));
      const store = await lib.openLibrary(info, async () => true);
      const batches = [];
      const r1 = await lib.indexFiles(store, files, { resolution: info.resolution, batch: 4, embed: (rgba, w, h) => mc2.embedImage(rgba, w, h),
                                                      onProgress: (d, t) => batches.push([d, t]) });
      const r2 = await lib.indexFiles(store, files, { resolution: info.resolution, embed: (rgba, w, h) => mc2.embedImage(rgba, w, h) });
      // the models' weights are synthetic here (no real weights): search by the photo's own embedding
      const hits = store.index.search(await mc2.embedImage(small.rgba, small.width, small.height), 3);
      const text = store.index.search(await mc2.embedText("a photo of a blue square"), 3);
      const journal = await store.journal.load();
      store.journal.close();
      return { small: [small.width, small.height], r1, r2, batches, hits: hits.map((h) => h.key), top: hits[0].score, text: text.length,
               size: store.index.size,
               header: store.index.header, sha: info.configSha256, journal: journal.length, valid: store.index.validLength };
    }""", [url, names])
    r = 256
    assert got["small"] == [3 * r, 2 * r]
    assert got["r1"] == {"added": 6, "skipped": 0, "unchanged": 0, "stopped": False}, got["r1"]
    assert got["batches"] == [[4, 6], [6, 6]]
    assert got["r2"] == {"added": 0, "skipped": 0, "unchanged": 6, "stopped": False}
    assert got["size"] == 6 and got["journal"] == got["valid"]
    cfg_bytes = (app_bundles["s0"] / "config.json").read_bytes()
    assert got["header"]["bundle_sha256"] == got["sha"] == hashlib.sha256(cfg_bytes).hexdigest()
    assert got["header"]["variant"] == "mobileclip2-s0" and got["header"]["dim"] == 512
    assert got["hits"][0] == "big-3000x2000.png" and abs(got["top"] - 1) < 2e-3, (got["hits"], got["top"])
    assert got["text"] == 3
