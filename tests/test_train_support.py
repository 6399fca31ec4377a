"""Shared helpers of the training tests (tiny cards, tiny datasets, subprocess runs) and their own checks."""
from __future__ import annotations

import copy
import io
import json
import os
import random
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220)}


def tiny_card(card_id: str, *, arch: str = "vit", width: int = 32, embed_dim: int = 32, res: int = 32) -> dict:
    """A card for a very small model (ViT: patch 8, 1 block; MCi: 1 block per stage), 16-token text."""
    from mc2export import cards

    c = copy.deepcopy(cards.get_card("mobileclip2-s0"))
    c.update(id=card_id, name=card_id, aliases=[], resolution=res, embed_dim=embed_dim)
    if arch == "vit":
        c["image"] = {"arch": "vit", "name": "vit-test", "width": width, "layers": 1, "heads": 1, "patch_size": 8,
                      "stem": "patch", "stem_padding": 0, "ln_eps": 1e-5, "pre_norm": True, "no_embed_class": False,
                      "patch_bias": True, "image_size": res}
    else:
        c["image"].update(layers=[1, 1, 1, 1], embed_dims=[8, 16, 32, 64], image_size=res)
    c["text"].update(width=width, heads=1, layers=1, context_length=16)
    c["preprocess"]["resolution"] = res
    c["weights"] = {"default": "open_clip", "sources": []}
    return c


def write_card(path: Path, card: dict) -> Path:
    path.write_text(json.dumps(card, indent=1), encoding="utf-8")
    return path


def shape_image(color: str, rng: random.Random, size: int = 40) -> Image.Image:
    """A coloured disc on a grey background (learnable, tiny)."""
    from PIL import ImageDraw

    img = Image.new("RGB", (size + rng.randint(0, 8), size), (rng.randint(120, 200),) * 3)
    r = rng.uniform(0.2, 0.35) * size
    cx, cy = rng.uniform(r, img.width - r), rng.uniform(r, size - r)
    ImageDraw.Draw(img).ellipse([cx - r, cy - r, cx + r, cy + r], fill=COLORS[color])
    return img


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_plain_tars(root: Path, n: int = 48, shard_size: int = 16, seed: int = 0) -> list:
    """webdataset tars of (jpg, txt) samples: 'a red disc' etc."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(0, n, shard_size):
        p = root / f"src-{s // shard_size:03d}.tar"
        with tarfile.open(p, "w") as tf:
            for i in range(s, min(n, s + shard_size)):
                color = list(COLORS)[i % 3]
                for ext, data in (("jpg", jpeg(shape_image(color, rng))), ("txt", f"a {color} disc".encode())):
                    info = tarfile.TarInfo(f"{i:05d}.{ext}")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
        paths.append(p)
    return paths


def write_image_folder(root: Path, per_class: int = 4, seed: int = 1) -> Path:
    rng = random.Random(seed)
    for color in COLORS:
        d = root / f"{color}_disc"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape_image(color, rng).save(d / f"{i}.png")
    return root


def make_teacher(tmp: Path, card_id: str = "test-teacher", seed: int = 0, **kw) -> Path:
    """A random tiny teacher saved with save_checkpoint (its card travels in the file)."""
    import torch

    from mc2export import cards, save_checkpoint
    from mc2export.model import CLIPModel

    cards.register_card(tiny_card(card_id, **kw))
    torch.manual_seed(seed)
    model = CLIPModel(card_id).eval()
    return save_checkpoint(model, tmp / f"{card_id}.safetensors")


def captions_file(path: Path, keys_to_gt: dict) -> Path:
    path.write_text(json.dumps({k: [f"a picture of {v}", f"{v}, drawn"] for k, v in keys_to_gt.items()}),
                    encoding="utf-8")
    return path


def cli(*args, check: bool = True, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m mc2export.cli ARGS`` in a subprocess (1 thread: tests share a small machine)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **(env or {})}
    r = subprocess.run([sys.executable, "-m", "mc2export.cli", *map(str, args)], capture_output=True, text=True,
                       env=full_env, timeout=timeout, cwd=str(REPO))
    if check and r.returncode != 0:
        raise AssertionError(f"mc2export {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r


def read_jsonl(path: Path) -> list:
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]


# ------------------------------------------------------------------------------------- own small checks
def test_brace_and_dir_expansion(tmp_path):
    from mc2export.errors import UserError
    from mc2export.train.data import _brace_expand, expand_shards

    assert _brace_expand("a-{08..10}.tar") == ["a-08.tar", "a-09.tar", "a-10.tar"]
    assert _brace_expand("{x,y}-{0..1}") == ["x-0", "x-1", "y-0", "y-1"]
    paths = write_plain_tars(tmp_path / "t", n=4, shard_size=2)
    assert expand_shards(tmp_path / "t") == [str(p) for p in paths]
    assert expand_shards(str(tmp_path / "t" / "src-{000..001}.tar")) == [str(p) for p in paths]
    with pytest.raises(UserError, match="src-002.tar. not found"):
        expand_shards(str(tmp_path / "t" / "src-{000..002}.tar"))


def test_lr_schedule_and_svg():
    from mc2export.train.trainer import TrainConfig, lr_at, svg_plot

    cfg = TrainConfig(data=["x"], out="y", steps=110, warmup=10, lr=1e-3)
    assert lr_at(1, cfg) == pytest.approx(1e-4) and lr_at(10, cfg) == pytest.approx(1e-3)
    assert lr_at(60, cfg) == pytest.approx(5e-4) and lr_at(110, cfg) == pytest.approx(0.0, abs=1e-12)
    svg = svg_plot({"loss": [(1, 3.0), (2, 2.0), (3, float("nan")), (4, 1.0)]}, title="t")
    assert svg.startswith("<svg") and "polyline" in svg


def test_param_groups_exclude_gains_and_logit_scale():
    from mc2export import cards
    from mc2export.model import CLIPModel
    from mc2export.train.trainer import param_groups

    cards.register_card(tiny_card("test-groups"))
    m = CLIPModel("test-groups")
    decay, no_decay = param_groups(m, 0.2)
    assert decay["weight_decay"] == 0.2 and no_decay["weight_decay"] == 0.0
    assert any(p is m.logit_scale for p in no_decay["params"])
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(m.parameters()))
