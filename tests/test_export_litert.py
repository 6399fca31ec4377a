"""LiteRT export: seed-0 official checkpoints of MobileCLIP2-S0 (both towers) and MobileCLIP-S0 (its MCt text tower:
the new part; its image tower is S0's MCi0 design) exported at fp32 and int8, run in ai-edge-litert's interpreter and
compared with the fidelity kit's golden features; bundle contents, signature and flatbuffer metadata; ``mc2export
verify`` (passes, and exit 3 on altered weights with matching checksums); ``bench --runtime litert``; the int8-static
recipes' keep-float scopes. MobileCLIP-S0's image tower, fp16 and int8-static exports are ``slow``.

Conversion is the cost (~35-50 s per tower on 2 cores): the float conversions are shared between the precisions
(``MC2EXPORT_LITERT_CACHE``) and the bundles are kept between sessions beside the bench fixtures' bundles
(``MC2EXPORT_BENCH_BUNDLES`` / conftest's source-keyed folder), as conftest's ``s0_bundles`` are."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import importlib.util  # noqa: E402

if not all(importlib.util.find_spec(m) for m in ("litert_torch", "ai_edge_litert", "ai_edge_quantizer")):
    pytest.skip("the litert extra is not installed (pip install 'mc2export[litert]')", allow_module_level=True)

import mc2export.export as E  # noqa: E402
from golden import EXPORT_CASES, golden, index  # noqa: E402
from mc2export.export import bundle as B  # noqa: E402
from mc2export.export import litert as L  # noqa: E402

TIERS = {"fp32": (0.99999, 1e-4), "fp16": (0.999, None), "int8": (0.99, None), "int8-static": (0.99, None)}
# MobileCLIP-S0: the text tower by default (its MCi0 image tower is S0's design, exported in the slow tests)
DEFAULT_TOWERS = {"s0": "image,text", "mcs0": "text"}


def _conversion_cache(tmp_path_factory) -> Path:
    """Where the float conversions are kept: content-addressed (weights, graph code, converter version), so shared by
    every source state of the package, beside the bench fixtures' bundles; entries unused for 3 days are dropped."""
    import tempfile
    import time

    env = os.environ.get("MC2EXPORT_BENCH_BUNDLES", "")
    if env == "fresh":
        return tmp_path_factory.mktemp("litert-conversions")
    root = Path(env) / "litert-conversions" if env else Path(tempfile.gettempdir()) / "mc2export-litert-conversions"
    if root.is_dir():
        for p in root.glob("*.tflite"):
            if time.time() - p.stat().st_mtime > 3 * 86400:
                p.unlink(missing_ok=True)
    return root


@pytest.fixture(scope="module")
def bundles(checkpoints, tmp_path_factory):
    """``bundles[key, precision]`` or ``bundles[key, precision, towers]``: raw-output bundles (comparable with the
    golden features), exported on first use and kept between sessions (keyed by the package sources)."""
    from conftest import _bundle_root, _cache_key

    root = _bundle_root(tmp_path_factory) / f"litert-{_cache_key()}"
    old = os.environ.get(L.CACHE_ENV)
    os.environ[L.CACHE_ENV] = str(_conversion_cache(tmp_path_factory))

    class Lazy(dict):
        def __missing__(self, k):
            key, precision, towers = (*k, DEFAULT_TOWERS[k[0]]) if len(k) == 2 else k
            out = root / f"{key}-{precision}-{towers.replace(',', '+')}"
            if not (out / "config.json").is_file():
                tmp = out.with_name(out.name + f".tmp{os.getpid()}")
                E.export_bundle("litert", EXPORT_CASES[key][1], out=tmp, checkpoint=checkpoints[key], normalize=False,
                                precision=precision, towers=towers, force=True)
                try:
                    os.replace(tmp, out)
                except OSError:  # a concurrent session won the race
                    shutil.rmtree(tmp, ignore_errors=True)
            self[k] = out
            return out

    yield Lazy()
    if old is None:
        os.environ.pop(L.CACHE_ENV, None)
    else:
        os.environ[L.CACHE_ENV] = old


def _run(folder, tower, x, threads=2):
    cfg = json.loads((folder / "config.json").read_text())
    run, io, how = L.runner(folder, tower, cfg["models"][tower], threads=threads)
    return np.concatenate([run(x[i:i + 1]) for i in range(len(x))]), io, how


def _check_golden(reference, key, precision, folder, towers):
    name, _ = EXPORT_CASES[key]
    g, info = golden(reference, name), index(reference)[name]
    cos_min, rel = TIERS[precision]
    cases = {"image": (g["image"].astype(np.float32), g["image_features_reparam"], info["image_features_std"]),
             "text": (g["tokens"].astype(np.int32), g["text_features_reparam"], info["text_features_std"])}
    for tower in towers:
        x, ref, std = cases[tower]
        ours, io, how = _run(folder, tower, x)
        cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
        assert cos.min() >= cos_min, f"{key} {precision} {tower}: cosine {cos.min():.6f} ({how})"
        if rel is not None:
            err = np.abs(ours - ref).max() / std
            assert err <= rel, f"{key} {tower}: max-abs {err:.2e} x std"
        assert how.startswith("ai-edge-litert ") and "XNNPACK" in how


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("key", list(EXPORT_CASES))
def test_golden_features_in_litert(key, precision, bundles, reference):
    _check_golden(reference, key, precision, bundles[key, precision], DEFAULT_TOWERS[key].split(","))


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_golden_features_mobileclip_s0_image(precision, bundles, reference):
    _check_golden(reference, "mcs0", precision, bundles["mcs0", precision, "image"], ["image"])


FILES = {"image.tflite", "text.tflite", "vocab.json", "merges.txt", "validation.json", "verify/manifest.json",
         "verify/image_inputs.u8", "verify/image_expected.f32", "verify/text_tokens.i32", "verify/text_expected.f32"}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_bundle_contents(precision, bundles):
    folder = bundles["s0", precision]
    cfg = B.verify_bundle(folder)  # every file listed with a matching sha256
    assert cfg["runtime"] == "litert" and cfg["precision"] == precision and cfg["output_normalized"] is False
    assert set(cfg["files"]) == FILES
    assert cfg["versions"]["litert-torch"] and cfg["versions"]["ai-edge-litert"] and cfg["versions"]["torch"]
    for tower, inp in (("image", {"name": "image", "dtype": "float32", "shape": [1, 3, 256, 256]}),
                       ("text", {"name": "tokens", "dtype": "int32", "shape": [1, 77]})):
        m = cfg["models"][tower]
        assert m["files"] == [f"{tower}.tflite"] and m["inputs"] == [inp] and m["signature"] == "serving_default"
        assert m["outputs"] == [{"name": "embedding", "dtype": "float32", "shape": [1, 512]}]
        assert m["litert"]["inputs"] == [inp["name"]] and m["litert"]["outputs"] == ["embedding"]
        meta = L.read_metadata(folder / f"{tower}.tflite")
        assert meta["mc2export.variant"] == "mobileclip2-s0" and meta["mc2export.tower"] == tower
        assert meta["mc2export.precision"] == precision and meta["mc2export.output_normalized"] == "false"
        if precision == "int8":
            q = m["quantization"]
            assert q["recipe"] == "dynamic_wi8_afp32" and q["tool"] == "ai-edge-quantizer"
            # the MCi modules every int8 export keeps float (S4: 0.954 quantized, 0.993 kept); none in the text tower
            assert q["kept_in_float"] == ([f"visual.trunk.stages.{i}.downsample" for i in (1, 2, 3)]
                                          + ["visual.trunk.final_conv", "visual.trunk.head"] if tower == "image" else [])
            assert q["ops"]["histogram"].get("FULLY_CONNECTED", 0) + q["ops"]["histogram"].get("CONV_2D", 0) > 0
        else:
            assert "quantization" not in m
    val = json.loads((folder / "validation.json").read_text())
    assert val["passed"] and val["tokenizer"]["passed"]
    assert val["tolerance"] == {"fp32": {"cosine_min": 0.99999, "max_abs_over_std": 1e-4},
                                "int8": {"cosine_min": 0.99}}[precision]
    assert val["towers"]["text"]["prediction"].startswith("ai-edge-litert ")
    if precision == "int8":
        assert val["towers"]["image"]["quantization"]["recipe"] == "dynamic_wi8_afp32"  # the choice, recorded
        fp32 = B.verify_bundle(bundles["s0", "fp32"])
        size = sum(f["bytes"] for f in cfg["files"].values())
        assert size <= 0.40 * sum(f["bytes"] for f in fp32["files"].values()), size  # the goal


def _verify(folder, tmp_path, capsys):
    from mc2export.cli import main

    with pytest.raises(SystemExit) as e:
        main(["verify", str(folder), "--threads", "2", "-q", "--json", str(tmp_path / "v.json")])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err, json.loads((tmp_path / "v.json").read_text())


@pytest.mark.parametrize("key, precision", [("s0", "fp32"), ("s0", "int8"), ("mcs0", "int8")])
def test_verify_passes(key, precision, bundles, tmp_path, capsys):
    code, out, err, doc = _verify(bundles[key, precision], tmp_path, capsys)
    assert code == 0, err
    assert doc["runtime"]["name"] == "litert" and doc["status"] == "passed" and doc["runtime"]["version"]
    assert set(doc["towers"]) == set(DEFAULT_TOWERS[key].split(","))
    assert doc["tier"] == ("fp32" if precision == "fp32" else "compressed")


def _perturb_weights(path: Path) -> None:
    """Every large float32 weight buffer of the .tflite 20 % off (written as a new file)."""
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    rng = np.random.default_rng(0)
    changed = 0
    for b in model.buffers:
        if b.data is not None and len(b.data) >= 4000 and len(b.data) % 4 == 0:
            w = np.frombuffer(bytes(b.data), dtype=np.float32)
            if np.isfinite(w).all():
                b.data = (w * (1 + 0.2 * rng.standard_normal(w.shape))).astype(np.float32).view(np.uint8)
                changed += 1
    assert changed
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    os.replace(tmp, path)


def test_altered_weights_fail_verify_with_exit_3(bundles, tmp_path, capsys):
    """Weights changed and config.json's checksums updated to match: the checksums pass, the vectors do not."""
    from test_verify import linked_copy, rewrite_checksums

    b = linked_copy(bundles["s0", "fp32"], tmp_path / "altered")
    _perturb_weights(b / "image.tflite")
    rewrite_checksums(b)
    code, out, err, doc = _verify(b, tmp_path, capsys)
    assert code == 3, err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("verify FAILED")]
    assert "image tower in litert" in line and "tolerance cos >= 0.99999" in line
    assert doc["status"] == "failed" and doc["towers"]["text"]["verdict"] == "passed"


def test_bench_litert_runtime(bundles, tmp_path, capsys):
    """`mc2export bench --runtime litert`: --threads, the results schema, the runtime info."""
    from mc2export.bench import runtimes
    from mc2export.bench.bundles import load_bundle
    from test_bench_units import bench_runtime

    folder = bundles["s0", "int8"]
    r = bench_runtime(capsys, folder, "litert", tmp_path)
    assert r["runtime"]["name"] == "litert" and r["runtime"]["version"] and r["bundle"]["format"] == "litert"
    for tower in ("image", "text"):
        info = r["towers"][tower]["runtime_info"]
        assert info["threads"] == 1 and info["signature"] == "serving_default" and info["bundle_precision"] == "int8"
    loaded = runtimes.load("litert", load_bundle(folder), "text", threads=1)  # run(x) on another input
    x = runtimes.example_input("text", load_bundle(folder).config)
    assert np.allclose(loaded.run(x), _run(folder, "text", x, threads=1)[0], atol=1e-6)


def test_scope_regex_matches_litert_torch_tensor_names():
    """The keep-float scopes of int8-static find the ops of a module path in litert-torch's tensor names (the op
    scope ai-edge-quantizer matches is its output tensor names joined by ';')."""
    import re

    names = {  # as litert-torch 0.10 names tensors of the S0 image tower
        "head": "m.ImageSignature/mc2export.export.wrappers.ImageEncoder_m/mc2export.model.VisualTower_visual/"
                "mc2export.mci.MCi_trunk/mc2export.mci.ClassifierHead_head/torch.nn.modules.linear.Linear_fc;2;",
        "final": "x.ImageEncoder/mc2export.model.VisualTower_visual/mc2export.mci.MCi_trunk/"
                 "mc2export.blocks.MobileOneBlock_final_conv/mc2export.blocks.SqueezeExcite_se;",
        "stage": "x.ImageEncoder/mc2export.model.VisualTower_visual/mc2export.mci.MCi_trunk/torch.nn.modules."
                 "container.Sequential_stages/mc2export.mci.Stage_3/mc2export.mci.PatchEmbed_downsample/x.Conv2d_c;1;",
        "stage13": "x.ImageEncoder/mc2export.model.VisualTower_visual/mc2export.mci.MCi_trunk/torch.nn.modules."
                   "container.Sequential_stages/mc2export.mci.Stage_13/mc2export.mci.PatchEmbed_downsample;",
    }
    hit = {p: [k for k, n in names.items() if re.search(L.scope_regex(p), n)]
           for p in ("visual.trunk.head", "visual.trunk.final_conv", "visual.trunk.stages.3.downsample")}
    assert hit == {"visual.trunk.head": ["head"], "visual.trunk.final_conv": ["final"],
                   "visual.trunk.stages.3.downsample": ["stage"]}


def test_conversion_cache(tmp_path, monkeypatch):
    """MC2EXPORT_LITERT_CACHE: a second export of the same graph reuses the float conversion; the key tells apart
    what changes the graph (weights, normalization, the input affine), and nothing is cached without the variable."""
    import torch

    from mc2export import cards
    from mc2export.export.wrappers import build_wrappers, example_input
    from mc2export.model import CLIPModel
    from test_train_support import tiny_card

    cards.register_card(tiny_card("litert-cache-mci", arch="mci", res=64))
    torch.manual_seed(0)
    model = CLIPModel("litert-cache-mci").eval()
    calls = []
    monkeypatch.setattr(L, "convert", lambda tower, w, ex, path: (calls.append(tower), Path(path).write_bytes(b"tfl")))
    monkeypatch.setenv(L.CACHE_ENV, str(tmp_path / "cache"))
    w = build_wrappers(model, ["image"], True)["image"]
    x = example_input("image", model.card, 1)
    assert L.convert_cached("image", w, x, tmp_path / "a.tflite") is False
    assert L.convert_cached("image", w, x, tmp_path / "b.tflite") is True and calls == ["image"]
    assert (tmp_path / "b.tflite").read_bytes() == b"tfl"
    keys = {L.cache_key("image", w, x), L.cache_key("image", build_wrappers(model, ["image"], False)["image"], x),
            L.cache_key("image", build_wrappers(model, ["image"], True, image_affine=([1, 1, 1], [0, 0, 0]))["image"],
                        x)}
    with torch.no_grad():
        model.visual.trunk.head.fc.weight.mul_(2)
    keys.add(L.cache_key("image", w, x))
    assert len(keys) == 4
    monkeypatch.delenv(L.CACHE_ENV)
    assert L.convert_cached("image", w, x, tmp_path / "c.tflite") is False and calls == ["image", "image"]


def test_quantizer_failures_name_the_module_kept_float():
    """ai-edge-quantizer 0.10's error on an MCi3/4 stage-4 conv names the tensor; its module is kept float (retried)."""
    msg = ("Failed to get quantization parameters for tensor: mc2export.export.litert._signature_module.<locals>."
           "ImageSignature/mc2export.export.wrappers.ImageEncoder_m/mc2export.mci.Stage_4/mc2export.blocks.ConvMlp_mlp/"
           "torch.nn.modules.conv.Conv2d_fc1;1. Error: input operand has more dimensions than allowed by the axis "
           "remapping")
    name = L._RE_QUANT_FAIL.search(msg).group(1)
    assert name.endswith("ConvMlp_mlp/torch.nn.modules.conv.Conv2d_fc1;1") and name.startswith("mc2export.export")
    assert L.QUANTIZER_RETRIES >= 4


def test_float_scopes_of_the_int8_recipes():
    """int8 keeps the MCi downsampling layers, final conv and head float; int8-static also the attention stages (whole,
    without naming their downsampling layer twice; their weights int8); a ViT or text tower keeps nothing float."""
    import torch

    from mc2export import cards
    from mc2export.export.wrappers import build_wrappers
    from mc2export.model import CLIPModel
    from test_train_support import tiny_card

    card = tiny_card("litert-scopes-mci", arch="mci", res=64)
    card["image"]["token_mixers"] = ["repmixer"] * (len(card["image"]["layers"]) - 1) + ["attention"]
    cards.register_card(card)
    torch.manual_seed(0)
    model = CLIPModel("litert-scopes-mci").eval()
    w = build_wrappers(model, ["image", "text"], True)
    last = len(card["image"]["layers"]) - 1
    downs = [f"visual.trunk.stages.{i}.downsample" for i in range(1, last + 1)]
    assert L.keep_float_scopes(w["image"]) == downs + ["visual.trunk.final_conv", "visual.trunk.head"]
    assert L.static_float_scopes(w["image"]) == downs[:-1] + ["visual.trunk.final_conv", "visual.trunk.head",
                                                              f"visual.trunk.stages.{last}"]
    assert L.attention_stages(w["image"]) == [f"visual.trunk.stages.{last}"]
    assert L.keep_float_scopes(w["text"]) == L.static_float_scopes(w["text"]) == L.attention_stages(w["text"]) == []
    cards.register_card(tiny_card("litert-scopes-vit", arch="vit", res=32))
    vit = build_wrappers(CLIPModel("litert-scopes-vit").eval(), ["image"], True)["image"]
    assert L.keep_float_scopes(vit) == L.static_float_scopes(vit) == []


@pytest.mark.slow
def test_int8_static_on_mci0_holds_with_the_attention_stage_float(bundles, checkpoints, reference, tmp_path,
                                                                     monkeypatch):
    """int8-static of S0's image tower: float32 signature I/O, static int8 RepMixer stages (min / max ranges from the
    built-in probe set), the attention stage, downsampling layers, final conv and head float: it holds the int8 tier
    (0.995 on the kit's S0 weights). The same recipe with the attention stage int8 too -- fully integer but for the
    modules int8 keeps -- does not (0.989): the reason it stays float."""
    import torch

    from mc2export.export.openvino import calibration_inputs
    from mc2export.export.validate import probe_inputs
    from mc2export.export.wrappers import build_wrappers

    out = tmp_path / "static"
    E.export_bundle("litert", "mobileclip2-s0", out=out, checkpoint=checkpoints["s0"], precision="int8-static",
                    towers="image", force=True, normalize=False)
    _check_golden(reference, "s0", "int8-static", out, ["image"])
    rec = json.loads((out / "config.json").read_text())["models"]["image"]["quantization"]
    assert rec["recipe"] == "static_wi8_ai8" and rec["calibration"].startswith("built-in probe set")
    assert rec["activation_ranges"] == "min / max over the calibration set"
    assert rec["kept_in_float"][-3:] == ["visual.trunk.final_conv", "visual.trunk.head", "visual.trunk.stages.3"]
    assert rec["weight_only_int8"] == ["visual.trunk.stages.3"]  # float compute there, int8 weights: a small file
    assert (out / "image.tflite").stat().st_size < 1.05 * (bundles["s0", "int8"] / "image.tflite").stat().st_size
    assert rec["ops"]["first_input_dtype"]["int8"] > 100 and rec["ops"]["first_input_dtype"]["float32"] > 10
    it = L.interpreter(out / "image.tflite")
    assert L.read_io(it)["inputs"][0]["dtype"] == "float32" and L.read_io(it)["outputs"][0]["dtype"] == "float32"
    # the attention stage int8 as well: under the floor
    model, _ = E.load_model("mobileclip2-s0", checkpoint=checkpoints["s0"])
    w = build_wrappers(model, ["image"], False)["image"]
    calib, what = calibration_inputs("image", model.card, 1, None)
    monkeypatch.setattr(L, "static_float_scopes", L.keep_float_scopes)
    L.quantize(bundles["s0", "fp32"] / "image.tflite", tmp_path / "q.tflite", "int8-static", tower="image", wrapper=w,
               calibration=calib, calibration_what=what)
    it = L.interpreter(tmp_path / "q.tflite")
    x = probe_inputs(model.card)["image"]
    ours = np.concatenate([L.signature_runner(it, "image")(x[i:i + 1].numpy()) for i in range(len(x))])
    with torch.no_grad():
        ref = w(x).numpy()
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert 0.95 < cos.min() < 0.99, cos.min()


@pytest.mark.slow
def test_fp16_weights_halve_the_file(bundles, reference):
    folder = bundles["s0", "fp16"]
    _check_golden(reference, "s0", "fp16", folder, ["image", "text"])
    cfg, fp32 = B.verify_bundle(folder), B.verify_bundle(bundles["s0", "fp32"])
    for t in ("image", "text"):
        assert cfg["files"][f"{t}.tflite"]["bytes"] < 0.6 * fp32["files"][f"{t}.tflite"]["bytes"]


@pytest.mark.parametrize("args, needle", [
    (["litert", "--variant", "s0", "--precision", "bf16"], "fp32, fp16, int8, int8-static"),
    (["litert", "--variant", "s0", "--precision", "int8", "--calibration", "."], "--calibration is for"),
    (["litert", "--variant", "s0", "--precision", "int8-static", "--calibration", "no/such/dir"], "is not a folder"),
    (["litert", "--variant", "s0", "--delegate", "coreml"], "ExecuTorch option"),
])
def test_bad_options_are_one_line_errors(args, needle, capsys, tmp_path):
    from test_bench_units import one_line_error, run  # the CLI runner and one-line check the bench tests use

    code, _, err = run(capsys, *args, "--random-weights", "--out", tmp_path / "o")
    assert code == 2 and needle in one_line_error(err), err
    assert not (tmp_path / "o").exists()
