"""ExecuTorch export (.pte, XNNPACK) run in ExecuTorch's Python runtime against the golden features.

XNNPACK lowering is slow on this 2-core machine (MobileCLIP2-S0 text ~30 s, image ~18 s, int8-static image
~170 s with calibration), so the default run exports both MobileCLIP2-S0 towers, MobileCLIP-S0's MCt text
tower (the encoder nobody else exports) and the dynamic int8 S0 image tower; MobileCLIP-S0's image tower
(MCi0 again), int8 text and int8-static are marked slow."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("executorch")

import mc2export.export as E  # noqa: E402
from golden import EXPORT_CASES, golden, index  # noqa: E402
from mc2export.export import bundle as B  # noqa: E402
from mc2export.export import executorch as X  # noqa: E402
from mc2export.export import wrappers as W  # noqa: E402

TOL = 1e-4
CASES = EXPORT_CASES
DEFAULT = [("s0", "image"), ("s0", "text"), ("mcs0", "text")]
SLOW = [("mcs0", "image")]
PARAMS = [pytest.param(k, t, id=f"{k}-{t}") for k, t in DEFAULT] + \
         [pytest.param(k, t, id=f"{k}-{t}", marks=pytest.mark.slow) for k, t in SLOW]


@pytest.fixture(scope="module")
def bundle_of(checkpoints, tmp_path_factory):
    """Export (key, tower) once per module, on first use."""
    root = tmp_path_factory.mktemp("et")
    made = {}

    def get(key, tower):
        if (key, tower) not in made:
            out = root / f"{key}-{tower}"
            E.export_bundle("executorch", CASES[key][1], out=out, checkpoint=checkpoints[key], towers=tower,
                            normalize=False)
            made[key, tower] = out
        return made[key, tower]

    return get


def _run(path, x):
    from executorch.runtime import Runtime
    import torch

    method = Runtime.get().load_program(str(path)).load_method("forward")
    return np.concatenate([method.execute([torch.from_numpy(x[i:i + 1])])[0].numpy() for i in range(len(x))])


@pytest.mark.parametrize("key, tower", PARAMS)
def test_golden_features_in_executorch(key, tower, bundle_of, reference):
    name, variant = CASES[key]
    folder = bundle_of(key, tower)
    g, info = golden(reference, name), index(reference)[name]
    x = g["image"].astype(np.float32) if tower == "image" else g["tokens"].astype(np.int32)
    ours = _run(folder / f"{tower}.pte", x)
    ref = g[f"{tower}_features_reparam"]
    err = np.abs(ours - ref).max() / info[f"{tower}_features_std"]
    assert err <= TOL, f"{key} {tower}: max-abs {err:.2e} x std"
    cfg = B.verify_bundle(folder)
    assert cfg["runtime"] == "executorch" and set(cfg["models"]) == {tower}
    # verification vectors of the one tower the bundle holds
    files = "image_inputs.u8 image_expected.f32" if tower == "image" else "text_tokens.i32 text_expected.f32"
    assert sorted(n for n in cfg["files"] if n.startswith("verify/")) == sorted(
        ["verify/manifest.json"] + [f"verify/{f}" for f in files.split()])
    man = json.loads((folder / "verify" / "manifest.json").read_text())
    assert list(man["towers"]) == [tower] and man["tier"] == "fp32"
    io = cfg["models"][tower]["inputs"][0]
    assert io["dtype"] == ("float32" if tower == "image" else "int32")
    meta = X.read_metadata(folder / f"{tower}.pte")
    assert meta["mc2export.variant"] == variant and meta["mc2export.tower"] == tower
    val = json.loads((folder / "validation.json").read_text())
    assert val["passed"] and val["towers"][tower]["prediction"].startswith("executorch")
    # attention written out and LayerNorms as linears/1x1 convs: the towers lower to a few XNNPACK
    # partitions (the SDPA decomposition and portable LayerNorms cut the S0 text tower into 52)
    assert 1 <= val["towers"][tower]["delegated_partitions"] <= 4


def _truncated(variant: str, layers: int = 2):
    import mc2export

    model = mc2export.create_model(variant, fold=True)
    if model.text is not None and hasattr(model.text.transformer, "resblocks"):
        model.text.transformer.resblocks = model.text.transformer.resblocks[:layers]
    return model


@pytest.mark.parametrize("variant, tower", [("mobileclip2-b", "text"), ("mobileclip2-b", "image"),
                                            ("mobileclip2-s3", "image"), ("mobileclip2-s0", "text")])
def test_xnnpack_friendly_rewrite_is_exact_and_restored(variant, tower):
    """Unfused attention (causal and not), the linear / 1x1-conv LayerNorms and the split 7x7 depthwise
    convolutions (MCi) compute the folded model's function; the shared model is restored afterwards (the
    reference wrappers use it too)."""
    import torch

    from mc2export.blocks import LayerNorm2d
    from mc2export.export.wrappers import build_wrappers, example_input

    torch.manual_seed(0)
    model = _truncated(variant)
    w = build_wrappers(model, [tower], normalize=False)[tower]
    x = example_input(tower, model.card)
    before = {n: type(m) for n, m in w.named_modules()}
    with torch.no_grad():
        ref = w(x)
        with X.xnnpack_friendly(w):
            assert not any(isinstance(m, torch.nn.LayerNorm) for m in w.modules())
            assert all(m.fused_attn is False for m in w.modules() if hasattr(m, "fused_attn"))
            assert not any(W.SplitDepthwise.applies(m) for m in w.modules())
            assert any(isinstance(m, W.SplitDepthwise) for m in w.modules()) == (tower == "image" and
                                                                                  variant != "mobileclip2-b")
            alt = w(x)
    assert {n: type(m) for n, m in w.named_modules()} == before
    assert all(m.fused_attn is True for m in w.modules() if hasattr(m, "fused_attn"))
    if variant == "mobileclip2-s3":
        assert any(isinstance(m, LayerNorm2d) for m in w.modules())
    err = float((alt - ref).abs().max() / ref.std())
    assert err < 1e-5, f"{variant} {tower}: rewrite differs by {err:.1e} x std"


@pytest.mark.parametrize("stride, bias", [(1, True), (2, False)])
def test_split_depthwise_is_exact(stride, bias):
    """7x7 depthwise = three centered pieces of <= 21 taps (XNNPACK's fast kernels stop at 25 taps)."""
    import torch

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 16, 7, stride=stride, padding=3, groups=16, bias=bias).eval()
    x = torch.randn(2, 16, 13, 13)
    assert W.SplitDepthwise.applies(conv)
    assert not W.SplitDepthwise.applies(torch.nn.Conv2d(16, 16, 7, padding=3))  # not depthwise
    assert not W.SplitDepthwise.applies(torch.nn.Conv2d(16, 16, 5, padding=2, groups=16))  # 25 taps: fast already
    with torch.no_grad():
        ref, ours = conv(x), W.SplitDepthwise(conv)(x)
    assert ours.shape == ref.shape and torch.allclose(ours, ref, atol=1e-5), float((ours - ref).abs().max())


@pytest.mark.parametrize("tower", [pytest.param("text", marks=pytest.mark.slow), "image"])
def test_int8_s0(tower, checkpoints, tmp_path):
    """int8 = dynamic int8 (int8 weights, activations quantized per call): no calibration, within the floor."""
    r = E.export_bundle("executorch", "s0", out=tmp_path / "q", checkpoint=checkpoints["s0"], precision="int8",
                        towers=tower)
    t = r["towers"][tower]
    assert t["passed"] and t["cosine_min"] >= 0.99 and t["quantization"]["activations"] == "dynamic"
    fp32_mb = {"image": 45, "text": 250}[tower]
    assert (tmp_path / "q" / f"{tower}.pte").stat().st_size < 0.6 * fp32_mb * 1e6


@pytest.mark.slow
def test_int8_static_image_s0(checkpoints, tmp_path):
    """int8-static: image activations calibrated (int8 from layer to layer)."""
    r = E.export_bundle("executorch", "s0", out=tmp_path / "q", checkpoint=checkpoints["s0"],
                        precision="int8-static", towers="image")
    t = r["towers"]["image"]
    assert t["passed"] and t["cosine_min"] >= 0.99 and t["quantization"]["activations"] == "static (calibrated)"


@pytest.mark.slow
def test_fp16_text_s0(checkpoints, tmp_path):
    """fp16 .pte: LayerNorms run in fp32 (ExecuTorch's portable fp16 layer_norm is wrong)."""
    r = E.export_bundle("executorch", "s0", out=tmp_path / "h", checkpoint=checkpoints["s0"], precision="fp16",
                        towers="text")
    assert r["towers"]["text"]["cosine_min"] >= 0.999


def test_coreml_delegate_mct_text(checkpoints, reference, tmp_path):
    """``--delegate coreml``: the MCt text tower lowered whole to ExecuTorch's Core ML backend. Off Apple
    platforms the runtime has no Core ML backend: the program's I/O and metadata method are checked and the
    delegated Core ML program's weights, read back from the .pte, reproduce the golden features."""
    import sys

    out = tmp_path / "etcm"
    res = E.export_bundle("executorch", "mobileclip-s0", out=out, checkpoint=checkpoints["mcs0"], towers="text",
                          normalize=False, delegate="coreml")
    cfg = B.verify_bundle(out)
    assert cfg["models"]["text"]["delegate"] == "CoreML" and cfg["models"]["text"]["compute_precision"] == "float32"
    assert cfg["models"]["text"]["compute_units"] == ["cpu", "gpu"]  # fp32: never the Neural Engine
    val = json.loads((out / "validation.json").read_text())["towers"]["text"]
    assert val["delegated_partitions"] == 1 and val["io"]["inputs"][0] == {"name": "tokens", "dtype": "int32",
                                                                            "shape": [1, 77]}
    if sys.platform != "darwin":
        assert res["prediction"]["text"].startswith("skipped")
        assert val["emulation"]["weights_read_back"]["elements_fraction"] >= 0.999
    assert X.read_metadata(out / "text.pte")["mc2export.tower"] == "text"
    assert val["cosine_min"] >= 0.99999 and val["max_abs_over_std"] <= 1e-4
    if sys.platform != "darwin":  # `mc2export verify`: the Core ML delegate cannot run here (exit 4)
        from mc2export.cli import main

        with pytest.raises(SystemExit) as e:
            main(["verify", str(out), "-q"])
        assert e.value.code == 4


@pytest.mark.slow
def test_int8_static_vit_image_loads_and_validates(tmp_path):
    """Static int8 of a ViT image tower: XNNPACK rejected the class-token slice before the last block at
    init, so static int8 runs the full last block (found by the export sweep); ~75 s here."""
    res = E.export_bundle("executorch", "b", out=tmp_path / "b", random_weights=True, towers="image",
                          precision="int8-static")
    assert res["towers"]["image"]["cosine_min"] >= 0.99


def test_set_attributes_switches_and_restores():
    import torch

    from mc2export.export.wrappers import set_attributes

    a, b, c = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    a.pool_last_block, b.pool_last_block = True, False
    root = torch.nn.Sequential(a, b, c)
    with pytest.raises(RuntimeError):
        with set_attributes(root, "pool_last_block", False):
            assert a.pool_last_block is False and b.pool_last_block is False and not hasattr(c, "pool_last_block")
            raise RuntimeError("interrupted export")
    assert a.pool_last_block is True and b.pool_last_block is False
    with set_attributes(root, "pool_last_block", False, enabled=False):
        assert a.pool_last_block is True


def test_int8_keeps_the_image_conv_and_sensitive_layers_fp32():
    """XNNPACK's int8 convolution failed at run time on the conv reading the image (S3/S4 stem, L-14 patch
    embedding): the first convolution stays fp32, and so do modules marked ``keep_precision``."""
    import torch

    from mc2export.export.wrappers import precision_sensitive

    class Down(torch.nn.Conv2d):
        keep_precision = True

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 1), Down(8, 8, 1), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 4 * 4, 4))
    assert precision_sensitive(net) == ["2"]
    gm = torch.export.export(net, (torch.rand(1, 3, 6, 6),)).module()
    for image, expect in ((True, [False, True, False, True]), (False, [True, True, False, True])):
        keep = X._quant_filter(gm, precision_sensitive(net), image)
        got = [keep(n) for n in gm.graph.nodes if n.op == "call_function"
               and ("conv" in str(n.target) or "linear" in str(n.target))]
        assert got == expect, (image, got)
        assert all(keep(n) for n in gm.graph.nodes if n.op != "call_function")  # weights follow their op
