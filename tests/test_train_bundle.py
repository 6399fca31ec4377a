"""eval-zeroshot on an exported bundle: the bundle's runtime gives the accuracy the PyTorch model gives."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mc2export.train.evaluate import BundleModel
from test_train_support import make_teacher, write_image_folder


def test_fixed_batch_bundles_are_fed_in_padded_chunks():
    m = BundleModel.__new__(BundleModel)
    m.batch = 4
    calls = []

    def run(x):
        calls.append(x.shape[0])
        return x.reshape(len(x), -1)[:, :3].astype(np.float32) + 1

    m._run = {"image": run, "text": run}
    out = m.encode_text(torch.arange(18).reshape(6, 3), normalize=False)
    assert calls == [4, 4] and out.shape == (6, 3) and out[5, 0].item() == 16.0
    assert torch.allclose(m.encode_image(torch.ones(2, 3), normalize=True).norm(dim=-1), torch.ones(2))


@pytest.mark.slow
def test_eval_zeroshot_of_an_onnx_bundle_matches_pytorch(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from mc2export import create_model
    from mc2export.cli import main
    from mc2export.export import export_bundle

    ckpt = make_teacher(tmp_path, "test-bundle-model", res=32)
    model = create_model(checkpoint=ckpt)
    export_bundle("onnx", "test-bundle-model", out=tmp_path / "bundle", checkpoint=ckpt)
    folder = write_image_folder(tmp_path / "eval")
    results = {}
    for flag, value in (("--checkpoint", ckpt), ("--bundle", tmp_path / "bundle")):
        with pytest.raises(SystemExit) as e:
            main(["eval-zeroshot", str(folder), flag, str(value), "--templates", "simple",
                  "--json", str(tmp_path / f"{flag[2:]}.json")])
        assert e.value.code in (0, None), capsys.readouterr().err
        results[flag] = json.loads((tmp_path / f"{flag[2:]}.json").read_text())
    assert results["--bundle"]["top1"] == results["--checkpoint"]["top1"]
    b = BundleModel(tmp_path / "bundle")
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        ref = model.encode_image(x, normalize=True)
    assert torch.nn.functional.cosine_similarity(b.encode_image(x, normalize=True), ref).min() > 0.9999
