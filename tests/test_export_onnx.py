"""ONNX export: seed-0 official checkpoints of MobileCLIP2-S0 and MobileCLIP-S0 (MCt text) exported once per
module, run in ONNX Runtime and compared with the fidelity kit's golden features; bundle contents; int8."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import mc2export.export as E  # noqa: E402
from golden import EXPORT_CASES, golden, index, lazy_bundles  # noqa: E402
from mc2export.export import bundle as B  # noqa: E402
from mc2export.export import onnx as O  # noqa: E402

TOL = 1e-4  # x std of the golden features, as the export validation
CASES = EXPORT_CASES


@pytest.fixture(scope="module")
def bundles(checkpoints, tmp_path_factory):
    return lazy_bundles("onnx", checkpoints, tmp_path_factory.mktemp("onnx"))


def _run(path, x, batch=1):
    run, _ = O.ort_runner(path)
    return np.concatenate([run(x[i:i + batch]) for i in range(0, len(x), batch)])


@pytest.mark.parametrize("key", list(CASES))
def test_golden_features_in_onnxruntime(key, bundles, reference):
    name, _ = CASES[key]
    g, info = golden(reference, name), index(reference)[name]
    img = _run(bundles[key] / "image.onnx", g["image"].astype(np.float32))
    txt = _run(bundles[key] / "text.onnx", g["tokens"].astype(np.int32))
    for ours, ref, std in ((img, g["image_features_reparam"], info["image_features_std"]),
                           (txt, g["text_features_reparam"], info["text_features_std"])):
        err = np.abs(ours - ref).max() / std
        cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
        assert err <= TOL, f"{key}: max-abs {err:.2e} x std"
        assert cos.min() >= 0.99999


@pytest.mark.parametrize("key", list(CASES))
def test_bundle_contents(key, bundles):
    folder = bundles[key]
    cfg = B.verify_bundle(folder)  # every file listed with a matching sha256
    assert cfg["format"] == "mc2export-bundle" and cfg["runtime"] == "onnx"
    assert cfg["variant"] == CASES[key][1] and cfg["output_normalized"] is False
    assert set(cfg["files"]) == {"image.onnx", "text.onnx", "vocab.json", "merges.txt", "validation.json",
                                 "verify/manifest.json", "verify/image_inputs.u8", "verify/image_expected.f32",
                                 "verify/text_tokens.i32", "verify/text_expected.f32"}
    assert not list(folder.glob("*.data")), "small models must be single files"
    assert cfg["weights"]["source"] == "checkpoint" and cfg["weights"]["random_weights"] is False
    assert cfg["preprocess"]["mean"] == [0.0, 0.0, 0.0] and cfg["context_length"] == 77
    assert cfg["versions"]["onnxruntime"] and cfg["versions"]["torch"]
    text = cfg["models"]["text"]
    assert text["inputs"] == [{"name": "tokens", "dtype": "int32", "shape": [1, 77]}]
    assert text["outputs"] == [{"name": "embedding", "dtype": "float32", "shape": [1, 512]}]
    assert cfg["models"]["image"]["inputs"] == [{"name": "image", "dtype": "float32", "shape": [1, 3, 256, 256]}]
    assert cfg["models"]["image"]["input"]["range"] == [0.0, 1.0]
    val = json.loads((folder / "validation.json").read_text())
    assert val["passed"] and val["tokenizer"]["passed"]
    for tower in ("image", "text"):
        t = val["towers"][tower]
        assert t["cosine_min"] >= 0.99999 and t["max_abs_over_std"] <= 1e-4 and t["io_ok"]
        assert t["prediction"].startswith("onnxruntime")
    meta = O.read_metadata(folder / "text.onnx")
    assert meta["mc2export.variant"] == CASES[key][1] and meta["mc2export.output_normalized"] == "false"
    assert meta["mc2export.tower"] == "text" and meta["mc2export.random_weights"] == "false"
    import onnx

    model = onnx.load(str(folder / "text.onnx"), load_external_data=False)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [O.OPSET]
    argmax = [n for n in model.graph.node if n.op_type == "ArgMax"]
    assert len(argmax) == 1 and argmax[0].input[0] == "tokens", "EOT pooling must argmax the int32 ids"


def test_verification_vectors_hold_the_folded_models_outputs(bundles, checkpoints):
    """verify/: the probe rows exactly as the models take them and the folded fp32 model's embeddings for them,
    raw little-endian arrays as the manifest describes, well under 2 MB for S0."""
    import torch

    import mc2export
    from mc2export.export import validate as V
    from mc2export.export import vectors
    from mc2export.export.wrappers import build_wrappers

    folder = bundles["s0"]
    cfg = B.verify_bundle(folder)
    assert sum(f["bytes"] for n, f in cfg["files"].items() if n.startswith("verify/")) < 0.9e6
    man = vectors.read(folder)
    assert man["version"] == 1 and man["byte_order"] == "little" and man["reference"] == "folded PyTorch model, fp32"
    assert man["precision"] == man["tier"] == "fp32" and man["tolerance"] == {"cosine_min": 0.99999,
                                                                              "max_abs_over_std": 1e-4}
    assert man["embed_dim"] == 512 and man["output_normalized"] is False
    img, txt = man["towers"]["image"], man["towers"]["text"]
    assert img["probe_rows"] == [0, 5, 10, 15] and txt["probe_rows"] == [0, 8, 17, 18, 19, 20]
    texts = txt["texts"]
    assert texts[0] == "a photo of a red circle." and texts[2] == "" and "<end_of_text>" in texts[4]
    assert len(mc2export.tokenize(texts[3])[0].nonzero()) == 77 and not texts[5].isascii()
    u8 = img["inputs"]["array"]
    assert u8.shape == (4, 256, 256, 3) and np.array_equal(u8, V.probe_images(mc2export.get_card("s0"))[0][[0, 5, 10, 15]])
    tokens = txt["inputs"]["array"]
    assert np.array_equal(tokens, mc2export.tokenize(texts).numpy()) and tokens.dtype == np.int32
    model = mc2export.create_model("s0", checkpoint=checkpoints["s0"], fold=True)
    ref = build_wrappers(model, ["image", "text"], normalize=False)
    with torch.no_grad():
        for tower, x in (("image", vectors.model_input("image", u8)), ("text", tokens)):
            want = ref[tower](torch.from_numpy(x)).numpy()
            got = man["towers"][tower]["expected"]["array"]
            assert got.dtype == np.float32 and np.abs(got - want).max() <= 1e-5 * want.std(), tower
    raw = (folder / "verify" / "text_tokens.i32").read_bytes()  # headerless little-endian int32
    assert len(raw) == 6 * 77 * 4 and int.from_bytes(raw[:4], "little") == 49406


def test_int8_text_s0(checkpoints, tmp_path):
    r = E.export_bundle("onnx", "s0", out=tmp_path / "q", checkpoint=checkpoints["s0"], precision="int8",
                        towers="text")
    t = r["towers"]["text"]
    assert t["cosine_min"] >= 0.99 and t["passed"]
    assert r["zero_shot"]["images"] == 16 and 0 <= r["zero_shot"]["top1_agreement"] <= 1
    size = r["files"]["text.onnx"]["bytes"]
    assert size < 100e6, f"int8 text model is {size / 1e6:.0f} MB"  # fp32: 254 MB
    cfg = json.loads((tmp_path / "q" / "config.json").read_text())
    assert cfg["output_normalized"] is True and cfg["models"]["text"]["int8"]["op_types"] == ["MatMul", "Gather"]
    assert "image" not in cfg["models"]
    import onnx  # every linear layer integer: 6 per block (q, k, v, out, fc, proj) and the text projection

    ops = [n.op_type for n in onnx.load(str(tmp_path / "q" / "text.onnx")).graph.node]
    assert ops.count("MatMulInteger") == 6 * 12 + 1 and "Slice" not in ops, sorted(set(ops))


def test_fp16_text_causal(tmp_path):
    """fp16 ONNX of a causal text tower (MobileCLIP2-B: the masked scores hold -inf in fp16) validates at
    the fp16 floor, float32 in and out, weights stored as float16."""
    r = E.export_bundle("onnx", "mobileclip2-b", out=tmp_path / "h", random_weights=True, precision="fp16",
                        towers="text")
    t = r["towers"]["text"]
    assert t["passed"] and t["cosine_min"] >= 0.999
    assert t["io"]["inputs"][0]["dtype"] == "int32" and t["io"]["outputs"][0]["dtype"] == "float32"
    size = r["files"]["text.onnx"]["bytes"]
    assert 100e6 < size < 140e6, f"fp16 text model is {size / 1e6:.0f} MB"  # fp32: 254 MB


def test_int8_image_quantizes_the_attention_projections(tmp_path):
    """int8 keeps MCi attention's qkv/proj as MatMuls (the fp32 export makes them 1x1 convs, which dynamic
    quantization leaves fp32): MCi0's two attention blocks and the head end up as integer matmuls."""
    import onnx

    r = E.export_bundle("onnx", "s0", out=tmp_path / "q", random_weights=True, precision="int8", towers="image")
    assert r["towers"]["image"]["passed"]
    ops = [n.op_type for n in onnx.load(str(tmp_path / "q" / "image.onnx")).graph.node]
    assert ops.count("MatMulInteger") >= 5 and "ConvInteger" not in ops, sorted(set(ops))


def test_wrapper_pooling_matches_model(checkpoints):
    """The export wrapper (int32 ids, LayerNorm after pooling, rsqrt normalization) equals the model."""
    import torch

    import mc2export
    from mc2export.export.wrappers import build_wrappers

    model = mc2export.create_model("s0", checkpoint=checkpoints["s0"], fold=True)
    tok = mc2export.tokenize(["a photo of a cat", "x <end_of_text> y", "", "word " * 90])
    w = build_wrappers(model, ["text"], normalize=True)["text"]
    with torch.no_grad():
        ref = model.encode_text(tok, normalize=True)
        ours = w(tok.to(torch.int32))
    assert torch.allclose(ours, ref, atol=1e-6)


def test_external_data_for_big_models(tmp_path, monkeypatch):
    """Models over the threshold (1.8 GB) keep their weights in <name>.onnx.data, listed and checksummed."""
    monkeypatch.setattr(O, "EXTERNAL_DATA_BYTES", 0)
    r = E.export_bundle("onnx", "s0", out=tmp_path / "x", random_weights=True, towers="image")
    assert set(r["files"]) >= {"image.onnx", "image.onnx.data"}
    assert r["files"]["image.onnx"]["bytes"] < 5e6 < r["files"]["image.onnx.data"]["bytes"]
    assert r["towers"]["image"]["external_data"] is True and r["towers"]["image"]["cosine_min"] >= 0.99999
    assert O.read_metadata(tmp_path / "x" / "image.onnx")["mc2export.random_weights"] == "true"
    B.verify_bundle(tmp_path / "x")


@pytest.mark.parametrize("key", list(CASES))
def test_onnxruntime_fuses_every_gelu(key, bundles, tmp_path):
    """Our GELU form is the one ORT's GeluFusion matches: after ORT's own graph optimization no Erf is left
    (the exporter's default decomposition stays five element-wise nodes per GELU: a third of MCi0's time).
    The text graph has the flat stream's few Reshape nodes (a 3-D stream has 12 per attention block) and
    no Split (q, k, v come from three Gemms); the
    image graph no Transpose (MCi attention stays NCHW: the token form left six per attention block)."""
    import onnx
    import onnxruntime as ort

    import mc2export

    for tower in ("image", "text"):
        so = ort.SessionOptions()
        so.optimized_model_filepath = str(tmp_path / f"{key}-{tower}-optimized.onnx")
        so.log_severity_level = 3
        ort.InferenceSession(str(bundles[key] / f"{tower}.onnx"), so, providers=["CPUExecutionProvider"])
        ops = [n.op_type for n in onnx.load(so.optimized_model_filepath, load_external_data=False).graph.node]
        assert "Erf" not in ops and "Gelu" in ops, f"{key} {tower}: {sorted(set(ops))}"
        if tower == "text":
            layers = mc2export.get_card(CASES[key][1])["text"]["layers"]
            assert ops.count("Reshape") <= 6 * layers, f"{key}: {ops.count('Reshape')} Reshape nodes"
            assert "Split" not in ops, f"{key}: q, k, v split from one projection"
        else:
            assert "Transpose" not in ops, f"{key}: {ops.count('Transpose')} Transpose nodes in the image graph"


def test_pooled_last_block_is_exact():
    """Only the pooled token leaves the last block (text: non-causal; ViT: class token): same outputs."""
    import torch

    import mc2export
    from mc2export.export.wrappers import build_wrappers

    torch.manual_seed(0)
    model = mc2export.create_model("s0", fold=True)
    model.text.transformer.resblocks = model.text.transformer.resblocks[:2]
    tok = mc2export.tokenize(["a photo of a cat", "x <end_of_text> y", "", "word " * 90])
    w = build_wrappers(model, ["text"], normalize=False)["text"]
    with torch.no_grad():
        ref = model.encode_text(tok)
        ours = w(tok.to(torch.int32))
    assert torch.allclose(ours, ref, atol=1e-5), float((ours - ref).abs().max())
    vit = mc2export.create_model("mobileclip2-b", fold=True).visual.trunk
    seen = {}
    vit.blocks[-2].register_forward_hook(lambda mod, inp, out: seen.__setitem__("x", out))
    with torch.no_grad():
        ours = vit(torch.rand(2, 3, 224, 224))
        ref = vit.head(vit.norm(vit.blocks[-1](seen["x"])[:, 0]))  # the full last block, then the class token
    assert torch.allclose(ours, ref, atol=1e-5), float((ours - ref).abs().max())


def test_conv_attention_is_exact():
    """The ONNX form of MCi attention (1x1 convolutions, heads as channel groups) computes the same."""
    import torch

    import mc2export
    from mc2export.blocks import Attention2d

    torch.manual_seed(0)
    attn = mc2export.create_model("s0", fold=True).visual
    attn = next(m for m in attn.modules() if isinstance(m, Attention2d))
    x = torch.randn(2, attn.qkv.in_features, 8, 8)
    with torch.no_grad():
        ref = attn(x)
        ours = O._ConvAttention2d(attn)(x)
    assert torch.allclose(ours, ref, atol=1e-5), float((ours - ref).abs().max())


@pytest.mark.parametrize("variant", ["s0", "mobileclip2-b", "mobileclip-s0"])  # non-causal, causal, MCt
def test_flat_text_stream_is_exact(variant):
    """The ONNX form of the text tower (2-D residual stream, q/k/v from three Gemms, last attention block
    for the pooled token only with its query absorbed into the key and value weights, causal mask row at
    the pooled position) computes the model's features, at batch 1 and 4."""
    import torch

    import mc2export
    from mc2export.export.wrappers import build_wrappers

    torch.manual_seed(0)
    model = mc2export.create_model(variant, fold=True)
    blocks = model.text.transformer.resblocks
    model.text.transformer.resblocks = blocks[:2] if len(blocks) > 2 else blocks
    for p in model.text.parameters():  # biases start at zero: give the key/value bias terms a value
        if p.dim() == 1:
            p.data.normal_(0, 0.5)
    w = build_wrappers(model, ["text"], normalize=False)["text"]
    tok = mc2export.tokenize(["a photo of a cat", "x <end_of_text> y", "", "word " * 90])
    with torch.no_grad():
        ref = model.encode_text(tok)
    with torch.no_grad(), O.ort_friendly(w):
        assert w.flat_stream
        for batch in (1, 4):
            ours = torch.cat([w(tok[i:i + batch].to(torch.int32)) for i in range(0, 4, batch)])
            assert torch.allclose(ours, ref, atol=1e-5), (batch, float((ours - ref).abs().max()))
