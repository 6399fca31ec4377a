"""Training throughput: a plain CLIP step vs a distillation step, fp32 vs bf16 autocast, 1 vs 2 processes,
and the data pipeline (stored-augmentation replay vs a live random augmentation).

Steps run on in-memory batches (the trainer's own ``forward_loss`` + backward + clip + AdamW), so the
numbers are the model's and the loss's, not the disk's. Configurations are interleaved round by
round and the median of the rounds is reported, with the load average before and after: time only
on a quiet machine (``--max-load``; the script waits up to ``--max-wait`` seconds for one).

    python benchmarks/train_throughput.py                      # tiny student of examples/train_tiny
    python benchmarks/train_throughput.py --student-card models/mobileclip2-s0.json --batch-size 8 \
        --rounds 3 --steps 1 --name train_throughput_s0
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# name -> (lambda, caption sets, precision)
STEPS = {
    "clip_gt": (0.0, ("gt",), "fp32"),               # plain CLIP: one caption per image
    "clip_gt_syn": (0.0, ("gt", "syn"), "fp32"),     # CLIP on ground-truth + synthetic captions
    "distill_gt": (1.0, ("gt",), "fp32"),            # distillation, one caption set
    "distill_gt_syn": (1.0, ("gt", "syn"), "fp32"),  # the MobileCLIP2 step (lambda 1, both sets)
    "distill_gt_syn_bf16": (1.0, ("gt", "syn"), "bf16"),
}
TEACHER_DIMS, TEACHER_SCALES = (768, 768), (70.0, 60.0)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def wait_quiet(max_load: float, max_wait: float) -> float:
    t0 = time.time()
    while load() > max_load and time.time() - t0 < max_wait:
        time.sleep(10)
    return load()


def build(card_path: str, seed: int = 0):
    from mc2export import cards
    from mc2export.model import CLIPModel

    vid = cards.load_card_file(card_path) if not cards.is_builtin(json.loads(Path(card_path).read_text())["id"]) \
        else json.loads(Path(card_path).read_text())["id"]
    torch.manual_seed(seed)
    return CLIPModel(vid).train()


def make_batch(model, b: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    res, ctx = model.card["resolution"], model.context_length
    tok = torch.randint(1, 49000, (2, b, ctx), generator=g)
    tok[:, :, 0] = 49406
    tok[:, :, min(8, ctx - 1)] = 49407
    tok[:, :, min(9, ctx):] = 0
    d = sum(TEACHER_DIMS)
    return {"images": torch.randn(b, 3, res, res, generator=g), "gt": tok[0], "syn": tok[1],
            "img_emb": torch.randn(b, d, generator=g), "gt_emb": torch.randn(b, d, generator=g),
            "syn_emb": torch.randn(b, d, generator=g)}


def make_step(model, opt, name: str, batch: dict, dist):
    from mc2export.train.loss import LossConfig
    from mc2export.train.trainer import forward_loss

    lam, sets, precision = STEPS[name]
    cfg = LossConfig(lam, TEACHER_DIMS if lam else (), TEACHER_SCALES if lam else ())
    sub = {k: v for k, v in batch.items() if k in ("images", "img_emb") or k.split("_")[0] in sets}
    ddp = model
    raw = getattr(model, "module", model)

    def step():
        ac = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
        out = forward_loss(ddp, sub, cfg, dist, ac)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(raw.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def time_steps(configs, model, opt, batch, dist, rounds: int, steps: int) -> dict:
    """Interleaved rounds: every configuration runs ``steps`` steps per round. Per configuration: the
    median and best samples/s, every round's figure and the load average at each round's start."""
    fns = {n: make_step(model, opt, n, batch, dist) for n in configs}
    for fn in fns.values():  # warm-up
        fn()
        fn()
    per = {n: [] for n in configs}
    loads = []
    for _ in range(rounds):
        loads.append(load())
        for n, fn in fns.items():
            if dist.enabled:
                import torch.distributed as d

                d.barrier()
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            per[n].append(steps * batch["images"].shape[0] * dist.world / (time.perf_counter() - t0))
    out = {n: {"samples_per_s": round(statistics.median(v), 2), "best": round(max(v), 2),
               "rounds": [round(x, 2) for x in v]} for n, v in per.items()}
    out["_round_loads"] = loads
    return out


def paired_overhead(res: dict, base: str, other: str) -> float:
    """Median over rounds of (time per sample of ``other``) / (time per sample of ``base``) - 1: each
    round's pair ran back to back, so a slowdown that lasts a round cancels out."""
    ratios = [b / o - 1 for b, o in zip(res[base]["rounds"], res[other]["rounds"])]
    return round(statistics.median(ratios), 4)


def data_pipeline(card_path: str, n: int = 48) -> dict:
    """Samples/s of the training stream (1 process, no loader workers): stored-augmentation replay +
    embedding read vs a live random augmentation, both with decoding and tokenization."""
    import random
    import tempfile

    import numpy as np
    from PIL import Image

    from mc2export import cards
    from mc2export.train.augment import AugmentConfig, draw
    from mc2export.train.data import ShardWriter, StreamSpec, TarReader, TrainStream, encode_embeddings

    card = cards.get_card(json.loads(Path(card_path).read_text())["id"])
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        w = ShardWriter(Path(tmp) / "s.tar")
        for i in range(n):
            img = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
            import io

            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=90)
            params = [draw(AugmentConfig(size=224), random.Random(i * 10 + k), 400, 300) for k in range(10)]
            ext, emb = encode_embeddings(rng.normal(size=(10, 1536)), rng.normal(size=(6, 1536)), "npz")
            w.write(f"{i:06d}", {"jpg": buf.getvalue(), "txt": b"a photo of something", ext: emb,
                                 "paug.json": json.dumps({"param_aug": params}).encode(),
                                 "syn.json": json.dumps({"syn_text": [f"synthetic {k}" for k in range(5)]}).encode()})
        w.close()
        pre = card["preprocess"]
        out = {}
        for name, reinforced in (("replay_stored_aug", True), ("live_random_aug", False)):
            spec = StreamSpec(batch_size=16, size=pre["resolution"], mean=tuple(pre["mean"]), std=tuple(pre["std"]),
                              interpolation=pre["interpolation"], context_length=card["text"]["context_length"],
                              reinforced=reinforced, aug=AugmentConfig(size=224).to_dict(),
                              teacher_dims=TEACHER_DIMS if reinforced else (),
                              captions="both" if reinforced else "gt", shuffle_buffer=16)
            it = iter(TrainStream(TarReader([str(Path(tmp) / "s.tar")]), spec, 0, 0))
            next(it)
            t0 = time.perf_counter()
            for _ in range(6):
                next(it)
            out[name] = {"samples_per_s": round(6 * 16 / (time.perf_counter() - t0), 1),
                         "source_image": "400x300 JPEG", "output": f"{pre['resolution']} px"}
        return out


def ddp_worker(args) -> None:
    from mc2export.train.trainer import close_distributed, init_distributed, param_groups

    torch.set_num_threads(max(1, args.threads))
    dist = init_distributed("cpu")
    model = build(args.student_card)
    from torch.nn.parallel import DistributedDataParallel as DDP

    ddp = DDP(model)
    opt = torch.optim.AdamW(param_groups(model, 0.2), lr=1e-4, betas=(0.9, 0.95), foreach=True)
    batch = make_batch(model, args.batch_size // dist.world, seed=dist.rank)
    res = time_steps(["clip_gt", "distill_gt_syn"], ddp, opt, batch, dist, args.rounds, args.steps)
    if dist.rank == 0:
        Path(args.worker_out).write_text(json.dumps(res))
    close_distributed()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student-card", default=str(REPO / "examples" / "train_tiny" / "student_card.json"))
    ap.add_argument("--batch-size", type=int, default=64, help="global batch (split across processes)")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--steps", type=int, default=3, help="steps per configuration per round")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the 1-process runs")
    ap.add_argument("--max-load", type=float, default=1.0)
    ap.add_argument("--max-wait", type=float, default=1800)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--name", default="train_throughput", help="result file stem (NAME.json, NAME.md)")
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker_out:
        return ddp_worker(args)

    from mc2export.train.trainer import Dist, param_groups

    record = {"student_card": str(Path(args.student_card).relative_to(REPO)) if str(args.student_card)
              .startswith(str(REPO)) else args.student_card, "batch_size": args.batch_size,
              "teachers": {"dims": TEACHER_DIMS, "logit_scales": TEACHER_SCALES},
              "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
              "load": {}}
    record["load"]["start"] = wait_quiet(args.max_load, args.max_wait)
    torch.set_num_threads(args.threads)
    model = build(args.student_card)
    opt = torch.optim.AdamW(param_groups(model, 0.2), lr=1e-4, betas=(0.9, 0.95), foreach=True)
    batch = make_batch(model, args.batch_size)
    from mc2export import count_parameters

    record["student_params_m"] = {"image": round(count_parameters(model, "image") / 1e6, 3),
                                  "text": round(count_parameters(model, "text") / 1e6, 3)}
    print(f"load {record['load']['start']}: timing {list(STEPS)} ...", file=sys.stderr)
    record["one_process"] = time_steps(list(STEPS), model, opt, batch, Dist(), args.rounds, args.steps)
    record["load"]["after_steps"] = load()
    one = record["one_process"]
    s = {k: v["samples_per_s"] for k, v in one.items() if not k.startswith("_")}
    record["overhead"] = {
        "distill_vs_clip_same_captions_gt": paired_overhead(one, "clip_gt", "distill_gt"),
        "distill_vs_clip_same_captions_gt_syn": paired_overhead(one, "clip_gt_syn", "distill_gt_syn"),
        "mobileclip2_step_vs_plain_clip": paired_overhead(one, "clip_gt", "distill_gt_syn"),
        "bf16_vs_fp32_distill_step": paired_overhead(one, "distill_gt_syn", "distill_gt_syn_bf16"),
    }
    print("data pipeline ...", file=sys.stderr)
    record["data_pipeline"] = data_pipeline(args.student_card)
    record["load"]["before_ddp"] = wait_quiet(args.max_load, args.max_wait)
    print(f"load {record['load']['before_ddp']}: 2 processes ...", file=sys.stderr)
    out = args.out / f"{args.name}_ddp.tmp.json"
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    __file__, "--worker-out", str(out), "--student-card", str(args.student_card), "--batch-size",
                    str(args.batch_size), "--rounds", str(args.rounds), "--steps", str(args.steps), "--threads", "1"],
                   check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record["two_processes_gloo"] = json.loads(out.read_text())
    out.unlink()
    record["load"]["end"] = load()
    two = {k: v["samples_per_s"] for k, v in record["two_processes_gloo"].items() if not k.startswith("_")}
    record["speedup_2proc_vs_1proc"] = {k: round(two[k] / s[k], 3) for k in two}
    (args.out / f"{args.name}.json").write_text(json.dumps(record, indent=1) + "\n")
    (args.out / f"{args.name}.md").write_text(markdown(record))
    print(markdown(record))


def markdown(r: dict) -> str:
    one = {k: v for k, v in r["one_process"].items() if not k.startswith("_")}
    rows = "\n".join(f"| {k} | {STEPS[k][0]} | {'+'.join(STEPS[k][1])} | {STEPS[k][2]} | {v['samples_per_s']} | "
                     f"{v['best']} |" for k, v in one.items())
    two = "\n".join(f"| {k} | {one[k]['samples_per_s']} | {v['samples_per_s']} | "
                    f"{r['speedup_2proc_vs_1proc'][k]} |" for k, v in r["two_processes_gloo"].items()
                    if not k.startswith("_"))
    o = r["overhead"]
    dp = "\n".join(f"| {k} | {v['samples_per_s']} |" for k, v in r["data_pipeline"].items())
    return f"""# Training throughput ({r['student_card']}, batch {r['batch_size']}, CPU)

Student: {r['student_params_m']['image']} M image + {r['student_params_m']['text']} M text parameters; teachers
{'+'.join(map(str, r['teachers']['dims']))}-d at scales {r['teachers']['logit_scales']}. Median of interleaved rounds,
in-memory batches (model + loss + AdamW). Load average (1 min): start {r['load']['start']}, after the 1-process
runs {r['load']['after_steps']}, before the 2-process runs {r['load']['before_ddp']}, end {r['load']['end']}
({r['machine']['cpus']} CPUs; torch {r['machine']['torch']}).

| step | lambda | captions | precision | samples/s (median) | best round |
|---|---|---|---|---|---|
{rows}

Load average at the start of each round: {r['one_process']['_round_loads']} (it counts this benchmark's own
{r['machine']['cpus']} threads: about {r['machine']['cpus']} is the floor while it runs; "start" above is the load before it).

Overhead (time per sample, relative; median over rounds of the ratio of the two configurations run back
to back in the same round):
- distillation vs CLIP, same captions (gt): {o['distill_vs_clip_same_captions_gt']:+.1%}
- distillation vs CLIP, same captions (gt + syn): {o['distill_vs_clip_same_captions_gt_syn']:+.1%}
- the MobileCLIP2 step (distill, gt + syn) vs a plain CLIP step (gt): {o['mobileclip2_step_vs_plain_clip']:+.1%}
  (the synthetic captions double the text-tower work)
- bf16 autocast vs fp32 on this CPU, distillation step: {o['bf16_vs_fp32_distill_step']:+.1%}

1 process ({r['machine']['cpus']} threads) vs 2 processes (gloo, 1 thread each, same global batch):

| step | 1 process | 2 processes | speed-up |
|---|---|---|---|
{two}

Data pipeline (one process, per sample: decode, crop/replay + RandAugment, tokenize; samples/s):

| stream | samples/s |
|---|---|
{dp}
"""


if __name__ == "__main__":
    main()
