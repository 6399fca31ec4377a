"""Cards, parameter counts, folding, strict loading and its one-line errors."""
from __future__ import annotations

import re
from collections import defaultdict

import pytest
import torch

import mc2export
from mc2export import UserError
from golden import write_official

BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def test_variants_and_short_names():
    ids = mc2export.list_variants()
    assert len(ids) == 14 and ids[0].startswith("mobileclip2-")
    for short, vid in {"s0": "mobileclip2-s0", "S4": "mobileclip2-s4", "l14": "mobileclip2-l14",
                       "MobileCLIP-B-LT": "mobileclip-blt", "mobileclip_s0": "mobileclip-s0"}.items():
        assert mc2export.resolve_variant(short) == vid
    with pytest.raises(UserError, match="unknown variant 'x9'"):
        mc2export.get_card("x9")


def _manifest_params(manifest):
    return {k: s for k, s in manifest.items() if k.rsplit(".", 1)[-1] not in BUFFERS}


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def reference_folded_count(params: dict) -> int:
    """Parameter count after the references' folding, derived from a (timm-named) manifest alone:
    RepMixer -> one depthwise conv + bias; MobileOne / large-kernel branches -> one conv + bias."""
    params = dict(params)
    added = 0
    for key in [k for k in params if k.endswith("token_mixer.mixer.conv_kxk.0.conv.weight")]:
        tm = key[: -len(".mixer.conv_kxk.0.conv.weight")]
        w = params[key]
        for k in [k for k in params if k.startswith(tm + ".norm.") or k.startswith(tm + ".mixer.")
                  or k == tm + ".layer_scale.gamma"]:
            del params[k]
        added += _numel(w) + w[0]
    groups = defaultdict(list)
    for k in params:
        m = re.match(r"(.*)\.(conv_kxk\.\d+\.(conv|bn)|conv_scale\.(conv|bn)|identity|large_conv\.(conv|bn)|"
                     r"small_conv\.(conv|bn))\.\w+$", k)
        if m:
            groups[m.group(1)].append(k)
    for prefix, keys in groups.items():
        w = params.get(prefix + ".conv_kxk.0.conv.weight") or params.get(prefix + ".large_conv.conv.weight")
        for k in keys:
            del params[k]
        added += _numel(w) + w[0]
    return sum(_numel(s) for s in params.values()) + added


# (manifest, variant, tower prefix in our model, extra params our mapping adds)
COUNT_CASES = [
    ("open_clip/MobileCLIP2-S0", "mobileclip2-s0"), ("open_clip/MobileCLIP2-S2", "mobileclip2-s2"),
    ("open_clip/MobileCLIP2-B", "mobileclip2-b"), ("open_clip/MobileCLIP2-S3", "mobileclip2-s3"),
    ("open_clip/MobileCLIP2-S4", "mobileclip2-s4"), ("open_clip/MobileCLIP2-L-14", "mobileclip2-l14"),
    ("open_clip/MobileCLIP-S1", "mobileclip-s1"), ("open_clip/MobileCLIP-B", "mobileclip-blt"),
    ("open_clip/MobileCLIP2-S3", "mobileclip-s3"), ("open_clip/MobileCLIP2-S4", "mobileclip-s4"),
    ("open_clip/MobileCLIP2-L-14", "mobileclip-l14"), ("open_clip/MobileCLIP-S2", "mobileclip-s2"),
    ("open_clip/MobileCLIP-B", "mobileclip-b"), ("apple_v1/mobileclip_s0", "mobileclip-s0"),
]


@pytest.mark.parametrize("manifest,variant", COUNT_CASES)
def test_parameter_counts_equal_reference(manifest, variant, reference, detweights):
    layout, name = manifest.split("/")
    shapes = detweights.load_shapes(reference / "keys" / layout / f"{name}.txt")
    if layout == "apple_v1":  # compare in our names; Apple's bias-free head.proj gains a zero bias (as in timm)
        from mc2export.checkpoint import to_canonical

        meta = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
        shapes = {k: tuple(v.shape) for k, v in to_canonical(meta, layout).items()}
    params = _manifest_params(shapes)
    with torch.device("meta"):
        model = mc2export.CLIPModel(variant, layout)
        ours = mc2export.count_parameters(model)
        ours_ref_fold = mc2export.count_parameters(mc2export.fold(model, reference_only=True))
        ours_fold = mc2export.count_parameters(mc2export.fold(model))
    assert ours == sum(_numel(s) for s in params.values())
    assert ours_ref_fold == reference_folded_count(params)
    assert ours_fold <= ours_ref_fold  # our extra folds only remove parameters


def _s0_model(seed=0):
    torch.manual_seed(seed)
    return mc2export.create_model("s0")


def _randomize_bn(model):
    # Fresh BatchNorms are identities; give them statistics so folding has something to prove.
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.weight.data.copy_(1 + 0.1 * torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=g))
    return model


def test_fold_idempotent_and_preserving():
    model = _randomize_bn(_s0_model())
    x = torch.rand(1, 3, 256, 256)
    tokens = mc2export.tokenize(["a photo of a dog"])
    once = mc2export.fold(model)
    twice = mc2export.fold(once)
    assert once.folded == "full" and model.folded is None  # input untouched
    sd1, sd2 = once.state_dict(), twice.state_dict()
    assert list(sd1) == list(sd2) and all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    assert not any(k.endswith(BUFFERS) for k in sd1)  # no BatchNorm left anywhere
    with torch.no_grad():
        ref_i, ref_t = model.encode_image(x), model.encode_text(tokens)
        for m in (once, twice, mc2export.fold(model, reference_only=True)):
            assert torch.allclose(m.encode_image(x), ref_i, atol=1e-4 * ref_i.std().item())
            assert torch.allclose(m.encode_text(tokens), ref_t, atol=1e-4 * ref_t.std().item())


def test_folded_checkpoint_round_trip(tmp_path):
    model = mc2export.fold(_randomize_bn(_s0_model()))
    path = mc2export.save_checkpoint(model, tmp_path / "s0-folded.safetensors")
    loaded = mc2export.create_model(checkpoint=path)  # variant and folding come from the metadata
    assert loaded.variant == "mobileclip2-s0" and loaded.folded == "full"
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(x), model.encode_image(x))
    with pytest.raises(UserError, match="holds mobileclip2-s0, not mobileclip2-s2"):
        mc2export.create_model("s2", checkpoint=path)


@pytest.fixture(scope="module")
def s0_file(reference, detweights, tmp_path_factory):
    return write_official(reference, detweights, "open_clip/MobileCLIP2-S0", tmp_path_factory.mktemp("s0"))


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_wrong_variant_names_the_likely_one(s0_file):
    with pytest.raises(UserError) as e:
        mc2export.create_model("s2", checkpoint=s0_file)
    msg = _one_line(e)
    assert "does not fit mobileclip2-s2" in msg and "shape mismatch: visual.trunk." in msg
    assert "pass --variant mobileclip2-s0" in msg


def test_checkpoint_without_variant_is_recognized(s0_file):
    assert mc2export.create_model(checkpoint=s0_file).variant == "mobileclip2-s0"


def test_truncated_files(s0_file, tmp_path):
    data = s0_file.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated") as e:
        mc2export.create_model("s0", checkpoint=cut)
    _one_line(e)
    pt = tmp_path / "cut.pt"
    torch.save({"logit_scale": torch.zeros(())} | {f"w{i}": torch.zeros(1000) for i in range(20)}, pt)
    pt.write_bytes(pt.read_bytes()[:3000])
    with pytest.raises(UserError, match="truncated or corrupt") as e:
        mc2export.create_model("s0", checkpoint=pt)
    _one_line(e)


class NotWeights:
    pass


def test_pickles_that_are_not_state_dicts(tmp_path):
    p = tmp_path / "obj.pt"
    torch.save({"model": NotWeights()}, p)
    with pytest.raises(UserError, match="holds Python objects") as e:
        mc2export.create_model("s0", checkpoint=p)
    _one_line(e)
    p2 = tmp_path / "list.pt"
    torch.save([1, 2, 3], p2)
    with pytest.raises(UserError, match="is not a state dict") as e:
        mc2export.create_model("s0", checkpoint=p2)
    _one_line(e)
    with pytest.raises(UserError, match="checkpoint not found"):
        mc2export.create_model("s0", checkpoint=tmp_path / "missing.pt")


def test_wrapped_and_prefixed_pt(s0_file, tmp_path):
    from safetensors.torch import load_file

    sd = load_file(str(s0_file))
    p = tmp_path / "ddp.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 3}, p)
    model = mc2export.create_model("s0", checkpoint=p)
    assert torch.equal(model.logit_scale, sd["logit_scale"])
    b = tmp_path / "open_clip_pytorch_model.bin"  # open_clip's .bin: a plain pickled state dict
    torch.save(sd, b)
    assert torch.equal(mc2export.create_model("s0", checkpoint=b).logit_scale, sd["logit_scale"])


def test_image_only_checkpoint(reference, detweights, tmp_path):
    path = write_official(reference, detweights, "timm/fastvit_mci0", tmp_path)
    model = mc2export.create_model("s0", checkpoint=path)
    assert model.towers == ("image",) and model.text is None
    with pytest.raises(UserError, match="image-only checkpoint"):
        model.encode_text(mc2export.tokenize(["x"]))


def test_custom_card_travels_with_its_checkpoint(tmp_path):
    from mc2export import cards

    card = mc2export.get_card("s0")
    card.update(id="tiny-zoo-test", name="Tiny zoo test", aliases=[], embed_dim=64)
    card["image"].update(layers=[1, 1, 1, 1], embed_dims=[16, 32, 64, 128])
    card["text"].update(width=64, heads=2, layers=2)
    cards.register_card(card)
    model = mc2export.create_model("tiny-zoo-test")
    path = mc2export.save_checkpoint(model, tmp_path / "tiny.safetensors")
    cards._EXTRA.pop("tiny-zoo-test")
    cards._aliases.cache_clear()
    loaded = mc2export.create_model(checkpoint=path)  # re-registers the card from the file
    assert loaded.variant == "tiny-zoo-test" and loaded.embed_dim == 64
    with pytest.raises(UserError, match="built-in variant"):
        cards.register_card(dict(mc2export.get_card("s2"), id="mobileclip2-s0"))
