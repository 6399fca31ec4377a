"""Core ML export of MobileCLIP2-S0 and MobileCLIP-S0 (seed-0 official checkpoints), once per module.

On macOS the saved models are run by Core ML; elsewhere the weights read back from the saved
``.mlpackage`` run in PyTorch (prediction needs macOS) -- against the fidelity kit's golden features."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("coremltools")

import mc2export  # noqa: E402
import mc2export.export as E  # noqa: E402
from golden import EXPORT_CASES, golden, index, lazy_bundles  # noqa: E402
from mc2export.export import bundle as B  # noqa: E402
from mc2export.export import coreml as C  # noqa: E402
from mc2export.export.wrappers import build_wrappers  # noqa: E402

TOL = 1e-4
CASES = EXPORT_CASES
MAC = sys.platform == "darwin"


@pytest.fixture(scope="module")
def bundles(checkpoints, tmp_path_factory):
    return lazy_bundles("coreml", checkpoints, tmp_path_factory.mktemp("coreml"))


def _outputs(folder, tower, x, checkpoint, variant):
    """The saved model's outputs: Core ML prediction on macOS, its read-back weights in PyTorch elsewhere."""
    path = folder / f"{tower}.mlpackage"
    if MAC:
        import coremltools as ct
        from PIL import Image

        ml = ct.models.MLModel(str(path))
        if tower == "image":
            return np.concatenate([ml.predict({"image": Image.fromarray(
                np.rint(im.transpose(1, 2, 0) * 255).astype(np.uint8), "RGB")})["embedding"] for im in x])
        return np.concatenate([ml.predict({"tokens": x[i:i + 1]})["embedding"] for i in range(len(x))])
    card = mc2export.get_card(variant)
    model = mc2export.create_model(variant, checkpoint=checkpoint, fold=True)
    wrapper = build_wrappers(model, [tower], False, image_affine=C.image_affine(card))[tower]
    emu, cov = C.emulate(path, wrapper)
    assert cov["elements_fraction"] == 1.0, cov
    t = torch.from_numpy(x)
    if tower == "image":  # the ImageType's scale * pixel + bias (pixel = 255 x)
        scale, bias = C.image_type_params(card)
        t = t * 255.0 * scale + torch.tensor(bias).reshape(1, 3, 1, 1)
    with torch.no_grad():
        return emu(t).numpy()


@pytest.mark.parametrize("key", list(CASES))
def test_golden_features(key, bundles, checkpoints, reference):
    name, variant = CASES[key]
    g, info = golden(reference, name), index(reference)[name]
    img = g["image"].astype(np.float32)
    if MAC:  # Core ML takes 8-bit pixels: compare with the folded model on the same 8-bit image
        img = np.rint(img * 255) / 255
        model = mc2export.create_model(variant, checkpoint=checkpoints[key], fold=True)
        with torch.no_grad():
            ref_img = model.encode_image(torch.from_numpy(img.astype(np.float32))).numpy()
    else:
        ref_img = g["image_features_reparam"]
    ours_img = _outputs(bundles[key], "image", img.astype(np.float32), checkpoints[key], variant)
    ours_txt = _outputs(bundles[key], "text", g["tokens"].astype(np.int32), checkpoints[key], variant)
    for ours, ref, std in ((ours_img, ref_img, info["image_features_std"]),
                           (ours_txt, g["text_features_reparam"], info["text_features_std"])):
        err = np.abs(ours - ref).max() / std
        assert err <= TOL, f"{key}: max-abs {err:.2e} x std"


@pytest.mark.parametrize("key", list(CASES))
def test_program_and_bundle(key, bundles):
    folder = bundles[key]
    cfg = B.verify_bundle(folder)
    assert cfg["runtime"] == "coreml" and cfg["variant"] == CASES[key][1]
    assert any(f.startswith("image.mlpackage/") for f in cfg["files"])
    io = C.read_io(folder / "image.mlpackage")
    assert io["inputs"] == [{"name": "image", "dtype": "image:RGB", "shape": [256, 256]}]
    assert io["outputs"] == [{"name": "embedding", "dtype": "float32", "shape": [1, 512]}]
    assert C.read_io(folder / "text.mlpackage")["inputs"] == [{"name": "tokens", "dtype": "int32", "shape": [1, 77]}]
    facts = C.check_spec(folder / "text.mlpackage")
    assert facts["specification_version"] >= 8 and facts["ml_program"] and not facts["problems"]
    spec = C.read_spec(folder / "text.mlpackage")
    user = dict(spec.description.metadata.userDefined)
    assert user["mc2export.variant"] == CASES[key][1] and user["mc2export.output_normalized"] == "false"
    # EOT pooling: reduce_argmax directly on the int32 input (a float cast breaks in fp16: 49406 ~ 49407)
    ops = [op for f in spec.mlProgram.functions.values() for b in f.block_specializations.values()
           for op in b.operations]
    argmax = [op for op in ops if op.type == "reduce_argmax"]
    assert len(argmax) == 1 and argmax[0].inputs["x"].arguments[0].name == "tokens"
    val = json.loads((folder / "validation.json").read_text())
    assert val["passed"]
    pred = val["towers"]["image"]["prediction"]
    assert pred.startswith("coremltools") if MAC else pred.startswith("skipped")
    # fp32 (asked for explicitly: fp16 is the default) never reaches the Neural Engine, and config.json says so
    assert cfg["precision"] == "fp32"
    assert {t: m["compute_units"] for t, m in cfg["models"].items()} == {"image": ["cpu", "gpu"], "text": ["cpu", "gpu"]}
    # verification vectors: the uint8 pixels a Core ML ImageType takes, the fp32 reference, checksummed
    man = json.loads((folder / "verify" / "manifest.json").read_text())
    assert man["tier"] == "fp32" and man["output_normalized"] is False
    assert man["towers"]["image"]["inputs"] == {"file": "verify/image_inputs.u8", "dtype": "uint8",
                                                "shape": [4, 256, 256, 3], "layout": "NHWC RGB"}
    assert {f"verify/{n}" for n in ("manifest.json", "image_inputs.u8", "image_expected.f32", "text_tokens.i32",
                                    "text_expected.f32")} <= set(cfg["files"])


@pytest.mark.parametrize("key", ["s0"])
def test_verify_on_linux_cannot_run_here(key, bundles, capsys):
    """`mc2export verify` on a Core ML bundle: Core ML prediction on macOS; elsewhere exit 4, nothing passed."""
    from mc2export.cli import main

    with pytest.raises(SystemExit) as e:
        main(["verify", str(bundles[key]), "-q"])
    out, err = capsys.readouterr()
    if MAC:
        assert e.value.code == 0, err
    else:
        assert e.value.code == 4 and out == "" and "cannot run here (nothing was verified)" in err
        assert "pass" not in err


def test_default_precision_is_fp16_for_the_neural_engine(checkpoints, tmp_path, capsys):
    """`mc2export coreml` without --precision: fp16 compute (the Neural Engine's), recorded with the compute
    units it can use; the text tower stays overflow-free in fp16 (constants checked, activation headroom)."""
    from mc2export.cli import main

    out = tmp_path / "default"
    with pytest.raises(SystemExit) as e:
        main(["coreml", "--variant", "s0", "--checkpoint", str(checkpoints["s0"]), "--towers", "text", "--out",
              str(out), "-q"])
    stdout, err = capsys.readouterr()
    assert e.value.code == 0, err
    assert "Core ML compute units: cpu, gpu, neural_engine" in stdout and "never the Neural Engine" not in stdout
    cfg = B.verify_bundle(out)
    text = cfg["models"]["text"]
    assert cfg["precision"] == "fp16" and text["compute_precision"] == "float16"
    assert text["compute_units"] == ["cpu", "gpu", "neural_engine"]
    val = json.loads((out / "validation.json").read_text())["towers"]["text"]
    assert val["cosine_min"] >= 0.999 and val["finite"]
    assert val["fp16_constants"]["passed"] and val["fp16_constants"]["with_nan"] == 0
    assert val["activation_absmax_fp32"]["absmax"] < 65504 / 100  # two orders of magnitude of fp16 headroom
    man = json.loads((out / "verify" / "manifest.json").read_text())
    assert man["precision"] == "fp16" and man["tolerance"] == {"cosine_min": 0.999} and list(man["towers"]) == ["text"]
    spec = C.read_spec(out / "text.mlpackage")
    assert dict(spec.description.metadata.userDefined)["mc2export.precision"] == "fp16"


def test_fp32_help_and_summary_say_cpu_gpu_only():
    import typer

    from mc2export.cli import app

    assert E.default_precision("coreml") == "fp16" and E.default_precision("onnx") == "fp32"
    opt = next(p for p in typer.main.get_command(app).commands["coreml"].params if p.name == "precision")
    assert opt.default == "fp16"
    assert "fp16 (default: CPU, GPU and Neural Engine)" in opt.help and "fp32 (CPU/GPU only" in opt.help
    tower = {"files": ["image.mlpackage"], "cosine_min": 1.0, "max_abs_over_std": 1e-6, "prediction": "skipped: x",
             "export_seconds": 1.0, "validate_seconds": 1.0, "compute_units": ["cpu", "gpu"]}
    result = {"precision": "fp32", "towers": {"image": tower}, "files": {"image.mlpackage/x": {"bytes": 10}},
              "out": "/b", "total_bytes": 10, "seconds": 2.0}
    text = E.summary_table(result)
    assert "Core ML compute units: cpu, gpu -- fp32 runs on the CPU/GPU only, never the Neural Engine" in text


def test_int8_text_s0(checkpoints, tmp_path):
    r = E.export_bundle("coreml", "s0", out=tmp_path / "q", checkpoint=checkpoints["s0"], precision="int8",
                        towers="text")
    t = r["towers"]["text"]
    assert t["passed"] and t["cosine_min"] >= 0.99
    assert t["fp16_constants"]["passed"] and t["compression"]["dtype"] == "int8"
    size = sum(f["bytes"] for n, f in r["files"].items() if n.startswith("text.mlpackage/"))
    assert size < 80e6, f"int8 text model is {size / 1e6:.0f} MB"  # fp32: 242 MB


@pytest.mark.slow
def test_palettized_s0(checkpoints, tmp_path):
    r = E.export_bundle("coreml", "s0", out=tmp_path / "p", checkpoint=checkpoints["s0"], precision="pal6")
    for t in r["towers"].values():
        assert t["passed"] and t["cosine_min"] >= 0.99


@pytest.mark.parametrize("variant", ["mobileclip2-s0", "mobileclip2-s3", "mobileclip2-l14"])
def test_image_type_normalization(variant):
    """ImageType scale/bias + the wrapper's per-channel factor == (pixel/255 - mean) / std, every channel."""
    card = mc2export.get_card(variant)
    mean, std = np.array(card["preprocess"]["mean"]), np.array(card["preprocess"]["std"])
    scale, bias = C.image_type_params(card)
    a_scale, a_bias = C.image_affine(card)
    pixels = np.array([0.0, 17.0, 128.0, 255.0])
    for c in range(3):
        got = (pixels * scale + bias[c]) * a_scale[c] + a_bias[c]
        np.testing.assert_allclose(got, (pixels / 255 - mean[c]) / std[c], rtol=1e-6, atol=1e-6)
    assert C.input_contract("image", card)["per_channel_std_in_model"] == (len(set(std)) > 1)


def test_fp16_traps_guarded():
    """Why pooling argmaxes the int32 ids and the L2 normalization is pre-scaled: both break in fp16."""
    from mc2export.export.wrappers import l2_normalize

    assert np.float16(49406) == np.float16(49407)  # SOT == EOT after a float16 cast: argmax would pool the SOT
    x = torch.randn(2, 768) * 3000  # features whose squared norm overflows fp16 (> 65504)
    assert not torch.isfinite((x.half() * x.half()).sum(-1)).all()
    y = l2_normalize(x.half()).float()
    assert torch.isfinite(y).all()
    assert torch.allclose(y, torch.nn.functional.normalize(x, dim=-1), atol=2e-3)
    assert torch.equal(l2_normalize(torch.zeros(1, 8)), torch.zeros(1, 8))


def test_read_back_counts_zero_parameters_the_converter_removed():
    """A random-weights ViT has an all-zero position embedding: coremltools drops the addition of zero,
    so the constant is not in the program. It counts as covered (listed); a missing non-zero weight does not."""
    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    with torch.no_grad():
        m[1].bias.zero_()
    consts = {"p_0_weight": m[0].weight.detach().numpy(), "p_0_bias": m[0].bias.detach().numpy(),
              "p_1_weight": m[1].weight.detach().numpy()}
    _, cov = C._read_back(m, consts)
    assert cov["elements_fraction"] == 1.0 and cov["zero_eliminated_by_converter"] == ["1.bias"]
    del consts["p_0_bias"]
    _, cov = C._read_back(m, consts)
    assert cov["elements_fraction"] < 1.0 and cov["not_found"] == ["0.bias"]


def test_int8_keeps_precision_sensitive_weights(tmp_path):
    """Compressed Core ML leaves the weights of ``keep_precision`` modules (MCi downsampling) alone: the
    count reported is the number of those weights big enough to be compressed otherwise. Random weights:
    the converter merges the random-init RepMixer kernels (equal in fp16) and the read-back still finds
    every parameter (it failed validation with 99.8% of the weights before)."""
    import mc2export
    from mc2export.export.coreml import WEIGHT_THRESHOLD
    from mc2export.export.wrappers import build_wrappers, precision_sensitive, under

    r = E.export_bundle("coreml", "s0", out=tmp_path / "q", random_weights=True, precision="int8", towers="image")
    t = r["towers"]["image"]
    assert t["passed"] and t["cosine_min"] >= 0.99
    w = build_wrappers(mc2export.create_model("s0", fold=True), ["image"], normalize=True)["image"]
    keep = precision_sensitive(w)
    big = [n for n, p in w.named_parameters() if under(n.rsplit(".", 1)[0], keep) and p.numel() >= WEIGHT_THRESHOLD]
    assert keep and big
    assert t["compression"]["kept_uncompressed"] == len(big), (t["compression"], big)
