"""The zero-shot command line: classify / embed / zoo, and their one-line errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import mc2export
from mc2export.cli import main
from golden import write_official


def run(capsys, *argv):
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@pytest.fixture(scope="module")
def s0_file(reference, detweights, tmp_path_factory):
    return write_official(reference, detweights, "open_clip/MobileCLIP2-S0", tmp_path_factory.mktemp("s0"))


@pytest.fixture(scope="module")
def photo():
    """A real photograph that ships inside scikit-learn (an export dependency)."""
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    return Path(sklearn_datasets.__file__).parent / "images" / "china.jpg"


def test_classify_real_photo(capsys, s0_file, photo):
    code, out, err = run(capsys, "classify", str(photo), str(photo), "--labels", "temple, flower,cat",
                         "--checkpoint", str(s0_file), "--templates", "simple", "-k", "2")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].endswith("(mobileclip2-s0)") and "probability" in lines[1]
    rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert len(rows) == 4 and [r[0] for r in rows] == ["1", "2", "1", "2"]
    probs = [float(r[2]) for r in rows[:2]]
    assert probs[0] >= probs[1] > 0 and sum(probs) <= 1.0 + 1e-6
    # the printed probabilities are the model's: recompute the top one through the API
    model = mc2export.create_model(checkpoint=s0_file, fold=True)
    from mc2export.preprocess import load_image
    from mc2export.zeroshot import SIMPLE_TEMPLATES, class_embeddings

    with torch.no_grad():
        cls = class_embeddings(model, ["temple", "flower", "cat"], SIMPLE_TEMPLATES)
        img = model.encode_image(mc2export.image_transform("s0")(load_image(photo))[None], normalize=True)
        p = (model.logit_scale.exp() * img @ cls.T).softmax(-1)[0]
    assert abs(p.max().item() - probs[0]) < 1e-4


@pytest.mark.parametrize("argv,needle", [
    (["classify", "missing.jpg", "--labels", "a,b"], "cannot read image 'missing.jpg'"),
    (["classify", "{bad}", "--labels", "a,b"], "cannot read image"),
    (["classify", "{photo}", "--labels", " , "], "empty label list"),
    (["classify", "{photo}", "--labels", "a,a"], "appears twice"),
    (["classify", "{photo}", "--labels", "a", "--variant", "s9"], "unknown variant 's9'"),
    (["embed", "--out", "x.npy"], "nothing to embed"),
])
def test_cli_errors_are_one_line(capsys, tmp_path, photo, argv, needle):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    argv = [a.replace("{bad}", str(bad)).replace("{photo}", str(photo)) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0] and "Traceback" not in err


def test_embed_texts_and_images(capsys, tmp_path, s0_file, photo):
    out = tmp_path / "t.npy"
    code, _, err = run(capsys, "embed", "--text", "a cat", "--text", "a dog", "--out", str(out),
                       "--checkpoint", str(s0_file))
    assert code == 0, err
    t = np.load(out)
    assert t.shape == (2, 512) and np.allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    assert (tmp_path / "t.inputs.txt").read_text().splitlines() == ["a cat", "a dog"]
    model = mc2export.create_model(checkpoint=s0_file, fold=True)
    with torch.no_grad():
        ref = model.encode_text(mc2export.tokenize(["a cat", "a dog"]), normalize=True).numpy()
    assert np.abs(t - ref).max() < 1e-5
    out2 = tmp_path / "i.npy"
    code, _, err = run(capsys, "embed", str(photo), "--out", str(out2), "--checkpoint", str(s0_file),
                       "--no-normalize")
    assert code == 0, err
    assert np.load(out2).shape == (1, 512)
    assert not list(tmp_path.glob("*.tmp*"))


def test_zoo_table(capsys):
    code, out, err = run(capsys, "zoo")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2 + 14 and "ours M (img+txt)" in lines[0]
    s0 = next(line for line in lines if line.startswith("mobileclip2-s0 "))
    assert "11.4+63.4" in s0 and "1.5+3.3" in s0
