"""examples/python: the app developer's prototypes (zero-shot, photo search) on real exported bundles.

Default run (fast): a *tiny stand-in* model (a registered card: MCi with one block per stage, a 1-layer
32-wide text tower, 64 px) exported to ONNX through the export API -- the scripts see a real bundle
(config.json, image.onnx/text.onnx, vocab.json, merges.txt) exactly as ``mc2export onnx`` writes it, and
their outputs are compared with mc2export's own PyTorch model on the same inputs.

Marked ``slow`` (``pytest -m slow``): MobileCLIP2-S0 (seed-0 official checkpoint from the fidelity kit)
through the command line, ``mc2export onnx`` and ``mc2export executorch``, both runtimes through the
scripts and ``mc2export app-vectors --bundle`` (~2-6 min on 2 cores).
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from mc2export.export.reading import write_config

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "python"
VECTORS = REPO / "examples" / "shared" / "vectors"
IMAGES = [VECTORS / "images" / n for n in ("landscape_400x300.png", "portrait_270x480.png", "small_150x100.png",
                                           "exif6_260x330.png", "rgba_300x260.png")]
TINY = "tiny-app-examples"
LABELS = ["cat", "dog", "red disc", "a very long label " + " ".join(f"word{i}" for i in range(80))]


@pytest.fixture(scope="module")
def examples():
    sys.path.insert(0, str(EXAMPLES))
    try:
        import mc2bundle
        import photo_search
        import zero_shot

        yield {"mc2bundle": mc2bundle, "zero_shot": zero_shot, "photo_search": photo_search}
    finally:
        sys.path.remove(str(EXAMPLES))


def run_main(mod, argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = mod.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(bundle folder, folded PyTorch model) of the tiny stand-in, exported to ONNX by the export API."""
    import mc2export
    import mc2export.export as E
    from mc2export import cards

    c = copy.deepcopy(cards.get_card("mobileclip2-s0"))
    c.update(id=TINY, name=TINY, aliases=[], resolution=64, embed_dim=32)
    c["image"].update(layers=[1, 1, 1, 1], embed_dims=[8, 16, 32, 64], image_size=64)
    c["text"].update(width=32, heads=1, layers=1)
    c["preprocess"]["resolution"] = 64
    c["weights"] = {"default": "open_clip", "sources": []}
    cards.register_card(c)
    d = tmp_path_factory.mktemp("tiny")
    model = mc2export.create_model(TINY)
    ckpt = mc2export.save_checkpoint(model, d / "tiny.safetensors")
    E.export_bundle("onnx", TINY, out=d / "bundle", checkpoint=ckpt)
    folded = mc2export.fold(mc2export.create_model(TINY, checkpoint=ckpt)).eval()
    yield d / "bundle", folded
    cards._EXTRA.pop(TINY, None)
    cards._aliases.cache_clear()


def reference(model, images, texts):
    """mc2export's own embeddings (folded PyTorch model, Python preprocessing and tokenizer)."""
    import torch

    from mc2export import image_transform
    from mc2export.preprocess import load_image
    from mc2export.tokenizer import get_tokenizer

    tr = image_transform(model.variant)
    img = txt = np.zeros((0, model.embed_dim))
    with torch.no_grad():
        if images:
            img = model.encode_image(torch.stack([tr(load_image(p)) for p in images]), normalize=True).numpy()
        if texts:
            txt = model.encode_text(get_tokenizer()(texts, context_length=model.context_length), normalize=True).numpy()
    return img.astype(np.float64), txt.astype(np.float64)


def test_bundle_tokenizer_is_mc2export_tokenizer(tiny, examples):
    tok = examples["mc2bundle"].Bundle(tiny[0]).tokenizer
    texts = json.loads((VECTORS / "text.json").read_text(encoding="utf-8"))["texts"]
    for t in texts:
        row, truncated = tok(t["text"])
        ids = row[: min(t["n_tokens"], 77)].tolist()
        assert ids == t["ids"], t["text"]
        assert truncated == t["truncated"]
        assert not row[len(ids):].any()


def test_zero_shot_script_matches_the_model(tiny, examples):
    from mc2export.zeroshot import SIMPLE_TEMPLATES

    bundle, model = tiny
    code, out, err = run_main(examples["zero_shot"], [bundle, *IMAGES, "--labels", ",".join(LABELS), "--json"])
    assert code == 0, err
    assert "prompt(s) longer than 77 tokens were truncated" in err
    doc = json.loads(out)
    img, _ = reference(model, IMAGES, [])
    classes = []
    for label in LABELS:
        _, t = reference(model, [], [tpl.format(label) for tpl in SIMPLE_TEMPLATES])
        m = t.mean(0)
        classes.append(m / np.linalg.norm(m))
    scale = float(model.logit_scale.exp())
    for r, e in zip(doc["results"], img):
        logits = scale * (np.stack(classes) @ e)
        p = np.exp(logits - logits.max())
        p /= p.sum()
        assert [r["probs"][lab] for lab in LABELS] == pytest.approx(p.tolist(), abs=2e-4)


def test_photo_search_script_matches_the_model(tiny, examples, tmp_path):
    bundle, model = tiny
    photos = tmp_path / "photos"
    photos.mkdir()
    for p in IMAGES:
        (photos / p.name).write_bytes(p.read_bytes())
    (photos / "broken.jpg").write_bytes(b"not an image")
    args = [bundle, "--photos", photos, "-q", "a red disc", "-q", "a dog", "-k", "5", "--json", "--index", tmp_path / "i.npz"]
    code, out, err = run_main(examples["photo_search"], args)
    assert code == 0, err
    assert "skipping" in err and "broken.jpg" in err
    doc = json.loads(out)
    names = sorted(p.name for p in IMAGES)
    img, txt = reference(model, [photos / n for n in names], ["a red disc", "a dog"])
    for r, q in zip(doc["results"], txt):
        scores = img @ q
        got = {Path(h["path"]).name: h["score"] for h in r["hits"]}
        assert set(got) == set(names)
        for n, s in zip(names, scores):
            assert got[n] == pytest.approx(float(s), abs=2e-4)
    # the second run reuses the index (nothing embedded again)
    code, _, err = run_main(examples["photo_search"], args)
    assert code == 0 and "(0 embedded now)" in err


def test_scripts_fail_with_one_line_errors(tiny, examples, tmp_path):
    zs = examples["zero_shot"]
    code, _, err = run_main(zs, [tmp_path / "missing", IMAGES[0], "--labels", "cat"])
    assert code == 2 and "not found" in err
    code, _, err = run_main(zs, [tiny[0], IMAGES[0], "--labels", " , "])
    assert code == 2 and "empty label list" in err
    code, _, err = run_main(zs, [tiny[0], tmp_path / "nope.jpg", "--labels", "cat"])
    assert code == 2 and "cannot read image" in err
    fake = tmp_path / "coreml"
    fake.mkdir()
    cfg = json.loads((tiny[0] / "config.json").read_text())
    cfg["runtime"] = "coreml"
    cfg["models"] = {"image": {"file": "image.onnx"}, "text": {"file": "text.onnx"}}
    write_config(fake, cfg)
    for f in ("image.onnx", "text.onnx"):
        (fake / f).write_bytes(b"")
    if sys.platform != "darwin":
        code, _, err = run_main(zs, [fake, IMAGES[0], "--labels", "cat"])
        assert code == 2 and "Core ML bundles run on macOS" in err


def test_app_vectors_bundle_expected_agrees_with_the_scripts(tiny, examples, tmp_path):
    from mc2export.appvectors import bundle_expected, synthetic_images

    bundle, _ = tiny
    exp = json.loads(json.dumps(bundle_expected(bundle, synthetic_images())))  # what --bundle writes
    assert exp["runtime"] == "onnx" and exp["variant"] == TINY and len(exp["images"]) == 6
    b = examples["mc2bundle"].Bundle(bundle)
    for t in exp["texts"]:
        e, _ = b.encode_text(t["text"])
        assert float(e @ np.asarray(t["embedding"])) > 0.9999
    for i in exp["images"]:
        e = b.encode_image(VECTORS / "images" / i["image"])
        assert float(e @ np.asarray(i["embedding"])) > 0.9999
    assert all(abs(sum(r["probs"]) - 1) < 1e-6 for r in exp["zero_shot"]["results"])


# -- MobileCLIP2-S0 through the export command line (slow) -------------------------------------------------

@pytest.fixture(scope="module")
def s0_bundles(reference, detweights, tmp_path_factory):
    from typer.testing import CliRunner

    from golden import write_official
    from mc2export.cli import app

    d = tmp_path_factory.mktemp("s0")
    ckpt = write_official(reference, detweights, "open_clip/MobileCLIP2-S0", d)
    out = {}
    for fmt in ("onnx", "executorch"):
        pytest.importorskip("executorch") if fmt == "executorch" else None
        r = CliRunner().invoke(app, [fmt, "--variant", "s0", "--checkpoint", str(ckpt), "--out", str(d / fmt)])
        assert r.exit_code == 0, r.output[-3000:]
        out[fmt] = d / fmt
    return out


@pytest.mark.slow
def test_s0_bundles_through_the_scripts(s0_bundles, examples, tmp_path):
    results = {}
    for fmt, bundle in s0_bundles.items():
        code, out, err = run_main(examples["zero_shot"], [bundle, *IMAGES, "--labels", "cat,dog,diagram,red disc", "--json"])
        assert code == 0, err
        results[fmt] = json.loads(out)["results"]
        code, out, err = run_main(examples["photo_search"], [bundle, "--photos", VECTORS / "images", "-q", "a red disc",
                                                             "--json", "--index", tmp_path / f"{fmt}.npz"])
        assert code == 0, err
    for a, b in zip(results["onnx"], results["executorch"]):  # the two runtimes agree
        for label in a["probs"]:
            assert a["probs"][label] == pytest.approx(b["probs"][label], abs=1e-3)
    from mc2export.appvectors import write_vectors

    write_vectors(tmp_path / "v", s0_bundles["executorch"])
    exp = json.loads((tmp_path / "v" / "bundle_expected.json").read_text(encoding="utf-8"))
    assert exp["runtime"] == "executorch" and exp["embed_dim"] == 512


@pytest.fixture(scope="module")
def s0_onnx(app_bundles):
    """MobileCLIP2-S0 exported to ONNX through the command line (the default run's real-size bundle), shared
    with the web app's tests through the session fixture ``app_bundles`` (tests/conftest.py)."""
    return app_bundles["s0"]


def test_s0_onnx_bundle_through_the_scripts(s0_onnx, examples, tmp_path):
    code, out, err = run_main(examples["zero_shot"], [s0_onnx, *IMAGES, "--labels", "cat,dog,red disc", "--json"])
    assert code == 0, err
    results = json.loads(out)["results"]
    assert len(results) == len(IMAGES)
    assert all(abs(sum(r["probs"].values()) - 1) < 1e-5 for r in results)
    code, out, err = run_main(examples["photo_search"], [s0_onnx, "--photos", VECTORS / "images", "-q", "a red disc",
                                                         "--json", "--index", tmp_path / "s0.npz"])
    assert code == 0, err
