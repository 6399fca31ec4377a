"""The iOS app's photo index (examples/ios/MC2Core) on Linux: search and append, Swift release build, one core.

Runs ``mc2-index-tool`` (examples/ios/MC2Core/Sources/mc2-index-tool) in the Debian trixie root of
``examples/ios/swift_linux.sh`` (made on first use, cached in /var/cache/mc2export/swift-trixie):

* ``search-bench N``: N synthetic 512-d embeddings stored as the index holds them (fp16, contiguous), top-24
  over 15 queries (p50 / min / max; the search is single-threaded), recall@24 against exact float32 search
  over the unrounded vectors (first 3 queries). Issue 21's goals: 100k <= 20 ms, 1M <= 200 ms.
* ``append-bench``: 100k embeddings appended in batches of 32 (one write + fsync each) to a new index file:
  peak resident memory growth beyond the vectors' own bytes (goal <= 64 MB), file size / (N x dim x 2).

Linux has no Accelerate: the search is MC2Core's portable kernel (SIMD8 fp16 widening + dot products);
on Apple systems the vDSP path is used instead (not measured here). The machine's CPU and load are recorded;
figures taken at a load above 1.5 are provisional.

    nice -n 5 python benchmarks/swift_index_search.py                 # 100k and 1M, ~5-10 min
    python benchmarks/swift_index_search.py --sizes 100000 --no-append  # quicker

Results: benchmarks/results/app_index_search_swift.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "ios" / "swift_linux.sh"
OUT = REPO / "benchmarks" / "results"


def cpu() -> dict:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), platform.processor())
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    return {"model": model, "cores": os.cpu_count(),
            "flags": [f for f in ("avx2", "fma", "f16c", "avx512f", "avx512_fp16", "amx_tile") if f in flags]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated index sizes")
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=24)
    ap.add_argument("--queries", type=int, default=15)
    ap.add_argument("--append", type=int, default=100000, help="embeddings for the append benchmark (0: skip)")
    ap.add_argument("--no-append", action="store_true")
    ap.add_argument("--name", default="app_index_search_swift")
    a = ap.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",") if s]
    steps = ["swift build -c release --product mc2-index-tool 2>&1 | tail -3",
             *[f".build/release/mc2-index-tool search-bench {n} {a.dim} {a.k} {a.queries}" for n in sizes]]
    if a.append and not a.no_append:
        steps.append(f".build/release/mc2-index-tool append-bench /tmp/mc2-append-bench.mc2i {a.append} {a.dim} 32"
                     " && rm -f /tmp/mc2-append-bench.mc2i")
    load_before = os.getloadavg()
    t0 = time.monotonic()
    # taskset: one core, as the goal says (the search is single-threaded; this keeps the OS from migrating it)
    cmd = ["bash", str(SCRIPT), "--", "sh", "-c", " && ".join(
        s if s.startswith("swift") else f"taskset -c 0 {s}" for s in steps)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    load_after = os.getloadavg()
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-3000:] + p.stderr[-3000:])
        return p.returncode
    rows = [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith("{")]
    search = [r for r in rows if "p50_ms" in r]
    append = next((r for r in rows if "peak_rss_growth_bytes" in r), None)
    loaded = max(load_before[0], load_after[0]) > 1.5
    result = {"cpu": cpu(), "loadavg_before": load_before, "loadavg_after": load_after, "provisional": loaded,
              "wall_s": round(time.monotonic() - t0, 1), "search": search, "append": append,
              "kernel": "MC2Core VectorStore.scoreRows, portable path (no Accelerate on Linux): fp16 bits moved into "
                        "float lanes (Half.scaledLow / scaledHigh, query scaled by 2^112), float32 dot products, bounded "
                        "top-k heap; baseline x86-64 code (SSE2: no AVX2 / F16C instructions are used)", "swift": "6.0.3 (Debian trixie swiftlang), -c release"}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{a.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    goals = {100000: 20.0, 1000000: 200.0}
    lines = [f"# Photo index search and append in Swift on Linux (MC2Core, issue 21)", "",
             f"`python benchmarks/swift_index_search.py` -- CPU {result['cpu']['model']} ({result['cpu']['cores']} cores; "
             f"flags {', '.join(result['cpu']['flags']) or 'none of avx2/f16c/avx512'}), load {load_before[0]:.2f} before / "
             f"{load_after[0]:.2f} after" + (" -- **provisional: the machine was loaded (> 1.5)**" if loaded else "") + ".",
             f"Swift {result['swift']}; one core (`taskset -c 0`); {result['kernel']}.", "",
             "Wall time includes the time other processes held the core; CPU time (the search thread's "
             "`CLOCK_THREAD_CPUTIME_ID`) does not, and is what an idle core would take (cache effects aside).", "",
             "| photos | dim | k | p50 ms (wall) | min ms | max ms | p50 ms (CPU) | goal (p50) | recall@k vs exact fp32 | fp16 vectors |",
             "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in search:
        g = goals.get(r["n"])
        lines.append(f"| {r['n']:,} | {r['dim']} | {r['k']} | {r['p50_ms']:.1f} | {r['min_ms']:.1f} | {r['max_ms']:.1f} | "
                     f"{r['cpu_p50_ms']:.1f} | "
                     f"{'<= %g ms: wall %s, CPU %s' % (g, 'met' if r['p50_ms'] <= g else 'not met', 'met' if r['cpu_p50_ms'] <= g else 'not met') if g else '-'} | "
                     f"{r['recall_vs_fp32']:.3f} ({r['recall_queries']} queries) | {r['vector_bytes'] / 2**20:.0f} MiB |")
    if append:
        lines += ["", f"Append: {append['n']:,} embeddings ({append['dim']}-d) in batches of {append['batch']}, one write + "
                      f"fsync per batch: {append['seconds']:.1f} s; peak RSS growth {append['peak_rss_growth_bytes'] / 2**20:.1f} MiB, "
                      f"of which the vectors' own bytes {append['vector_bytes'] / 2**20:.1f} MiB -> "
                      f"{append['growth_beyond_vectors_bytes'] / 2**20:.1f} MiB beyond them (goal <= 64 MB: "
                      f"{'met' if append['growth_beyond_vectors_bytes'] <= 64e6 else 'not met'}); file "
                      f"{append['file_over_vectors']:.3f} x (N x dim x 2) (goal <= 1.1 x + keys)."]
    lines += ["", "Kernels tried on this machine (the same day, loaded 9-13, so read the CPU-time column): a first "
                  "SIMD8 widening using Swift's generic mask selects (`replace(with:where:)`) and lane conversions "
                  "(`SIMD8<UInt32>(truncatingIfNeeded:)`) compiled to per-lane scalar code: 2083 ms wall at 100k; an "
                  "exact widening with integer lane operations only (rebased exponent, subnormal fix-up): 38.2 ms CPU "
                  "at 100k, 375.8 ms at 1M; the current one moves the half's bits into a float unchanged (the value "
                  "times 2^-112, exact) and scales the query by 2^112 instead: the figures above. Both later kernels "
                  "give bit-identical scores (IndexTests checks the widening on all 65536 half values)."]
    (OUT / f"{a.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
