"""Text towers against the fidelity kit's golden text features (seed-0 deterministic weights)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mc2export.blocks import reparameterize_all
from mc2export.text import MCtTextEncoder, TextTransformer, build_text_tower
from mc2export.checkpoint import map_apple_v1_text

REL_TOL = 1e-4  # max-abs error allowed, relative to max|golden|

# (layout, model, text cfg)
CASES = [
    ("open_clip", "MobileCLIP2-S0", dict(arch="transformer", width=512, heads=8, layers=12, embed_dim=512,
                                         causal=False)),
    ("open_clip", "MobileCLIP2-B", dict(arch="transformer", width=512, heads=8, layers=12, embed_dim=512,
                                        causal=True)),
    ("open_clip", "MobileCLIP2-S3", dict(arch="transformer", width=768, heads=12, layers=12, embed_dim=768,
                                         causal=False)),
    ("apple_v1", "mobileclip_s0", dict(arch="mct", width=512, heads=8, layers=4, embed_dim=512,
                                       repmixer_kernel=11, repmixer_mlp_ratio=4.0)),
    ("apple_v1", "mobileclip_s1", dict(arch="transformer", width=512, heads=8, layers=12, embed_dim=512,
                                       causal=False)),
    ("apple_v1", "mobileclip_b", dict(arch="transformer", width=512, heads=8, layers=12, embed_dim=512,
                                      causal=True)),
]
IDS = [f"{layout}/{name}" for layout, name, _ in CASES]


def _text_state_dict(detweights, reference, layout, name):
    """Seed-0 weights of the text entries only (values depend only on key and shape, so this equals
    the text part of the full checkpoint), mapped to our canonical keys without the ``text.`` prefix."""
    shapes = detweights.load_shapes(reference / "keys" / layout / f"{name}.txt")
    src_prefix = "text." if layout == "open_clip" else "text_encoder."
    sd = detweights.deterministic_state_dict({k: s for k, s in shapes.items() if k.startswith(src_prefix)}, 0)
    if layout == "apple_v1":
        sd = map_apple_v1_text(sd)
    assert all(k.startswith("text.") for k in sd)
    return {k[len("text."):]: v for k, v in sd.items()}


def _max_rel_err(out: torch.Tensor, golden: np.ndarray) -> float:
    return float(np.abs(out.detach().numpy() - golden).max() / np.abs(golden).max())


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def case(request, reference, detweights):
    layout, name, cfg = request.param
    model = build_text_tower(cfg)
    model.load_state_dict(_text_state_dict(detweights, reference, layout, name), strict=True)
    model.eval()
    golden = np.load(reference / "golden" / layout / f"{name}.npz")
    return name, model, {k: golden[k] for k in ("tokens", "text_features", "text_features_reparam")}


@torch.no_grad()
def test_matches_golden(case):
    name, model, g = case
    out = model(torch.from_numpy(g["tokens"]))
    assert out.shape == g["text_features"].shape
    err = _max_rel_err(out, g["text_features"])
    print(f"{name}: train-time max-abs/max|f| = {err:.2e}")
    assert err <= REL_TOL


@torch.no_grad()
def test_int32_tokens(case):
    _, model, g = case
    tokens = torch.from_numpy(g["tokens"])
    a = model(tokens)
    b = model(tokens.to(torch.int32))
    assert torch.allclose(a, b, rtol=0, atol=1e-6 * float(a.abs().max()))


@torch.no_grad()
def test_folded_matches_golden_and_refold_is_noop(case):
    name, model, g = case
    folded = copy.deepcopy(model)
    reparameterize_all(folded)
    tokens = torch.from_numpy(g["tokens"])
    out = folded(tokens)
    err = _max_rel_err(out, g["text_features_reparam"])
    err_train = _max_rel_err(out, g["text_features"])
    print(f"{name}: folded max-abs/max|f| = {err:.2e} (vs train-time golden {err_train:.2e})")
    assert err <= REL_TOL
    assert err_train <= REL_TOL

    before = {k: v.clone() for k, v in folded.state_dict().items()}
    reparameterize_all(folded)
    after = folded.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(folded(tokens), out)

    if isinstance(model, MCtTextEncoder):
        # the RepMixer blocks really folded: no BN / branch left in them
        keys = list(after)
        assert not any(".identity." in k or ".conv_kxk." in k or ".bn." in k for k in keys)
        assert any(k.endswith("token_mixer.reparam_conv.weight") for k in keys)


def test_state_dict_keys_match_manifest(reference, detweights):
    shapes = detweights.load_shapes(reference / "keys" / "open_clip" / "MobileCLIP2-S3.txt")
    want = [(k[len("text."):], tuple(s)) for k, s in shapes.items() if k.startswith("text.")]
    model = TextTransformer(768, 12, 12, 768)
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert got == want  # same keys, shapes and order as open_clip; nothing else persistent
    assert not list(model.buffers())
    causal = TextTransformer(512, 8, 12, 512, causal=True)
    assert not list(causal.buffers())


def test_map_apple_v1_text(reference, detweights):
    shapes = detweights.load_shapes(reference / "keys" / "apple_v1" / "mobileclip_s0.txt")
    sd = {k: torch.zeros(s) for k, s in shapes.items()}
    mapped = map_apple_v1_text(sd)
    assert len(mapped) == sum(k.startswith("text_encoder.") for k in sd)
    assert mapped["text.positional_embedding"].shape == (77, 512)
    assert mapped["text.text_projection"].shape == (512, 512)
    assert mapped["text.transformer.resblocks.0.token_mixer.mixer.conv_kxk.0.conv.weight"].shape == (512, 1, 1, 11)
    assert mapped["text.transformer.resblocks.5.layer_scale.gamma"].shape == (512, 1, 1)
    assert "text.transformer.resblocks.2.attn.in_proj_weight" in mapped
    assert not any("logit_scale" in k or "image_encoder" in k for k in mapped)
    expected = {"text." + k for k in MCtTextEncoder().state_dict()}
    assert set(mapped) == expected
    assert set(sd) == set(shapes)  # input untouched


def test_build_text_tower_rejects_unknown_keys():
    with pytest.raises(ValueError):
        build_text_tower({"arch": "transformer", "widht": 512})
    with pytest.raises(ValueError):
        build_text_tower({"arch": "lstm"})


def test_shorter_context_and_export():
    model = TextTransformer(64, 4, 2, 32, context_length=77, vocab_size=1000, causal=True).eval()
    tokens = torch.zeros(2, 77, dtype=torch.int32)
    tokens[:, 0] = 998
    tokens[0, 5] = 999
    tokens[1, 9] = 999
    ep = torch.export.export(model, (tokens,))
    with torch.no_grad():
        assert torch.allclose(ep.module()(tokens), model(tokens), atol=1e-6)
        # tokens shorter than the context use the first L positional embeddings
        assert model(tokens[:, :20]).shape == (2, 32)


def test_mct_exports_before_and_after_folding():
    torch.manual_seed(0)
    model = MCtTextEncoder(width=64, heads=4, embed_dim=32, layers=1, vocab_size=1000).eval()
    for block in (model.transformer.resblocks[0], model.transformer.resblocks[-1]):
        for bn in block.modules():  # non-trivial BN statistics so folding is exercised
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.running_mean.normal_(0, 0.1)
                bn.running_var.uniform_(0.5, 1.5)
    tokens = torch.randint(1, 998, (2, 77), dtype=torch.int32)
    tokens[:, 0] = 998
    tokens[:, 30] = 999
    tokens[:, 31:] = 0
    with torch.no_grad():
        ref = model(tokens)
        folded = copy.deepcopy(model)
        reparameterize_all(folded)
        assert torch.allclose(folded(tokens), ref, atol=1e-5 * float(ref.abs().max()))
        for m in (model, folded):
            ep = torch.export.export(m, (tokens,))
            assert torch.allclose(ep.module()(tokens), m(tokens), atol=1e-6)


def test_build_text_tower_from_cards():
    from mc2export import cards

    for vid in cards.list_variants():
        card = cards.get_card(vid)
        with torch.device("meta"):  # structure only: skip allocating and initializing the weights
            model = build_text_tower(cards.text_config(card))
        assert isinstance(model, MCtTextEncoder if card["text"]["arch"] == "mct" else TextTransformer)
        assert model.text_projection.shape == (card["text"]["width"], card["embed_dim"])
