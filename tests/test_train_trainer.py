"""The trainer: kill -9 and --resume latest continue the same loss curve; NaN, corrupt shards and
mismatched embeddings are reported; the result loads with create_model in a fresh process."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mc2export.errors import UserError
from mc2export.train.augment import AugmentConfig, draw
from mc2export.train.data import MANIFEST, FORMAT, ShardWriter, encode_embeddings
from mc2export.train.trainer import TrainConfig, read_log, train
from test_train_support import COLORS, REPO, jpeg, shape_image, tiny_card, write_card, write_image_folder

DIMS = (12, 8)
STEPS = 24


def write_dr_dataset(root: Path, n: int = 24, shard_size: int = 8, dims=DIMS, nan: bool = False, seed: int = 0):
    """A reinforced dataset written directly (embeddings that follow the colour, so it is learnable)."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    protos = {c: nrng.normal(size=sum(dims)) for c in COLORS}
    aug = AugmentConfig(size=32)
    root.mkdir(parents=True, exist_ok=True)
    shards = []
    for s in range(0, n, shard_size):
        name = f"shard-{s // shard_size:06d}.tar"
        w = ShardWriter(root / name)
        for i in range(s, min(n, s + shard_size)):
            color = list(COLORS)[i % 3]
            img = shape_image(color, rng)
            params = [draw(aug, rng, *img.size) for _ in range(3)]
            ie = protos[color] + 0.3 * nrng.normal(size=(3, sum(dims)))
            te = protos[color] + 0.3 * nrng.normal(size=(3, sum(dims)))
            if nan:
                ie[:] = np.nan
            ext, emb = encode_embeddings(ie, te, "npz")
            w.write(f"{i:06d}", {"syn.json": json.dumps({"syn_text": [f"{color} round thing", f"the {color} disc"]})
                                 .encode(), "paug.json": json.dumps({"param_aug": params}).encode(), ext: emb,
                                 "json": json.dumps({"uid": str(i)}).encode(), "jpg": jpeg(img),
                                 "txt": f"a {color} disc".encode()})
        w.close()
        shards.append({"name": name, "source": "synthetic"})
    manifest = {"format": FORMAT, "teachers": [{"name": f"t{k}", "dim": d, "logit_scale": 30.0 + 10 * k}
                                               for k, d in enumerate(dims)],
                "embedding_dim": sum(dims), "num_aug": 3, "augment": aug.to_dict(), "emb_format": "npz",
                "images": "embed", "num_syn": 2, "shards": shards}
    (root / MANIFEST).write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trainer")
    card = write_card(tmp / "student.json", tiny_card("test-student"))
    return {"tmp": tmp, "card": card, "data": write_dr_dataset(tmp / "dr")}


def _cfg(setup, out, **kw):
    base = dict(data=[str(setup["data"])], out=str(out), student_card=str(setup["card"]), steps=12, batch_size=8,
                lr=2e-3, warmup=2, save_every=4, log_every=1, workers=0, shuffle_buffer=8)
    return TrainConfig(**{**base, **kw})


def _losses(path):
    return {r["step"]: r["loss"] for r in read_log(path) if "loss" in r}


def test_kill_and_resume_continue_the_same_loss_curve(setup):
    tmp = setup["tmp"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the killed run below has one thread too: same arithmetic
    try:
        train(_cfg(setup, tmp / "full", steps=STEPS))
        full = _losses(tmp / "full" / "log.jsonl")
        assert sorted(full) == list(range(1, STEPS + 1))

        out = tmp / "killed"
        args = [sys.executable, "-m", "mc2export.cli", "train", setup["data"], "--out", out, "--student-card",
                setup["card"], "--steps", STEPS, "--batch-size", 8, "--lr", 2e-3, "--warmup", 2, "--save-every", 4,
                "--log-every", 1, "--workers", 0, "--shuffle-buffer", 8]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen(list(map(str, args)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                cwd=str(REPO))
        log = out / "log.jsonl"
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            if log.is_file() and any(r.get("step", 0) >= 5 for r in _safe_jsonl(log)):
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed: " + proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        killed_at = max(r.get("step", 0) for r in _safe_jsonl(log))
        assert killed_at < STEPS
        train(_cfg(setup, out, steps=STEPS, resume="latest"))
    finally:
        torch.set_num_threads(threads)
    resumed = _losses(log)
    assert sorted(resumed) == list(range(1, STEPS + 1))  # no gap, no duplicate step after the resume
    for step in range(1, STEPS + 1):
        assert resumed[step] == pytest.approx(full[step], rel=1e-5, abs=1e-6), f"step {step}"
    assert len(list((out / "checkpoints").glob("step_*.pt"))) == 2  # --keep 2


def _safe_jsonl(path):
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def test_nan_loss_stops_with_the_step_and_the_last_good_checkpoint(setup):
    tmp = setup["tmp"]
    out = tmp / "nan"
    train(_cfg(setup, out, steps=4, save_every=2))
    bad = write_dr_dataset(tmp / "dr-nan", n=8, nan=True)
    with pytest.raises(UserError) as e:
        train(_cfg(setup, out, steps=8, save_every=2, data=[str(bad)], resume="latest"))
    msg = str(e.value)
    assert "at step 5" in msg and str(out / "checkpoints" / "step_0000004.pt") in msg and "\n" not in msg
    with pytest.raises(UserError, match="no checkpoint was written before this step"):
        train(_cfg(setup, tmp / "nan-fresh", steps=4, data=[str(bad)]))
    with pytest.raises(UserError, match="holds checkpoints of an earlier run"):
        train(_cfg(setup, out, steps=8))


def test_corrupt_shard_is_skipped_and_counted(setup, capsys):
    tmp = setup["tmp"]
    data = write_dr_dataset(tmp / "dr-corrupt", n=24)
    shard = data / "shard-000001.tar"
    shard.write_bytes(shard.read_bytes()[:3000])  # truncated mid-sample
    train(_cfg(setup, tmp / "corrupt", data=[str(data)], steps=6, save_every=6))
    rec = [r for r in read_log(tmp / "corrupt" / "log.jsonl") if "loss" in r][-1]
    assert rec["corrupt_shards"] >= 1
    err = capsys.readouterr().err
    assert "corrupt shard" in err and "shard-000001.tar" in err and "corrupt shards" in err


def test_embeddings_of_other_teachers_stop_the_run(setup):
    tmp = setup["tmp"]
    data = write_dr_dataset(tmp / "dr-wide", n=8, dims=(16, 8))
    manifest = json.loads((data / MANIFEST).read_text())
    manifest["teachers"][0]["dim"] = 12  # the dataset claims 12+8, its shards hold 16+8
    (data / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(UserError, match=r"shard-000000.tar' holds 24-d teacher embeddings but the teachers are "
                                        r"12\+8 = 20-d"):
        train(_cfg(setup, tmp / "wide", data=[str(data)], steps=2))


def test_trained_student_reloads_from_its_file_alone_and_evaluates(setup, tmp_path, capsys):
    from mc2export import cards, create_model
    from mc2export.cli import main

    out = setup["tmp"] / "eval"
    train(_cfg(setup, out, steps=3, save_every=3))
    assert (out / "loss.svg").is_file() and (out / "model.safetensors").is_file()
    cards._EXTRA.pop("test-student")  # forget the card: it must come back from inside the file
    cards._aliases.cache_clear()
    model = create_model(checkpoint=out / "model.safetensors")
    assert model.variant == "test-student" and model.card["text"]["context_length"] == 16
    folder = write_image_folder(tmp_path / "eval")
    (tmp_path / "names.txt").write_text("blue_disc\tblue disc\ngreen_disc\tgreen disc\nred_disc\tred disc\n")
    with pytest.raises(SystemExit) as e:
        main(["eval-zeroshot", str(folder), "--checkpoint", str(out / "model.safetensors"), "--templates", "none",
              "--classnames", str(tmp_path / "names.txt"), "--json", str(tmp_path / "r.json")])
    assert e.value.code in (0, None)
    assert "test-student: zero-shot top-1" in capsys.readouterr().out
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["n"] == 12 and res["classes"] == 3 and 0.0 <= res["top1"] <= 1.0
    assert set(res["per_class"]) == {"blue disc", "green disc", "red disc"}
    with pytest.raises(SystemExit) as e:
        main(["train", str(setup["data"]), "--out", str(tmp_path / "x"), "--student-card", str(setup["card"]),
              "--lambda", "2"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.strip() == "error: --lambda must be within [0, 1], got 2.0"
