"""Acceptance check of the web app on an ONNX bundle: the browser's embeddings against Python's.

    python examples/web/check_bundle.py BUNDLE [--checkpoint FILE] [--chromium /usr/bin/chromium] [--json OUT]

Serves examples/web and BUNDLE over HTTP on 127.0.0.1, opens the page in headless Chromium (Playwright,
the system's browser: nothing is downloaded) and uses only the documented page API -- ``mc2.load``,
``mc2.tokenize``, ``mc2.preprocess``, ``mc2.embedImage``, ``mc2.embedText`` -- on images and texts this script
makes itself (synthetic pictures of several sizes and aspect ratios, one with transparency; prompts,
punctuation, HTML entities, non-ASCII, an over-long caption). Python's side is mc2export's own pipeline:
``mc2export.image_transform`` + ``mc2export.tokenize`` and the bundle's models in onnxruntime, and with
``--checkpoint`` also the folded PyTorch model. Checked: model inputs identical (preprocessing bit for bit,
tokens id for id) and embeddings within the bundle's tier (fp32: cosine >= 0.99999; fp16 0.999; int8 0.99).
Exit 0 when everything holds, 1 when something does not, 2 for bad input.
"""
from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TEXTS = ["a photo of a dog", "an orange square on a blue background", "Tom &amp; Jerry's \u201cbest\u201d day!",
         "na\u00efve caf\u00e9 \u6771\u4eac \U0001f431", "", "THE QUICK BROWN FOX, 1234 & 5.6%",
         "a caption that is far too long " + " ".join(f"token{i}" for i in range(100))]
SIZES = [(640, 480), (300, 500), (129, 97), (256, 256), (777, 333)]


def make_images(seed: int = 7):
    """Synthetic RGB(A) pictures: gradients, discs, boxes and fine stripes (aliasing), one with alpha."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for k, (w, h) in enumerate(SIZES):
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        img = np.stack([255 * x / (w - 1), 255 * y / (h - 1), 127.5 + 127.5 * np.sin((x + 3 * y) / (4 + k))], -1)
        for _ in range(4):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.3) * min(w, h)
            img[(x - cx) ** 2 + (y - cy) ** 2 <= r * r] = rng.integers(0, 256, 3)
        x0, y0 = int(rng.uniform(0, w * 0.6)), int(rng.uniform(0, h * 0.6))
        img[y0:y0 + h // 4, x0:x0 + w // 4] = np.where(((x + y).astype(int) % 2 == 0)[y0:y0 + h // 4, x0:x0 + w // 4, None],
                                                     255, 0)
        rgb = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        if k == 3:
            alpha = np.clip(np.rint(255 * x / (w - 1)), 0, 255).astype(np.uint8)
            out.append(Image.fromarray(np.concatenate([rgb, alpha[..., None]], -1), "RGBA"))
        else:
            out.append(Image.fromarray(rgb, "RGB"))
    return out


def tier(precision: str) -> float:
    return 0.99999 if precision == "fp32" else 0.999 if precision == "fp16" else 0.99


def python_side(bundle: Path, cfg: dict, images, checkpoint):
    import onnxruntime as ort
    import torch

    import mc2export

    pre = mc2export.image_transform(cfg["variant"])
    x = torch.stack([pre(im) for im in images]).numpy()
    tok = mc2export.tokenize(TEXTS).numpy()
    ref = {"x": x, "tokens": tok}
    sess = {t: ort.InferenceSession(str(bundle / cfg["models"][t]["file"]), providers=["CPUExecutionProvider"])
            for t in ("image", "text")}
    ref["ort"] = (np.concatenate([sess["image"].run(None, {sess["image"].get_inputs()[0].name: x[i:i + 1]})[0] for i in range(len(x))]),
                  np.concatenate([sess["text"].run(None, {sess["text"].get_inputs()[0].name: tok[i:i + 1].astype(np.int32)})[0]
                                  for i in range(len(tok))]))
    if checkpoint is not None:
        model = mc2export.create_model(cfg["variant"], checkpoint=checkpoint, fold=True).eval()
        with torch.no_grad():
            norm = bool(cfg.get("output_normalized", True))
            ref["torch"] = (model.encode_image(torch.from_numpy(x), normalize=norm).numpy(),
                            model.encode_text(torch.from_numpy(tok), normalize=norm).numpy())
    return ref


def browser_side(bundle: Path, images, chromium: str) -> dict:
    sys.path.insert(0, str(HERE))
    import serve
    from playwright.sync_api import sync_playwright

    srv, url = serve.start(HERE, {"bundle": bundle})
    payload = [{"rgba": base64.b64encode(np.asarray(im.convert("RGBA")).tobytes()).decode(), "w": im.size[0], "h": im.size[1]}
               for im in images]
    try:
        with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
            ctx = p.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True, args=ARGS)
            page = ctx.new_page()
            page.goto(url + "index.html")
            return page.evaluate("""async ([images, texts]) => {
              const u8 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
              const info = await mc2.load("bundle/");
              const out = { info, x: [], img: [], tokens: [], txt: [] };
              for (const im of images) {
                const rgba = u8(im.rgba);
                out.x.push(Array.from(mc2.preprocess(rgba, im.w, im.h)));
                out.img.push(Array.from(await mc2.embedImage(rgba, im.w, im.h)));
              }
              for (const t of texts) { out.tokens.push(Array.from(mc2.tokenize(t))); out.txt.push(Array.from(await mc2.embedText(t))); }
              return out;
            }""", [payload, TEXTS])
    finally:
        srv.shutdown()


def cosines(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def read_bundle(bundle: Path) -> dict:
    """config.json under the reading rules, every file re-hashed (mc2export.export.bundle.verify_bundle)."""
    from mc2export.export.bundle import verify_bundle

    return verify_bundle(bundle)


def check(bundle: Path, checkpoint=None, chromium: str = "/usr/bin/chromium") -> dict:
    cfg = read_bundle(bundle)
    images = make_images()
    ref = python_side(bundle, cfg, images, checkpoint)
    got = browser_side(bundle, images, chromium)
    floor = tier(cfg.get("precision", "fp32"))
    x = np.asarray(got["x"], np.float32).reshape(ref["x"].shape)
    rows = [("preprocessing (mc2.preprocess vs mc2export.image_transform)", "identical" if np.array_equal(x, ref["x"])
             else f"max diff {np.abs(x - ref['x']).max():.3g}", bool(np.array_equal(x, ref["x"]))),
            ("tokens (mc2.tokenize vs mc2export.tokenize)", "identical" if np.array_equal(got["tokens"], ref["tokens"])
             else "differ", bool(np.array_equal(got["tokens"], ref["tokens"])))]
    for name, (img, txt) in [("onnxruntime (Python)", ref["ort"])] + ([("folded PyTorch", ref["torch"])] if "torch" in ref else []):
        for tower, ours, theirs in (("image", got["img"], img), ("text", got["txt"], txt)):
            c = cosines(ours, theirs)
            rows.append((f"{tower} embeddings vs {name} ({len(c)} inputs)", f"cosine min {c.min():.7f} (>= {floor})",
                         bool(c.min() >= floor)))
    return {"bundle": str(bundle), "variant": cfg["variant"], "precision": cfg.get("precision"),
            "browser": {k: got["info"][k] for k in ("backend", "threads", "crossOriginIsolated")},
            "verify": got["info"]["verify"]["status"] if got["info"].get("verify") else None,
            "checks": [{"what": w, "result": r, "ok": ok} for w, r, ok in rows], "passed": all(ok for *_, ok in rows)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path, help="an ONNX bundle folder (mc2export onnx --out DIR)")
    ap.add_argument("--checkpoint", type=Path, help="the weights the bundle was exported from: also compare with PyTorch")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--json", type=Path, help="write the result here")
    a = ap.parse_args(argv)
    from mc2export.errors import UserError

    if not (a.bundle / "config.json").is_file():
        print(f"check_bundle: '{a.bundle}' is not a bundle (no config.json): export one with `mc2export onnx`", file=sys.stderr)
        return 2
    try:
        runtime = read_bundle(a.bundle)["runtime"]
    except UserError as e:
        print(f"check_bundle: {e}", file=sys.stderr)
        return 2
    if runtime != "onnx":
        print(f"check_bundle: '{a.bundle}' is not an ONNX bundle: the web app runs `mc2export onnx` bundles", file=sys.stderr)
        return 2
    if not Path(a.chromium).exists():
        print(f"check_bundle: {a.chromium} not found (apt-get install chromium, or --chromium PATH)", file=sys.stderr)
        return 2
    if not (HERE / "node_modules" / "onnxruntime-web").is_dir():
        print("check_bundle: run `npm ci` in examples/web first", file=sys.stderr)
        return 2
    r = check(a.bundle, a.checkpoint, a.chromium)
    for c in r["checks"]:
        print(f"{'ok  ' if c['ok'] else 'FAIL'}  {c['what']}: {c['result']}")
    print(f"browser: {r['browser']}, bundle's verify/ vectors: {r['verify']}")
    print("PASSED" if r["passed"] else "FAILED")
    if a.json:
        a.json.write_text(json.dumps(r, indent=1), encoding="utf-8")
    return 0 if r["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
