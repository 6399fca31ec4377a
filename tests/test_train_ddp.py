"""Two processes under torchrun (gloo): the gradients of the gathered loss equal those of one process
on the same global batch. This file is also the worker script (run with a path argument)."""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
GLOBAL_BATCH = 8


def _global_batch():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(1, 49000, (2, GLOBAL_BATCH, 16), generator=g)
    tokens[:, :, 0] = 49406
    for row in range(GLOBAL_BATCH):  # captions of different lengths, end-of-text then zero padding
        n = 3 + row % 5
        tokens[:, row, n] = 49407
        tokens[:, row, n + 1:] = 0
    return {"images": torch.randn(GLOBAL_BATCH, 3, 32, 32, generator=g), "gt": tokens[0], "syn": tokens[1],
            "img_emb": torch.randn(GLOBAL_BATCH, 10, generator=g), "gt_emb": torch.randn(GLOBAL_BATCH, 10, generator=g),
            "syn_emb": torch.randn(GLOBAL_BATCH, 10, generator=g)}


def worker(out: str) -> None:
    """One rank: the tiny student, this rank's slice of the global batch, forward_loss, backward."""
    from mc2export import cards
    from mc2export.model import CLIPModel
    from mc2export.train.loss import LossConfig
    from mc2export.train.trainer import all_mean, close_distributed, forward_loss, init_distributed
    from test_train_support import tiny_card

    d = init_distributed("cpu")
    cards.register_card(tiny_card("ddp-student"))  # ViT + text transformer: LayerNorm only, no BatchNorm
    torch.manual_seed(0)
    model = raw = CLIPModel("ddp-student").train()
    per = GLOBAL_BATCH // d.world
    batch = {k: v[d.rank * per:(d.rank + 1) * per] for k, v in _global_batch().items()}
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(raw)
    losses = forward_loss(model, batch, LossConfig(0.5, (6, 4), (50.0, 20.0)), d, nullcontext())
    losses["loss"].backward()
    mean_loss = all_mean(d, losses["loss"].detach().reshape(1))
    if d.master:
        torch.save({"loss": mean_loss, "grads": {n: p.grad.clone() for n, p in raw.named_parameters()}}, out)
    close_distributed()


def _run(args, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE.parent)])}
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=240, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]


def test_two_process_gradients_equal_one_process(tmp_path, monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    worker(str(tmp_path / "one.pt"))  # the reference: one process, the whole batch (in this process)
    _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(HERE),
          str(tmp_path / "two.pt")], tmp_path)
    one = torch.load(tmp_path / "one.pt", weights_only=True)
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    assert two["loss"].item() == pytest.approx(one["loss"].item(), rel=1e-5)
    assert one["grads"].keys() == two["grads"].keys()
    worst = max(((a - two["grads"][n]).abs().max() / (a.abs().max() + 1e-12)).item() for n, a in one["grads"].items())
    assert worst < 1e-4, f"largest relative gradient difference {worst:.2e}"
    nonzero = sum(int(g.abs().sum() > 0) for g in one["grads"].values())
    assert nonzero >= len(one["grads"]) - 1  # every parameter (but possibly none) received gradient


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    torch.set_num_threads(1)
    worker(sys.argv[1])
