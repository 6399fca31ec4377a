"""OpenVINO export: seed-0 official checkpoints of MobileCLIP2-S0 and MobileCLIP-S0 (MCt text) exported at fp32 and
bf16, run in OpenVINO with the bundle's properties and compared with the fidelity kit's golden features; bundle
contents and IR metadata; int8 (NNCF) of one tower; ``--calibration``; the ``auto`` decision; ``bench --runtime
openvino``."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("openvino")

import mc2export.export as E  # noqa: E402
from golden import EXPORT_CASES, golden, index  # noqa: E402
from mc2export.errors import UserError  # noqa: E402
from mc2export.export import bundle as B  # noqa: E402
from mc2export.export import openvino as OV  # noqa: E402

CASES = EXPORT_CASES
TIERS = {"fp32": (0.99999, 1e-4), "bf16": (0.999, None)}  # cosine min, max-abs x std (as the export validation)


@pytest.fixture(scope="module")
def bundles(checkpoints, tmp_path_factory):
    """``bundles[key, precision]``: raw-output (comparable with the golden features) bundles, exported on first use."""
    root = tmp_path_factory.mktemp("openvino")

    class Lazy(dict):
        def __missing__(self, k):
            key, precision = k
            self[k] = root / f"{key}-{precision}"
            E.export_bundle("openvino", CASES[key][1], out=self[k], checkpoint=checkpoints[key], normalize=False,
                            precision=precision)
            return self[k]

    return Lazy()


def _run(folder, tower, x):
    cfg = json.loads((folder / "config.json").read_text())
    run, io, how = OV.runner(folder, tower, cfg["models"][tower])
    return np.concatenate([run(x[i:i + 1]) for i in range(len(x))]), io, how


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("key", list(CASES))
def test_golden_features_in_openvino(key, precision, bundles, reference):
    name, _ = CASES[key]
    g, info = golden(reference, name), index(reference)[name]
    cos_min, rel = TIERS[precision]
    folder = bundles[key, precision]
    for tower, x, ref, std in (("image", g["image"].astype(np.float32), g["image_features_reparam"],
                                info["image_features_std"]),
                               ("text", g["tokens"].astype(np.int32), g["text_features_reparam"],
                                info["text_features_std"])):
        ours, io, how = _run(folder, tower, x)
        cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
        assert cos.min() >= cos_min, f"{key} {precision} {tower}: cosine {cos.min():.6f} ({how})"
        if rel is not None:
            err = np.abs(ours - ref).max() / std
            assert err <= rel, f"{key} {tower}: max-abs {err:.2e} x std"
        ran = "bf16" if precision == "bf16" and OV.cpu_capabilities()["bf16"] else "f32"
        assert how.endswith(f"inference precision {ran}") or "no bf16" in how, how


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_bundle_contents(precision, bundles):
    folder = bundles["s0", precision]
    cfg = B.verify_bundle(folder)  # every file listed with a matching sha256
    assert cfg["runtime"] == "openvino" and cfg["precision"] == precision and cfg["output_normalized"] is False
    assert set(cfg["files"]) == {"image.xml", "image.bin", "text.xml", "text.bin", "vocab.json", "merges.txt",
                                 "validation.json", "verify/manifest.json", "verify/image_inputs.u8",
                                 "verify/image_expected.f32", "verify/text_tokens.i32", "verify/text_expected.f32"}
    assert cfg["versions"]["openvino"] and cfg["versions"]["torch"]
    hint = {"fp32": "f32", "bf16": "bf16"}[precision]
    for tower, inp in (("image", {"name": "image", "dtype": "float32", "shape": [1, 3, 256, 256]}),
                       ("text", {"name": "tokens", "dtype": "int32", "shape": [1, 77]})):
        m = cfg["models"][tower]
        assert m["files"] == [f"{tower}.xml", f"{tower}.bin"] and m["inputs"] == [inp]
        assert m["outputs"] == [{"name": "embedding", "dtype": "float32", "shape": [1, 512]}]
        props = m["openvino"]["properties"]
        assert props == {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
                         "INFERENCE_NUM_THREADS": 0}
        meta = OV.read_metadata(folder / f"{tower}.xml")
        assert meta["mc2export.variant"] == "mobileclip2-s0" and meta["mc2export.tower"] == tower
        assert meta["mc2export.precision"] == precision and meta["mc2export.output_normalized"] == "false"
        assert json.loads(meta["mc2export.openvino_properties"]) == props
    # bf16 keeps its weights as fp16 (half the file); fp32 keeps fp32 weights (the fp32 tier needs them)
    size = cfg["files"]["text.bin"]["bytes"]
    assert (100e6 < size < 140e6) if precision == "bf16" else size > 240e6, size
    val = json.loads((folder / "validation.json").read_text())
    assert val["passed"] and val["tokenizer"]["passed"] and val["tolerance"] == {"fp32": {"cosine_min": 0.99999,
                                                                                          "max_abs_over_std": 1e-4},
                                                                                 "bf16": {"cosine_min": 0.999}}[precision]
    assert val["towers"]["text"]["prediction"].startswith("openvino ")
    # the bundle proves itself in OpenVINO with its own properties (mc2export verify)
    from mc2export.bench.verify import verify_bundle

    report = verify_bundle(folder, threads=2)
    assert report["status"] == "passed" and report["runtime"]["name"] == "openvino", report
    assert report["tier"] == precision and set(report["towers"]) == {"image", "text"}


def test_an_fp32_model_needs_its_hint(bundles):
    """OpenVINO's CPU plugin computes in bf16 by default on CPUs with bf16 units: the fp32 bundle's properties are
    what make it fp32 (and the fp32 tier hold)."""
    import openvino as ov

    if not OV.cpu_capabilities()["bf16"]:
        pytest.skip("this CPU has no bf16: OpenVINO's default precision is f32 here")
    compiled = ov.Core().compile_model(str(bundles["s0", "fp32"] / "image.xml"), "CPU")
    assert compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"
    compiled, info = OV.compile_tower(bundles["s0", "fp32"] / "image.xml", OV.properties("f32"), threads=1)
    assert info["inference_precision"] == "f32" and info["threads"] == 1 and info["num_streams"] == 1


def test_bf16_on_a_cpu_without_bf16_runs_f32_and_says_so():
    caps = {"bf16": False, "capabilities": ["FP32", "INT8"]}
    props, note = OV.effective_properties(OV.properties("bf16"), caps, threads=2)
    assert props["INFERENCE_PRECISION_HINT"] == "f32" and props["INFERENCE_NUM_THREADS"] == 2
    assert "no bf16" in note and "ran in f32" in note
    props, note = OV.effective_properties(OV.properties("bf16"), {"bf16": True})
    assert props["INFERENCE_PRECISION_HINT"] == "bf16" and note is None and props["INFERENCE_NUM_THREADS"] == 0


def test_int8_text_tower(checkpoints, tmp_path):
    """NNCF int8 of MobileCLIP-S0's MCt text tower (RepMixer convolutions + 4 attention blocks; the smallest text
    tower: the quickest int8 export)."""
    r = E.export_bundle("openvino", "mobileclip-s0", out=tmp_path / "q", checkpoint=checkpoints["mcs0"],
                        precision="int8", towers="text")
    t = r["towers"]["text"]
    assert t["passed"] and t["cosine_min"] >= 0.99 and t["tolerance"] == {"cosine_min": 0.99}
    assert r["zero_shot"]["images"] == 16 and 0 <= r["zero_shot"]["top1_agreement"] <= 1
    cfg = json.loads((tmp_path / "q" / "config.json").read_text())
    q = cfg["models"]["text"]["quantization"]
    assert q["model_type"] == "TRANSFORMER" and q["fake_quantize_nodes"] >= 6 * 4
    assert q["calibration"].startswith("built-in probe set")
    assert cfg["models"]["text"]["openvino"]["properties"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert cfg["files"]["text.bin"]["bytes"] < 60e6  # fp32: 170 MB


def test_int8_mci_image_recipe():
    """A tiny MCi image tower through :func:`OV.quantize`: the downsampling layers, the final conv and the head
    stay in float, activation ranges are the calibration's min / max (what the deep MCi towers need: the
    fidelity kit's MobileCLIP2-S4 image tower 0.899 -> 0.997); text and ViT towers keep NNCF's default."""
    import torch

    from mc2export import cards
    from mc2export.model import CLIPModel
    from mc2export.export.wrappers import build_wrappers, example_input, precision_sensitive, static_int8_float
    from test_train_support import tiny_card

    cards.register_card(tiny_card("ov-int8-mci", arch="mci", res=64))
    torch.manual_seed(0)
    model = CLIPModel("ov-int8-mci").eval()
    w = build_wrappers(model, ["image", "text"], True)
    tail = static_int8_float(w["image"])
    assert tail == ["visual.trunk.final_conv", "visual.trunk.head"] and static_int8_float(w["text"]) == []
    x = example_input("image", model.card, 1)
    data = [torch.rand_like(x).numpy() for _ in range(4)]
    q, rec = OV.quantize(OV.convert("image", w["image"], x), w["image"], data)
    assert rec["activation_ranges"] == "min / max" and rec["kept_in_float"] == precision_sensitive(w["image"]) + tail
    fq = [op.get_friendly_name() for op in q.get_ordered_ops() if op.get_type_name() == "FakeQuantize"]
    assert fq and not [n for n in fq if "final_conv" in n or "trunk.head" in n], fq


def _figs(ms, cos, passed=True, **kw):
    return {"ms": ms, "cosine_min": cos, "passed": passed, "tolerance": {"cosine_min": 0.99}, **kw}


def test_auto_takes_the_fastest_precision_that_holds_its_tolerance():
    figures = {"fp32": _figs(40.0, 1.0), "bf16": _figs(20.0, 0.9999), "int8": _figs(12.0, 0.995)}
    assert OV.choose(figures)[0] == "int8"
    figures["int8"]["passed"] = False  # misses its tolerance: never chosen, however fast
    best, reason = OV.choose(figures)
    assert best == "bf16" and "int8: misses its tolerance" in reason and "bf16: 20.00 ms" in reason
    figures["int8-bf16"] = _figs(10.0, 0.26, passed=False)  # int8 at the bf16 hint: broken on a tower, never taken
    assert OV.choose(figures)[0] == "bf16"
    figures["int8-bf16"] = _figs(10.0, 0.995)
    assert OV.choose(figures)[0] == "int8-bf16"
    figures["bf16"] = figures["int8-bf16"] = {"available": False, "why": "this CPU has no bf16"}
    best, reason = OV.choose(figures)
    assert best == "fp32" and "bf16: not available (this CPU has no bf16)" in reason


def test_auto_prefers_accuracy_within_timing_noise():
    """A less accurate precision must be >= 5% faster than the best more accurate one to be taken."""
    figures = {"fp32": _figs(20.0, 1.0), "bf16": _figs(19.5, 0.9999), "int8": _figs(18.8, 0.995)}
    assert OV.choose(figures)[0] == "int8"  # 6% faster than fp32, the best more accurate one (bf16: 2.5%, noise)
    figures["int8"]["ms"] = 19.2
    assert OV.choose(figures)[0] == "fp32"
    figures = {"fp32": _figs(20.0, 1.0), "bf16": _figs(18.0, 0.9999), "int8": _figs(17.5, 0.995)}
    assert OV.choose(figures)[0] == "bf16"  # int8 only 3% faster than bf16
    with pytest.raises(ValueError):
        OV.choose({"fp32": _figs(20.0, 0.9, passed=False)})


def _write_png(path, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (300, 200, 3), dtype=np.uint8)).save(path)


def test_calibration_folder(tmp_path):
    import mc2export

    card = mc2export.get_card("s0")
    (tmp_path / "sub").mkdir()
    for i in range(3):
        _write_png(tmp_path / ("sub" if i else ".") / f"p{i}.png", i)
    (tmp_path / "notes.md").write_text("not an image")
    data, what = OV.calibration_inputs("image", card, 1, tmp_path)
    assert len(data) == 3 and data[0].shape == (1, 3, 256, 256) and data[0].dtype == np.float32
    assert 0.0 <= data[0].min() and data[0].max() <= 1.0 and what.startswith("3 images from")
    data, _ = OV.calibration_inputs("image", card, 2, tmp_path)  # batch 2: the last batch padded by repetition
    assert len(data) == 2 and data[1].shape == (2, 3, 256, 256)
    with pytest.raises(UserError, match="captions.txt"):
        OV.calibration_inputs("text", card, 1, tmp_path)
    (tmp_path / "captions.txt").write_text("a dog\n\na cat on a mat\n")
    data, what = OV.calibration_inputs("text", card, 1, tmp_path)
    assert len(data) == 2 and data[0].dtype == np.int32 and data[0][0, 0] == 49406 and what.startswith("2 captions")
    with pytest.raises(UserError, match="is not a folder"):
        OV.calibration_inputs("image", card, 1, tmp_path / "p0.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="holds no images"):
        OV.calibration_inputs("image", card, 1, empty)
    data, what = OV.calibration_inputs("text", card, 1, None)
    assert what.startswith("built-in probe set") and len(data) >= 40


def test_calibration_is_for_openvino_int8_only(tmp_path):
    with pytest.raises(UserError, match="--calibration is for"):
        E.export_bundle("openvino", "s0", out=tmp_path / "x", random_weights=True, calibration=tmp_path)
    with pytest.raises(UserError, match="--calibration is for"):
        E.export_bundle("onnx", "s0", out=tmp_path / "x", random_weights=True, precision="int8", calibration=tmp_path)
    assert not (tmp_path / "x").exists()


def test_bench_openvino_runtime(bundles, tmp_path, capsys):
    """`mc2export bench --runtime openvino`: the bundle's properties, --threads, the results schema, and a desktop
    verdict (this machine is a desktop/server CPU: MEETS or MISSES, never REFERENCE)."""
    from test_bench_units import bench_runtime

    folder = bundles["s0", "bf16"]
    r = bench_runtime(capsys, folder, "openvino", tmp_path)
    assert r["runtime"]["name"] == "openvino" and r["runtime"]["version"] and r["bundle"]["format"] == "openvino"
    for tower in ("image", "text"):
        info = r["towers"][tower]["runtime_info"]
        assert info["threads"] == 1 and info["num_streams"] == 1 and info["bundle_precision"] == "bf16"
        assert info["inference_precision"] == ("bf16" if OV.cpu_capabilities()["bf16"] else "f32")
        assert info["properties"]["INFERENCE_PRECISION_HINT"] == info["inference_precision"]
    v = r["verdict"]
    assert v["comparable"] == "desktop" and v["status"] in ("meets", "misses") and v["band"] in ("below", "within",
                                                                                                 "above")
    assert "desktop/server CPU" in v["note"]


def test_runtime_loader_runs_other_inputs(bundles):
    """The loader is a normal runtimes.load citizen: ``run(x)`` gives the embedding of another input."""
    from mc2export.bench import runtimes
    from mc2export.bench.bundles import load_bundle

    b = load_bundle(bundles["s0", "fp32"])
    loaded = runtimes.load("openvino", b, "text", threads=1)
    loaded.call()
    x = runtimes.example_input("text", b.config)
    ref, _, _ = _run(b.path, "text", x)
    assert np.allclose(loaded.run(x), ref, atol=1e-6) and loaded.info["inference_precision"] == "f32"


@pytest.mark.slow
def test_auto_export_records_its_choice(checkpoints, tmp_path):
    r = E.export_bundle("openvino", "mobileclip-s0", out=tmp_path / "a", checkpoint=checkpoints["mcs0"],
                        precision="auto", towers="text")
    t = r["towers"]["text"]
    auto = t["auto"]
    assert OV.PRECISION_OF.get(auto["chosen"], auto["chosen"]) == t["precision"]
    assert auto["chosen"] == OV.choose(auto["figures"])[0] and auto["reason"].startswith(auto["chosen"])
    assert set(auto["figures"]) == {"fp32", "bf16", "int8", "int8-bf16"}  # bf16 ones marked unavailable without bf16
    assert t["tolerance"] == E.validate.tolerance_for(auto["chosen"]) and t["passed"]
    cfg = json.loads((tmp_path / "a" / "config.json").read_text())
    assert cfg["precision"] == "auto" and cfg["models"]["text"]["openvino"]["precision"] == t["precision"]
    assert cfg["models"]["text"]["openvino"]["properties"]["INFERENCE_PRECISION_HINT"] == OV.HINT[auto["chosen"]]
    assert cfg["models"]["text"]["auto"]["figures"]["fp32"]["ms"] > 0
    # the vectors carry the chosen precision's tolerance, and the bundle verifies against it
    from mc2export.bench.verify import verify_bundle
    from mc2export.export import vectors

    manifest = vectors.read(tmp_path / "a")
    assert vectors.tolerance(manifest, "text") == E.validate.tolerance_for(t["precision"])
    report = verify_bundle(tmp_path / "a", threads=2)
    assert report["status"] == "passed" and report["towers"]["text"]["tolerance"] == vectors.tolerance(manifest, "text")


def test_examples_python_reads_an_openvino_bundle(bundles):
    """examples/python (no mc2export, only the bundle and OpenVINO) compiles with the bundle's properties."""
    import sys
    from pathlib import Path

    examples = Path(__file__).resolve().parents[1] / "examples" / "python"
    sys.path.insert(0, str(examples))
    try:
        import mc2bundle
    finally:
        sys.path.remove(str(examples))
    folder = bundles["s0", "fp32"]
    b = mc2bundle.Bundle(folder, threads=1)
    emb, truncated = b.encode_text("a photo of a cat")
    import mc2export

    tokens = mc2export.tokenize(["a photo of a cat"]).numpy().astype(np.int32)
    ours, _, how = _run(folder, "text", tokens)
    assert not truncated and how.endswith("inference precision f32")
    assert np.allclose(emb, ours[0] / np.linalg.norm(ours[0]), atol=1e-5)


@pytest.mark.parametrize("args, needle", [
    (["openvino", "--variant", "s0", "--precision", "fp16"], "fp32, bf16, int8, auto"),
    (["openvino", "--variant", "s0", "--calibration", "."], "--calibration is for"),
    (["onnx", "--variant", "s0", "--precision", "int8", "--calibration", "."], "--calibration is for"),
    (["openvino", "--variant", "s0", "--precision", "int8", "--calibration", "no/such/dir"], "is not a folder"),
    (["openvino", "--variant", "s0", "--delegate", "coreml"], "ExecuTorch option"),
])
def test_bad_options_are_one_line_errors(args, needle, capsys, tmp_path):
    from test_bench_units import one_line_error, run  # the CLI runner and one-line check the bench tests use

    code, _, err = run(capsys, *args, "--random-weights", "--out", tmp_path / "o")
    assert code == 2 and needle in one_line_error(err), err
    assert not (tmp_path / "o").exists()
