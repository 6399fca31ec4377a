"""Training data nobody should trust (issue 23): hostile tar member names are refused (skipped and counted,
never copied into reinforce's shards); a stream where every sample is skipped stops after a bounded number
of tries (train and reinforce); a reinforce --out folder holding files we did not write is refused, and a
foreign shard-000000.tar is never "already done"."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from mc2export.errors import UserError
from mc2export.train import data as D
from mc2export.train.augment import AugmentConfig
from mc2export.train.reinforce import ReinforceConfig, reinforce
from test_train_reinforce import color_teacher  # noqa: F401  (the callable teacher, by module:function)
from test_train_support import jpeg, shape_image


def _tar(path: Path, members) -> Path:
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def _good(key: str):
    import random

    return [(f"{key}.jpg", jpeg(shape_image("red", random.Random(0)))), (f"{key}.txt", b"a red disc")]


@pytest.mark.parametrize("name", ["/abs/x", "../../x", "a/../../x", "a//b", "./a", "c:/x", "a\\..\\x"])
def test_hostile_member_names_are_refused_and_counted(tmp_path, name):
    assert not D.safe_member(f"{name}.jpg")
    p = _tar(tmp_path / "s.tar", _good("00001") + [(f"{name}.jpg", b"x"), (f"{name}.txt", b"y")] + _good("00002"))
    stats = D.Stats()
    keys = [s["__key__"] for s in D.iter_samples(str(p), stats)]
    assert keys == ["00001", "00002"] and stats.skipped == 2 and "unsafe member name" in next(iter(stats.reasons))
    with pytest.raises(ValueError, match="not a safe member name"):
        D.ShardWriter(tmp_path / "o.tar").write(name, {"txt": b"x"})


def test_reinforce_never_copies_hostile_names(tmp_path):
    src = _tar(tmp_path / "src.tar", _good("00001") + [("../../evil.jpg", b"x"), ("/etc/evil.txt", b"y")]
               + _good("00002"))
    cfg = ReinforceConfig(src=[str(src)], teachers=["test_train_reinforce:color_teacher"], out=str(tmp_path / "dr"),
                          num_aug=1, batch_size=4)
    summary = reinforce(cfg)
    assert summary["samples_written"] == 2 and summary["skipped"] == 2
    with tarfile.open(tmp_path / "dr" / "shard-000000.tar") as tf:
        assert all(D.safe_member(n) and "evil" not in n for n in tf.getnames())


def _spec(**kw):
    return D.StreamSpec(**{**dict(batch_size=2, size=16, mean=(0, 0, 0), std=(1, 1, 1), interpolation="bilinear",
                                  context_length=16, reinforced=False, aug=AugmentConfig(size=24).to_dict(),
                                  shuffle_buffer=4), **kw})


def test_train_stream_stops_when_every_sample_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "SKIP_LIMIT", 50)
    p = _tar(tmp_path / "bad.tar", [(f"{k:05d}.jpg", b"not an image") for k in range(3)]
             + [(f"{k:05d}.txt", b"x") for k in range(3)])
    out = next(iter(D.TrainStream(D.TarReader([str(p)]), _spec(), 0, 0)))  # returns (it used to spin forever)
    assert "error" in out and "50 samples in a row were skipped" in out["error"]


def test_reinforce_stops_when_every_sample_is_skipped(tmp_path, monkeypatch):
    import mc2export.train.reinforce as R

    monkeypatch.setattr(R, "SKIP_LIMIT", 3)
    shards = [_tar(tmp_path / f"s{i}.tar", [(f"{i}{k:04d}.jpg", b"broken") for k in range(2)]
                   + [(f"{i}{k:04d}.txt", b"x") for k in range(2)]) for i in range(5)]
    cfg = ReinforceConfig(src=[str(s) for s in shards], teachers=["test_train_reinforce:color_teacher"],
                          out=str(tmp_path / "dr"), num_aug=1)
    with pytest.raises(UserError, match="4 samples were skipped and none was usable"):
        reinforce(cfg)  # stopped after 2 of 5 shards
    assert not (tmp_path / "dr").exists()  # the folder it created is taken away again


@pytest.mark.parametrize("name", ["shard-000000.tar", "shard-000000.stats.json", "notes.txt"])
def test_reinforce_refuses_a_folder_it_did_not_write(tmp_path, name):
    src = _tar(tmp_path / "src.tar", _good("00001"))
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_bytes(b"the user's own file")
    cfg = ReinforceConfig(src=[str(src)], teachers=["test_train_reinforce:color_teacher"], out=str(out), num_aug=1)
    with pytest.raises(UserError, match="holds files reinforce did not write"):
        reinforce(cfg)
    assert sorted(p.name for p in out.iterdir()) == [name] and (out / name).read_bytes() == b"the user's own file"


def test_a_shard_is_done_only_with_our_record(tmp_path):
    src = _tar(tmp_path / "src.tar", _good("00001"))
    cfg = ReinforceConfig(src=[str(src)], teachers=["test_train_reinforce:color_teacher"], out=str(tmp_path / "dr"),
                          num_aug=1)
    reinforce(cfg)
    shard = tmp_path / "dr" / "shard-000000.tar"
    ours = shard.read_bytes()
    assert json.loads((tmp_path / "dr" / "shard-000000.stats.json").read_text())["tar"][0] == len(ours)
    assert reinforce(cfg)["shards_written"] == 0  # ours, recorded: done
    _tar(shard, [("00009.txt", b"someone else's tar")])
    assert reinforce(cfg)["shards_written"] == 1 and shard.read_bytes() == ours  # not ours: made again


def test_deep_or_non_finite_json_in_samples_and_captions_is_one_line(tmp_path):
    """JSON members of a sample (json, paug.json, syn.json) and the captions file are parsed strictly: deep
    nesting is a skipped sample or one line, never a RecursionError."""
    from mc2export.strictjson import BadJSON, loads
    from mc2export.train.reinforce import read_captions

    deep = b"[" * 100000 + b"]" * 100000
    for bad in (deep, b"NaN", b"1e999", b'{"a": Infinity}'):
        with pytest.raises(BadJSON):
            loads(bad)
    spec = _spec(reinforced=True)
    s = {"__key__": "k", "jpg": _good("k")[0][1], "txt": b"x", "paug.json": deep}
    with pytest.raises(D.SampleError, match="paug.json"):
        D.make_example(s, spec, __import__("random").Random(0))
    (tmp_path / "caps.json").write_bytes(deep)
    with pytest.raises(UserError, match="cannot read captions file"):
        read_captions(str(tmp_path / "caps.json"))
    (tmp_path / "caps.json").write_bytes(b"\xff\xfe")
    with pytest.raises(UserError, match="cannot read captions file"):
        read_captions(str(tmp_path / "caps.json"))


def test_fuzz_finding_truncated_gzip_header_is_a_corrupt_shard(tmp_path):
    """Campaign finding (benchmarks/results/fuzz.md): a 3-byte gzip header made tarfile raise TypeError."""
    p = tmp_path / "s.tar"
    p.write_bytes(b"\x1f\x8b\x08")
    stats = D.Stats()
    assert list(D.iter_samples(str(p), stats)) == [] and stats.corrupt_shards == 1
