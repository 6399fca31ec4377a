"""DataCompDR-format samples written and read back; webdataset grouping; damaged shards counted."""
from __future__ import annotations

import io
import json
import random
import tarfile

import numpy as np
import pytest
import torch

from mc2export.train.augment import AugmentConfig, draw
from mc2export.train.data import (EmbeddingMismatch, SampleError, ShardWriter, Stats, StreamSpec, TarReader,
                                  TrainStream, decode_embeddings, encode_embeddings, iter_samples, join_by_key,
                                  make_example, split_key)
from test_train_support import jpeg, shape_image


def _dr_sample(key: str, fmt: str, n_aug=3, n_syn=2, dim=10, seed=0):
    rng = np.random.default_rng(seed)
    img = shape_image("red", random.Random(seed))
    image_emb = rng.normal(size=(n_aug, dim)).astype(np.float32)
    text_emb = rng.normal(size=(1 + n_syn, dim)).astype(np.float32)
    params = [draw(AugmentConfig(size=24), random.Random(k), *img.size) for k in range(n_aug)]
    ext, emb = encode_embeddings(image_emb, text_emb, fmt)
    files = {"url.txt": b"https://example.com/x.jpg",
             "syn.json": json.dumps({"syn_text": [f"syn {k}" for k in range(n_syn)]}).encode(),
             "paug.json": json.dumps({"param_aug": params}).encode(), ext: emb,
             "json": json.dumps({"uid": key, "sha256": "0" * 64}).encode(), "jpg": jpeg(img), "txt": b"a red disc"}
    return files, image_emb, text_emb


@pytest.mark.parametrize("fmt,tol", [("npz", 0.0), ("pth.gz", 1e-2)])
def test_datacompdr_sample_round_trip(tmp_path, fmt, tol):
    path = tmp_path / "shard-000000.tar"
    w = ShardWriter(path)
    originals = {}
    for k in range(3):
        files, ie, te = _dr_sample(f"{k:08d}", fmt, seed=k)
        w.write(f"{k:08d}", files)
        originals[f"{k:08d}"] = (files, ie, te)
    assert not path.exists()  # written under a temporary name until complete
    w.close()
    assert path.exists() and not (tmp_path / "shard-000000.tar.tmp").exists()
    names = tarfile.open(path).getnames()
    assert names[:7] == ["00000000.url.txt", "00000000.syn.json", "00000000.paug.json", f"00000000.{fmt}",
                         "00000000.json", "00000000.jpg", "00000000.txt"]
    stats = Stats()
    samples = list(iter_samples(str(path), stats))
    assert [s["__key__"] for s in samples] == list(originals) and stats.corrupt_shards == 0
    for s in samples:
        files, ie, te = originals[s["__key__"]]
        embs = decode_embeddings(s)
        assert embs["image_emb"].dtype == np.float32 and embs["image_emb"].shape == ie.shape
        np.testing.assert_allclose(embs["image_emb"], ie, rtol=tol, atol=tol)
        np.testing.assert_allclose(embs["text_emb"], te, rtol=tol, atol=tol)
        assert json.loads(s["paug.json"]) == json.loads(files["paug.json"])
        assert json.loads(s["syn.json"])["syn_text"] == ["syn 0", "syn 1"]
    if fmt == "pth.gz":  # what webdataset's decoders see: gzip, then a torch.save'd dict of bf16 tensors
        import gzip

        obj = torch.load(io.BytesIO(gzip.decompress(samples[0]["pth.gz"])), weights_only=True)
        assert obj["image_emb"].dtype == torch.bfloat16


def test_reader_pairs_the_chosen_augmentation_with_its_embedding(tmp_path):
    files, ie, te = _dr_sample("00000001", "npz", n_aug=4, n_syn=3, dim=6)
    spec = StreamSpec(batch_size=1, size=16, mean=(0, 0, 0), std=(1, 1, 1), interpolation="bilinear",
                      context_length=16, reinforced=True, aug=AugmentConfig(size=24).to_dict(), teacher_dims=(4, 2))
    s = {"__key__": "00000001", "__url__": "mem", **files}
    syn = json.loads(files["syn.json"])["syn_text"]
    for seed in range(12):
        rng = random.Random(seed)
        ex = make_example(s, spec, rng)
        k = [i for i in range(4) if np.array_equal(ie[i], ex["img_emb"])]
        assert len(k) == 1 and ex["image"].shape == (3, 16, 16)
        c = syn.index(ex["syn"])
        assert np.array_equal(ex["syn_emb"], te[1 + c]) and np.array_equal(ex["gt_emb"], te[0])
    with pytest.raises(EmbeddingMismatch, match="6-d teacher embeddings but the teachers are 4\\+4 = 8-d"):
        make_example(s, StreamSpec(**{**spec.__dict__, "teacher_dims": (4, 4)}), random.Random(0))
    broken = dict(s, **{"paug.json": json.dumps({"param_aug": json.loads(files["paug.json"])["param_aug"][:2]})
                        .encode()})
    with pytest.raises(SampleError, match="2 augmentations but image_emb has 4 rows"):
        make_example(broken, spec, random.Random(0))


def test_webdataset_key_rules():
    assert split_key("dir/00001.seg.jpg") == ("dir/00001", "seg.jpg")
    assert split_key("00001.pth.gz") == ("00001", "pth.gz")
    with pytest.raises(ValueError, match="dot"):
        ShardWriter.write(None, "a.b", {})  # type: ignore[arg-type]


def _good_tar(path, n=4):
    w = ShardWriter(path)
    for k in range(n):
        w.write(f"{k:04d}", {"txt": f"caption {k}".encode() * 40, "jpg": b"x" * 700})
    w.close()
    return path.read_bytes()


def test_corrupt_shards_are_counted_never_silent(tmp_path, capsys):
    data = _good_tar(tmp_path / "good.tar")
    (tmp_path / "trunc.tar").write_bytes(data[:2500])                     # cut inside a member
    garbled = bytearray(data)
    garbled[2560:2860] = bytes(range(256)) + bytes(44)  # the header of the 2nd sample: tarfile stops silently
    (tmp_path / "garbled.tar").write_bytes(bytes(garbled))
    (tmp_path / "empty.tar").write_bytes(b"not a tar at all" * 100)
    for name, keep in (("good.tar", 4), ("trunc.tar", None), ("garbled.tar", 1), ("empty.tar", 0)):
        stats = Stats()
        got = list(iter_samples(str(tmp_path / name), stats))
        if name == "good.tar":
            assert len(got) == keep and stats.corrupt_shards == 0
        else:
            assert stats.corrupt_shards == 1, name
            assert keep is None or len(got) == keep
    err = capsys.readouterr().err
    assert err.count("corrupt shard") == 3 and "trunc.tar" in err and "garbled.tar" in err


def test_join_by_key_fills_images_and_counts_missing(tmp_path):
    dr = [{"__key__": k, "paug.json": b"{}"} for k in ("a", "b", "c", "d")]
    src = [{"__key__": k, "jpg": k.encode(), "txt": b"t"} for k in ("a", "c", "d")]  # 'b' failed to download
    stats = Stats()
    out = list(join_by_key(iter(dr), iter(src), stats))
    assert [s["__key__"] for s in out] == ["a", "c", "d"] and out[1]["jpg"] == b"c"
    assert stats.skipped == 1 and "not in the source shard" in next(iter(stats.reasons))


def test_stream_is_deterministic_per_segment_and_reports_errors(tmp_path):
    path = tmp_path / "s.tar"
    w = ShardWriter(path)
    for k in range(6):
        files, _, _ = _dr_sample(f"{k:08d}", "npz", dim=6, seed=k)
        w.write(f"{k:08d}", files)
    w.close()
    spec = StreamSpec(batch_size=2, size=16, mean=(0, 0, 0), std=(1, 1, 1), interpolation="bilinear",
                      context_length=16, reinforced=True, aug=AugmentConfig(size=24).to_dict(), teacher_dims=(6,),
                      shuffle_buffer=4)
    reader = TarReader([str(path)])
    a = [next(iter(TrainStream(reader, spec, 0, 0))) for _ in range(2)]
    b = next(iter(TrainStream(reader, spec, 1, 0)))
    assert torch.equal(a[0]["images"], a[1]["images"]) and torch.equal(a[0]["img_emb"], a[1]["img_emb"])
    assert not torch.equal(a[0]["img_emb"], b["img_emb"])
    assert set(a[0]) >= {"images", "gt", "syn", "img_emb", "gt_emb", "syn_emb", "stats"}
    bad = next(iter(TrainStream(reader, StreamSpec(**{**spec.__dict__, "teacher_dims": (8,)}), 0, 0)))
    assert "error" in bad and "6-d teacher embeddings" in bad["error"]
