"""Eager PyTorch latency: train-time vs reference-folded vs our folding, side by side in one run.

Batch 1, fixed threads, interleaved rounds (each round times every model once, in a shuffled order),
medians and paired per-round ratios. Run it on a quiet machine: other jobs skew everything.

    python benchmarks/fold_speed.py                      # MCi0 (mobileclip2-s0) and MCi4 (mobileclip2-s4)
    python benchmarks/fold_speed.py --variants s0 --rounds 50
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

import torch

import mc2export

RESULTS = Path(__file__).parent / "results"


def measure(variant: str, rounds: int, warmup: int, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = mc2export.create_model(variant)
    _give_bn_statistics(model)
    towers = {
        "train-time": model.visual,
        "reference-folded": mc2export.fold(model, reference_only=True).visual,
        "ours-folded": mc2export.fold(model).visual,
    }
    x = torch.rand(1, 3, model.resolution, model.resolution)
    with torch.inference_mode():
        ref = towers["train-time"](x)
        for name, m in towers.items():
            diff = (m(x) - ref).abs().max().item() / ref.std().item()
            assert diff < 1e-4, f"{name} differs from train-time by {diff:.2e} x std"
            for _ in range(warmup):
                m(x)
        times = {name: [] for name in towers}
        order = list(towers)
        rng = random.Random(seed)
        load_before = os.getloadavg()
        for _ in range(rounds):
            rng.shuffle(order)
            for name in order:
                t0 = time.perf_counter()
                towers[name](x)
                times[name].append(time.perf_counter() - t0)
        load_after = os.getloadavg()
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    ratio = lambda a, b: statistics.median(x / y for x, y in zip(times[a], times[b]))  # noqa: E731
    return {
        "variant": model.variant, "image_encoder": model.card["image"]["name"], "rounds": rounds,
        "median_ms": med, "min_ms": {k: min(v) * 1e3 for k, v in times.items()},
        "paired_speedup": {"train-time / ours-folded": ratio("train-time", "ours-folded"),
                           "train-time / reference-folded": ratio("train-time", "reference-folded"),
                           "reference-folded / ours-folded": ratio("reference-folded", "ours-folded")},
        "loadavg_before": load_before, "loadavg_after": load_after,
    }


def _give_bn_statistics(model) -> None:
    # Random-init BatchNorms are identities; real checkpoints are not. Timing does not depend on values,
    # but the equivalence check above should prove something.
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["s0", "s4"])
    ap.add_argument("--rounds", type=int, default=0, help="default: 40 for small towers, 12 for MCi3/4")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "fold_speed")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runs = []
    for v in args.variants:
        big = mc2export.get_card(v)["image"]["name"] in ("MCi3", "MCi4", "ViT-L/14")
        r = measure(v, args.rounds or (12 if big else 40), args.warmup)
        runs.append(r)
        print(json.dumps(r, indent=1))
    from mc2export.bench.device import host_device

    report = {"benchmark": "fold_speed", "batch": 1, "threads": args.threads, "torch": torch.__version__,
              "cpu": host_device()["cpu"] or platform.machine(), "cores": os.cpu_count(),
              "when": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    lines = [f"# Eager latency of folding ({report['cpu']}, {args.threads} threads, batch 1, torch {torch.__version__})",
             "", "| variant | train-time ms | reference-folded ms | ours-folded ms | train/ours | train/ref | "
             "ref/ours | load before→after |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        m, s = r["median_ms"], r["paired_speedup"]
        lines.append(f"| {r['variant']} ({r['image_encoder']}) | {m['train-time']:.1f} | {m['reference-folded']:.1f} | "
                     f"{m['ours-folded']:.1f} | {s['train-time / ours-folded']:.2f}× | "
                     f"{s['train-time / reference-folded']:.2f}× | {s['reference-folded / ours-folded']:.2f}× | "
                     f"{r['loadavg_before'][0]:.2f}→{r['loadavg_after'][0]:.2f} |")
    lines += ["", "Medians over interleaved rounds; ratios are medians of per-round paired ratios.", ""]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
