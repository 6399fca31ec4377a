"""pretrained=True through a local Hugging Face cache that the test builds, offline."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from golden import golden, write_official

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def build_cache(root: Path, repo_id: str, filename: str, src: Path, refs=("main",)) -> Path:
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    shutil.copy(src, snap / filename)
    (repo / "refs").mkdir()
    for ref in refs:
        (repo / "refs" / ref).write_text(COMMIT)
    return root


def _run(code: str, cache: Path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(cache.parent / "hfhome"))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)


def test_pretrained_from_local_cache_offline(reference, detweights, tmp_path):
    src = write_official(reference, detweights, "open_clip/MobileCLIP2-S0", tmp_path)
    cache = build_cache(tmp_path / "hub", "timm/MobileCLIP2-S0-OpenCLIP", "open_clip_model.safetensors", src,
                        refs=("main", "v1"))
    src.unlink()
    g = golden(reference, "open_clip/MobileCLIP2-S0")
    np.save(tmp_path / "image.npy", g["image"])
    code = f"""
import numpy as np, torch, mc2export
x = torch.from_numpy(np.load({str(tmp_path / 'image.npy')!r}))
for rev in (None, "v1", {COMMIT!r}):
    m = mc2export.create_model("s0", pretrained=True, revision=rev)
    with torch.no_grad():
        np.save({str(tmp_path / 'out.npy')!r}, m.encode_image(x).numpy())
"""
    r = _run(code, cache)
    assert r.returncode == 0, r.stderr
    out = np.load(tmp_path / "out.npy")
    assert np.abs(out - g["image_features"]).max() <= 1e-4 * g["image_features"].std()


def test_offline_error_names_the_file_and_the_fix(tmp_path):
    from PIL import Image

    img = tmp_path / "x.png"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(img)
    (tmp_path / "empty").mkdir()
    r = subprocess.run([sys.executable, "-m", "mc2export.cli", "classify", str(img), "--labels", "a",
                        "--pretrained", "--variant", "s2"],
                       env=dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "empty")),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    err = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "Traceback" not in r.stderr
    assert "timm/MobileCLIP2-S2-OpenCLIP/open_clip_model.safetensors" in err[0] and "--checkpoint PATH" in err[0]
