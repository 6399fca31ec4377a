"""Run ``mc2export bench`` over every variant's bundle on this machine's runtimes; report + plot + repeatability.

Bundles: fp32 bundles that ``export_all.py --keep-precisions fp32 --scratch DIR`` left in ``--bundle-dir``
(validated exports), else exported here with ``--random-weights`` (latency does not depend on the weight
values), outside the repository: they are hundreds of MB. Every measurement is one
``mc2export bench ... --json`` run written to ``benchmarks/results/bench/runs/``; an existing run file is
kept (resumable: rerun after an interruption and only the missing ones are measured; ``--force`` redoes
them). At the end ``mc2export bench-report`` merges the runs into ``benchmarks/results/bench/``
(``report.md``, ``latency.svg``, ``merged.json``, ``merged.csv``).

The machine is shared: ``--max-load`` waits (up to ``--max-wait`` s) for the 1-minute load average to fall
below a threshold before each measurement; every result records the load before and after.

    python benchmarks/bench_all.py                                     # s0, s2, b, mobileclip-s0 on ORT; s0 on ExecuTorch
    python benchmarks/bench_all.py --variants all --executorch s0,s2   # every variant
    python benchmarks/bench_all.py --variants s0 --runtimes onnxruntime,torch,torch-unfolded
    python benchmarks/bench_all.py --repeatability-only                # two back-to-back quick runs of S0 (ORT)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "bench"
DEFAULT_VARIANTS = "s0,s2,b,mobileclip-s0"
FORMAT_OF = {"onnxruntime": "onnx", "executorch": "executorch", "coreml": "coreml", "torch": "onnx",
             "torch-unfolded": "onnx"}


def log(msg: str) -> None:
    print(f"[bench_all {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def load1() -> float:
    return os.getloadavg()[0]


def wait_quiet(max_load: float, max_wait: float) -> float:
    """Wait until the 1-minute load average is below ``max_load`` (or ``max_wait`` s passed); returns it."""
    if max_load <= 0:
        return load1()
    t0 = time.time()
    while load1() > max_load and time.time() - t0 < max_wait:
        time.sleep(15)
    la = load1()
    if la > max_load:
        log(f"load {la:.2f} still above {max_load} after {max_wait:.0f}s: measuring anyway (recorded)")
    return la


def cli(*args: str, timeout: float = 7200) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mc2export.cli", *args], cwd=ROOT, text=True, capture_output=True,
                          timeout=timeout)


def ensure_bundle(variant: str, fmt: str, bundle_dir: Path, towers: str = "image,text") -> Path:
    from mc2export import resolve_variant

    vid = resolve_variant(variant)
    name = f"{vid}-{fmt}-fp32-random" + ("" if towers == "image,text" else "-" + towers.replace(",", "-"))
    out = bundle_dir / name
    if (out / "config.json").is_file():
        return out
    kept = bundle_dir / f"{vid}-{fmt}-fp32"  # kept by export_all.py --keep-precisions fp32 (validated, kit weights)
    if towers == "image,text" and (kept / "config.json").is_file():
        return kept
    log(f"exporting {vid} to {fmt} (random weights) -> {out}")
    t0 = time.time()
    p = cli(fmt, "--variant", vid, "--random-weights", "--towers", towers, "--out", str(out), "--force", "--quiet")
    if p.returncode != 0:
        raise SystemExit(f"export of {vid} to {fmt} failed:\n{p.stderr[-3000:]}")
    log(f"  exported in {time.time() - t0:.0f}s")
    return out


def measure(bundle: Path, runtime: str, mode: str, threads: int, out: Path, extra=()) -> dict:
    p = cli("bench", str(bundle), "--runtime", runtime, "--mode", mode, "--threads", str(threads), "--json",
            str(out), "--quiet", *extra)
    if p.returncode != 0:
        raise SystemExit(f"bench of {bundle} on {runtime} failed:\n{p.stderr[-3000:]}")
    print(p.stdout.split("\nwrote")[0], flush=True)
    return json.loads(out.read_text())


def repeatability(bundle: Path, runtime: str, threads: int, max_load: float, max_wait: float) -> dict:
    """Two back-to-back quick runs of one bundle: p50 per tower and summed, relative difference."""
    runs = []
    for i in range(2):
        la = wait_quiet(max_load, max_wait) if i == 0 else load1()
        f = OUT / "runs" / f"repeatability-t{threads}-{i + 1}.json"
        doc = measure(bundle, runtime, "quick", threads, f)
        r = doc["results"][0]
        runs.append({"run": i + 1, "load_avg_before": r["device"].get("load_avg"),
                     "load_avg_after": r["device"].get("load_avg_end"), "load_at_start": round(la, 2),
                     "p50_ms": {t: r["towers"][t]["stats"]["p50"] for t in r["towers"]},
                     "total_p50_ms": r["total"]["headline_ms"], "created": r["created"]})
    a, b = runs
    diff = {t: abs(a["p50_ms"][t] - b["p50_ms"][t]) / min(a["p50_ms"][t], b["p50_ms"][t]) for t in a["p50_ms"]}
    diff["image+text"] = abs(a["total_p50_ms"] - b["total_p50_ms"]) / min(a["total_p50_ms"], b["total_p50_ms"])
    rep = {"bundle": str(bundle), "runtime": runtime, "mode": "quick", "threads": threads, "runs": runs,
           "relative_difference": {k: round(v, 4) for k, v in diff.items()},
           "within_10_percent": all(v <= 0.10 for v in diff.values()),
           "criterion": "two back-to-back quick runs of the same bundle agree within 10% on p50 (each tower and the sum)"}
    path = OUT / "repeatability.json"
    allrep = json.loads(path.read_text()) if path.is_file() else {}
    if "runs" in allrep:  # an older single-entry file
        allrep = {}
    allrep[f"threads={threads}"] = rep
    path.write_text(json.dumps(allrep, indent=1) + "\n")
    log(f"repeatability ({threads} threads): {rep['relative_difference']} -> within 10%: {rep['within_10_percent']}")
    return rep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help="comma-separated ids/short names, or 'all'")
    ap.add_argument("--runtimes", default="onnxruntime", help="runtimes for every variant (comma-separated)")
    ap.add_argument("--executorch", default="s0", help="variants also measured on ExecuTorch ('' for none)")
    ap.add_argument("--mode", default="quick", choices=["quick", "modelbench", "mlperf"])
    ap.add_argument("--threads", default=str(os.cpu_count() or 1),
                    help="thread counts, comma-separated (e.g. 2,1): every measurement runs at each")
    ap.add_argument("--bundle-dir", type=Path, default=Path(os.environ.get("MC2EXPORT_BUNDLE_DIR",
                                                                         Path.home() / ".cache" / "mc2export" /
                                                                         "bench-bundles")))
    ap.add_argument("--max-load", type=float, default=0.5, help="wait for a 1-min load below this (0: never wait)")
    ap.add_argument("--max-wait", type=float, default=900.0, help="longest wait for a quiet machine (s)")
    ap.add_argument("--force", action="store_true", help="measure again even when a run file exists")
    ap.add_argument("--no-repeatability", action="store_true")
    ap.add_argument("--repeatability-only", action="store_true")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from mc2export import list_variants, resolve_variant

    variants = list_variants() if args.variants == "all" else [resolve_variant(v) for v in args.variants.split(",") if v]
    et = [resolve_variant(v) for v in args.executorch.split(",") if v]
    plan = [(v, rt) for v in variants for rt in args.runtimes.split(",") if rt]
    plan += [(v, "executorch") for v in et if (v, "executorch") not in plan]
    (OUT / "runs").mkdir(parents=True, exist_ok=True)
    args.bundle_dir.mkdir(parents=True, exist_ok=True)

    threads = [int(t) for t in str(args.threads).split(",") if t]
    if not args.repeatability_only:
        todo = []
        for th in threads:
            for v, rt in plan:
                f = OUT / "runs" / f"{v}-{rt}-{args.mode}-t{th}.json"
                if f.is_file() and not args.force:
                    log(f"{v} on {rt}, {th} threads: already measured ({f.name})")
                    continue
                todo.append((v, rt, th, f))
        bundles = {(v, rt): ensure_bundle(v, FORMAT_OF[rt], args.bundle_dir) for v, rt, _, _ in todo}  # export first
        for v, rt, th, f in todo:
            bundle = bundles[(v, rt)]
            la = wait_quiet(args.max_load, args.max_wait)
            log(f"{v} on {rt} ({args.mode}, {th} threads), load {la:.2f}")
            measure(bundle, rt, args.mode, th, f)
    if not args.no_repeatability:
        bundle = ensure_bundle("s0", "onnx", args.bundle_dir)
        for th in threads:
            repeatability(bundle, "onnxruntime", th, args.max_load, args.max_wait)
    runs = sorted(p for p in (OUT / "runs").glob("*.json") if not p.name.startswith("repeatability-"))
    if runs:
        p = cli("bench-report", *map(str, runs), "--out", str(OUT), "--title",
                "mc2export latency on this machine (fp32 bundles, batch 1)")
        if p.returncode != 0:
            raise SystemExit(p.stderr[-3000:])
        print(p.stdout, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
