"""LiteRT's graph against our ONNX Runtime bundle: p50 per tower at the same thread count, paired and interleaved
(``benchmarks/paired.py``), with the op histogram of each ``.tflite`` (transposes, unfused ops: what a slow graph
shows). x86 is not LiteRT's home, but a large gap here means a graph that will be slow on a phone too.

    python benchmarks/litert_speed.py --litert S0-LITERT-BUNDLE --onnx S0-ONNX-BUNDLE [--rounds 20 --threads 2]
    python benchmarks/litert_speed.py --variant s0 --random-weights     # exports both bundles first (~3 min)

Results: ``benchmarks/results/litert_speed.{md,json}`` (``--name``).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paired  # noqa: E402


def _export(fmt: str, variant: str, out: Path) -> Path:
    import mc2export.export as E

    E.export_bundle(fmt, variant, out=out, random_weights=True, force=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--litert", type=Path, help="a LiteRT bundle (mc2export litert ... --out DIR)")
    ap.add_argument("--onnx", type=Path, help="an ONNX bundle of the same variant and precision")
    ap.add_argument("--variant", default="s0", help="with --random-weights: export both bundles of this variant")
    ap.add_argument("--random-weights", action="store_true")
    ap.add_argument("--towers", default="image,text")
    ap.add_argument("--name", default="litert_speed")
    paired.add_arguments(ap, rounds=20)
    args = ap.parse_args()

    from mc2export.bench import runtimes
    from mc2export.bench.bundles import load_bundle
    from mc2export.export import litert as L

    tmp = Path(tempfile.mkdtemp(prefix="litert-speed-"))
    lit = args.litert or _export("litert", args.variant, tmp / "litert")
    onx = args.onnx or _export("onnx", args.variant, tmp / "onnx")
    bl, bo = load_bundle(lit), load_bundle(onx)
    if bl.variant != bo.variant or bl.precision != bo.precision:
        sys.exit(f"error: the bundles differ: {bl.variant} {bl.precision} vs {bo.variant} {bo.precision}")
    towers = [t for t in args.towers.split(",") if t in bl.towers and t in bo.towers]
    runners, keep, ops = {}, [], {}
    for t in towers:
        a = runtimes.load("litert", bl, t, args.threads)
        b = runtimes.load("onnxruntime", bo, t, args.threads)
        keep += [a, b]
        runners[("litert", t)], runners[("onnxruntime", t)] = a.call, b.call
        ops[t] = L.op_histogram(bl.model_file(t))
    res = paired.interleaved(runners, args.rounds, args.burst, args.gap, args.warmup,
                             log=lambda s: print(s, file=sys.stderr))
    cpu = paired.cpu_record()
    load = max(res["loadavg_before"][0], res["loadavg_after"][0])
    lines = [f"# LiteRT vs ONNX Runtime, {bl.variant} {bl.precision}, {args.threads} threads",
             "", f"CPU: {cpu['cpu']} ({cpu['cpu_isa']}); load average {res['loadavg_before']} -> "
                 f"{res['loadavg_after']}" + (" -- PROVISIONAL (load > 1.5)" if load > 1.5 else ""),
             f"{args.rounds} interleaved rounds x {args.burst} calls (benchmarks/paired.py)", "",
             "| tower | LiteRT p50 ms | ORT p50 ms | LiteRT / ORT (paired) | within 1.5x | TRANSPOSE ops |",
             "|---|---|---|---|---|---|"]
    figures = {}
    for t in towers:
        ratio = paired.paired_ratio(res["times"], ("litert", t), ("onnxruntime", t))
        ml, mo = paired.median_ms(res["times"][("litert", t)]), paired.median_ms(res["times"][("onnxruntime", t)])
        figures[t] = {"litert_ms": ml, "onnxruntime_ms": mo, "ratio": ratio, "ops": ops[t]}
        lines.append(f"| {t} | {ml:.1f} | {mo:.1f} | {ratio:.2f} | {'yes' if ratio <= 1.5 else 'NO'} | "
                     f"{ops[t].get('TRANSPOSE', 0)} |")
    paired.save(Path(__file__).resolve().parent / "results" / args.name,
                {"variant": bl.variant, "precision": bl.precision, "threads": args.threads, "cpu": cpu,
                 "loadavg_before": res["loadavg_before"], "loadavg_after": res["loadavg_after"],
                 "rounds": args.rounds, "towers": figures,
                 "bundles": {"litert": str(bl.path), "onnx": str(bo.path)}}, lines)


if __name__ == "__main__":
    main()
