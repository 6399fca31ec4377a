"""mc2export reinforce: stored augmentations pair with the teacher's embedding of exactly that view;
resumable, deterministic, rank-sharded; callable teachers and captioners; images joined by key."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mc2export.errors import UserError
from mc2export.train.augment import replay, to_tensor
from mc2export.train.data import decode_embeddings, iter_samples
from mc2export.train.reinforce import ReinforceConfig, reinforce
from test_train_support import make_teacher, tiny_card, write_card, write_image_folder, write_plain_tars


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reinforce")
    src = write_image_folder(tmp / "src", per_class=4)
    teacher = make_teacher(tmp, "test-teacher", res=24)
    caps = {f"{c}_disc/{i}.png": [f"{c} thing {i}", f"a {c} circle"] for c in ("red", "green", "blue")
            for i in range(4)}
    (tmp / "caps.json").write_text(json.dumps(caps))
    cfg = ReinforceConfig(src=[str(src)], teachers=[str(teacher)], out=str(tmp / "dr"), num_aug=3,
                          captions=str(tmp / "caps.json"), shard_size=5, batch_size=4)
    summary = reinforce(cfg)
    return {"tmp": tmp, "cfg": cfg, "teacher": teacher, "summary": summary, "caps": caps}


def test_stored_views_pair_with_the_teachers_embedding(folder_run):
    from mc2export import create_model, tokenize

    run = folder_run
    out = run["tmp"] / "dr"
    manifest = json.loads((out / "dataset.json").read_text())
    assert manifest["num_aug"] == 3 and manifest["teachers"][0]["dim"] == 32 and len(manifest["shards"]) == 3
    assert run["summary"]["samples_written"] == 12 and run["summary"]["skipped"] == 0
    teacher = create_model(checkpoint=run["teacher"])
    card = teacher.card
    samples = [s for p in sorted(out.glob("shard-*.tar")) for s in iter_samples(str(p))]
    assert len(samples) == 12
    from PIL import Image
    import io

    for s in samples[::4]:
        meta = json.loads(s["json"])
        assert set(s) >= {"url.txt", "syn.json", "paug.json", "npz", "json", "png", "txt"}
        assert s["url.txt"].decode().startswith("file://") and len(meta["sha256"]) == 64
        embs = decode_embeddings(s)
        params = json.loads(s["paug.json"])["param_aug"]
        assert embs["image_emb"].shape == (3, 32) and embs["text_emb"].shape == (3, 32)
        img = Image.open(io.BytesIO(s["png"])).convert("RGB")
        views = torch.stack([to_tensor(replay(img, p, 24, manifest["augment"]["size"], "bicubic"),
                                       card["preprocess"]["mean"], card["preprocess"]["std"]) for p in params])
        with torch.no_grad():
            want = teacher.encode_image(views, normalize=True).numpy()
            syn = json.loads(s["syn.json"])["syn_text"]
            assert syn == run["caps"][meta["path"]]
            texts = [s["txt"].decode(), *syn]
            want_t = teacher.encode_text(tokenize(texts, context_length=16), normalize=True).numpy()
        np.testing.assert_allclose(embs["image_emb"], want, atol=2e-5)
        np.testing.assert_allclose(embs["text_emb"], want_t, atol=2e-5)


def test_resume_rewrites_only_missing_shards_identically(folder_run):
    out = folder_run["tmp"] / "dr"
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("shard-*.tar")}
    (out / "shard-000001.tar").unlink()
    (out / "shard-000001.tar.tmp").write_bytes(b"half-written by a killed run")
    summary = reinforce(folder_run["cfg"])
    assert summary["shards_written"] == 1
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("shard-*.tar")}
    assert after["shard-000001.tar"][0] == before["shard-000001.tar"][0]  # same bytes: deterministic
    assert after["shard-000000.tar"][1] == before["shard-000000.tar"][1]  # untouched
    assert not (out / "shard-000001.tar.tmp").exists()
    changed = ReinforceConfig(**{**folder_run["cfg"].__dict__, "num_aug": 4})
    with pytest.raises(UserError, match="other settings \\(num_aug differ\\)"):
        reinforce(changed)


def test_rank_takes_every_world_size_th_shard(folder_run, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = ReinforceConfig(**{**folder_run["cfg"].__dict__, "out": str(folder_run["tmp"] / "dr-rank1")})
    reinforce(cfg)
    made = sorted(p.name for p in (folder_run["tmp"] / "dr-rank1").glob("shard-*.tar"))
    assert made == ["shard-000001.tar"]
    ref = (folder_run["tmp"] / "dr" / "shard-000001.tar").read_bytes()
    assert (folder_run["tmp"] / "dr-rank1" / "shard-000001.tar").read_bytes() == ref


# ---- callables named module:function (this test module is importable: pytest puts tests/ on sys.path)
class _ColorTeacher:
    """A hand-made teacher: mean colour of the view / a bag of colour words."""

    embed_dim = 3
    logit_scale = 10.0
    preprocess = {"resolution": 16, "mean": [0, 0, 0], "std": [1, 1, 1]}

    def encode_image(self, pixels):
        return pixels.mean((2, 3)) + 1e-3

    def encode_text(self, texts):
        return torch.tensor([[t.count("red") + 1e-3, t.count("green") + 1e-3, t.count("blue") + 1e-3] for t in texts])


def color_teacher():
    return _ColorTeacher()


def echo_captioner(images, captions):
    return [[f"{c} (synthetic)", f"{c}, seen {im.width}px wide"] for im, c in zip(images, captions)]


def test_tars_join_callables_bf16_corrupt_source_and_training(tmp_path, capsys):
    from mc2export.cli import main

    tars = write_plain_tars(tmp_path / "src", n=24, shard_size=8)
    tars[2].write_bytes(tars[2].read_bytes()[:5000])  # a damaged source shard
    out = tmp_path / "dr"
    with pytest.raises(SystemExit) as e:
        main(["reinforce", str(tmp_path / "src"), "--teachers", f"test_train_reinforce:color_teacher,"
              f"{make_teacher(tmp_path, 'test-teacher-2', res=16)}", "--out", str(out), "--num-aug", "2",
              "--captioner", "test_train_reinforce:echo_captioner", "--format", "pth.gz", "--images", "join",
              "--batch-size", "8"])
    assert e.value.code in (0, None)
    err = capsys.readouterr().err
    assert "corrupt shard" in err and "src-002.tar" in err and "SOURCE SHARD CORRUPT" in err
    manifest = json.loads((out / "dataset.json").read_text())
    assert [t["dim"] for t in manifest["teachers"]] == [3, 32] and manifest["images"] == "join"
    assert [s["source"] for s in manifest["shards"]] == [str(t) for t in tars]
    s = next(iter_samples(str(out / "shard-000000.tar")))
    assert "jpg" not in s and "txt" not in s and "pth.gz" in s       # DataCompDR-12M style: no images
    embs = decode_embeddings(s)
    assert embs["image_emb"].shape == (2, 35) and embs["text_emb"].shape == (3, 35)
    assert json.loads(s["syn.json"])["syn_text"][0].endswith("(synthetic)")
    stats = json.loads((out / "shard-000002.stats.json").read_text())
    assert stats["corrupt_shards"] == 1 and stats["samples"] < 8
    # training joins the images back from the source tars by key
    from mc2export.train.trainer import TrainConfig, read_log, train

    card = write_card(tmp_path / "s.json", tiny_card("test-student-join", res=16))
    train(TrainConfig(data=[str(out)], out=str(tmp_path / "run"), student_card=str(card), steps=2, batch_size=4,
                      workers=0, log_every=1, save_every=2, shuffle_buffer=4))
    rec = read_log(tmp_path / "run" / "log.jsonl")[-1]
    assert rec["step"] == 2 and np.isfinite(rec["loss"]) and "distill" in rec
