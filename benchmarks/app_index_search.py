"""Photo index (docs/app_index.md) benchmark of the sample apps' Kotlin and JavaScript ports (issue 21).

* Search: synthetic 512-d unit vectors, top-24, one core (``taskset -c 0``), p50 over queries x rounds, at 100k
  and 1M photos: the shared Kotlin ``VectorStore`` on the JVM and ``mc2/photoindex.js`` in Debian's headless
  Chromium. Queries are stored photos' vectors plus noise. Each port times, in the same run, an exact float32
  baseline (rows kept as float32, plain dot, full sort) where it fits in memory (<= 200k rows), and reports the
  recall of its top-24 against it.
* Append (Kotlin): N embeddings through ``PhotoIndex.append`` in batches; peak heap growth beyond the vectors'
  own bytes (N x dim x 2), and the file size against N x dim x 2 + keys.

    python benchmarks/app_index_search.py [--sizes 100000,1000000] [--append 100000] [--out benchmarks/results]

Needs kotlinc (apt-get install kotlin), a JDK, /usr/bin/chromium and Playwright + examples/web/node_modules
(as tests/test_web.py). Writes ``app_index_search_kj.json`` and ``.md`` into ``--out``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO / "examples" / "android" / "shared" / "src" / "main" / "kotlin"
BENCH_KT = Path(__file__).resolve().parent / "app_index" / "IndexBench.kt"
WEB = REPO / "examples" / "web"
CHROMIUM = os.environ.get("MC2_CHROMIUM", "/usr/bin/chromium")


def cpu() -> dict:
    info = {"model": None, "flags": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and info["model"] is None:
                info["model"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                info["flags"] = sorted(f for f in flags if f.startswith(("avx2", "avx512f", "avx512_vnni", "amx")))
                break
    except OSError:
        pass
    info["cores"] = os.cpu_count()
    return info


def compile_kotlin() -> Path:
    sources = sorted(SHARED.rglob("*.kt")) + [BENCH_KT]
    h = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    out = Path(tempfile.gettempdir()) / f"mc2-index-bench-{h}"
    if not (out / ".done").is_file():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        env = dict(os.environ, JAVA_OPTS="-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        subprocess.run(["kotlinc", "-nowarn", "-jvm-target", "1.8", "-d", str(out)] + [str(p) for p in sources],
                       check=True, env=env, capture_output=True, text=True)
        (out / ".done").touch()
    return out


def java(classes: Path, args, heap: str) -> dict:
    stdlib = "/usr/share/java/kotlin-stdlib.jar"
    cmd = ["taskset", "-c", "0", "java", f"-Xmx{heap}", "-XX:+UseSerialGC", "-cp", f"{classes}:{stdlib}", "IndexBenchKt"] + [str(a) for a in args]
    if not shutil.which("taskset"):
        cmd = cmd[3:]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


JS_BENCH = """async ([n, queries, rounds, k]) => {
  const pi = await import("/mc2/photoindex.js");
  const dim = 512;
  let seed = 1;
  const rand = () => { seed = (seed * 1103515245 + 12345) >>> 0; return seed / 4294967296; };
  const gauss = () => { const u = Math.max(rand(), 1e-12), v = rand(); return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v); };
  const unit = () => { const v = new Float32Array(dim); let s = 0; for (let i = 0; i < dim; i++) { v[i] = gauss(); s += v[i] * v[i]; } s = Math.sqrt(s); for (let i = 0; i < dim; i++) v[i] /= s; return v; };
  const idx = new pi.PhotoIndex({ variant: "mobileclip2-s0", precision: "fp32", bundle_sha256: "ab".repeat(32), dim, vector_dtype: "float16" });
  const exact = n <= 200000 ? new Float32Array(n * dim) : null;
  const bits = new Uint16Array(dim);
  const kept = [];
  for (let i = 0; i < n; i++) {
    const v = unit();
    for (let j = 0; j < dim; j++) bits[j] = pi.toFp16(v[j]);
    idx.applyPut("content://media/external/images/media/" + i, i, bits, 0, 40);
    if (exact) exact.set(v, i * dim);
    if (i < 1000) kept.push(v);
  }
  const qs = [];
  for (let q = 0; q < queries; q++) { const b = kept[(q * 7919) % kept.length]; qs.push(Float32Array.from(b, (x) => x + 0.05 * gauss())); }
  const exactTop = (q) => {
    let s = 0; for (const x of q) s += x * x; s = Math.sqrt(s);
    const scores = new Float32Array(n);
    for (let r = 0; r < n; r++) { let d = 0; const o = r * dim; for (let j = 0; j < dim; j++) d += q[j] / s * exact[o + j]; scores[r] = d; }
    return Array.from(scores.keys()).sort((a, b) => scores[b] - scores[a] || a - b).slice(0, k);
  };
  for (let w = 0; w < 3; w++) idx.search(qs[w % queries], k);
  const ours = [], base = [];
  let hit = 0, total = 0;
  for (let r = 0; r < rounds; r++) {
    for (let qi = 0; qi < queries; qi++) {
      const t0 = performance.now();
      const hits = idx.search(qs[qi], k);
      ours.push(performance.now() - t0);
      if (exact && (r === 0 || qi === 0)) {
        const t1 = performance.now();
        const want = exactTop(qs[qi]);
        base.push(performance.now() - t1);
        if (r === 0) { const got = new Set(hits.map((h) => +h.key.split("/").pop())); hit += want.filter((x) => got.has(x)).length; total += want.length; }
      }
    }
  }
  const p50 = (x) => x.length ? [...x].sort((a, b) => a - b)[x.length >> 1] : null;
  return { what: "search", n, dim, k, queries, rounds, p50_ms: p50(ours), min_ms: Math.min(...ours), max_ms: Math.max(...ours), samples: ours.length,
           baseline: "float32 rows, plain dot, full sort (exact)", baseline_p50_ms: p50(base), recall_at_k_vs_exact_fp32: total ? hit / total : null,
           storage: "Float32Array blocks of 4096 rows (fp16 widened at replay)", userAgent: navigator.userAgent };
}"""


def js_search(sizes, queries, rounds, k) -> list:
    sys.path.insert(0, str(WEB))
    import serve  # noqa: E402
    from playwright.sync_api import sync_playwright

    srv, url = serve.start(WEB, {})
    out = []
    try:
        with sync_playwright() as p:
            for n in sizes:
                # one renderer per size, pinned to one core like the JVM runs
                args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--renderer-process-limit=1",
                        "--js-flags=--max-old-space-size=4096"]
                b = p.chromium.launch(executable_path=CHROMIUM, args=args)
                pg = b.new_page()
                pg.goto(url + "index.html")
                pid = None
                try:
                    ps = subprocess.run(["pgrep", "-f", "--newest", "type=renderer"], capture_output=True, text=True).stdout.split()
                    pid = ps[-1] if ps else None
                    if pid and shutil.which("taskset"):
                        subprocess.run(["taskset", "-a", "-p", "-c", "0", pid], capture_output=True)
                    r = pg.evaluate(JS_BENCH, [n, queries, rounds, k])
                except Exception as e:  # noqa: BLE001 -- a renderer out of memory at 1M is a result to record
                    r = {"what": "search", "n": n, "error": str(e).splitlines()[0][:300]}
                r["renderer_pinned_to_core0"] = bool(pid)
                out.append(r)
                b.close()
    finally:
        srv.shutdown()
        sys.path.remove(str(WEB))
    return out


NOTES = """\
- Both ports search exactly what the format stores: every live fp16 vector widened to float32 (Kotlin: bit moves
  on the ShortArray blocks, 2 bytes a value in memory; JS: Float32Array blocks, 4 bytes a value), one pass, a
  bounded heap of 24. Recall against the exact fp32 search is the cost of fp16 storage alone: the synthetic
  queries (a stored vector + noise) have one clear winner and 23 near-ties around cosine 0.04, where fp16's
  ~1e-4 rounding reorders neighbours; real photo embeddings are far less tied.
- Neither port reaches the goals (100k <= 20 ms, 1M <= 200 ms) in these runs, and these runs are provisional:
  the machine (2 cores) ran four helpers' jobs (load 5 to 7 in this run, 12 to 14 in an earlier one that measured
  2.6x slower), so one process got a fraction of its core (the min column is the least disturbed sample). Scalar code is the limit where the load is not: HotSpot C2 does not
  vectorize a float reduction and V8 does not vectorize at all. What would reach the goals, not done here: a
  dim-major layout inside each block so the inner loop is element-wise over rows (C2 vectorizes that with AVX2),
  or an int8 copy for a first pass re-scored in fp16 (1 byte a value); in the browser a WASM SIMD kernel
  (f32x4 / i16x8 dot) over the same blocks. A one-off kernel probe on the JVM (100k x 512, one core, load ~13,
  same run): dim-major float32 blocks 60 ms, dim-major int8 68-80 ms, dim-major fp16 with bit moves 120-186 ms
  (C2 does not vectorize the int->float reinterpretation), the row-major fp16 pass used here 96-119 ms.
- Linear time holds: 10x the photos costs ~10x (100k -> 1M) in both ports; memory stays what the vectors take
  (Kotlin appends in blocks, never copying the whole store)."""


def markdown(doc: dict) -> str:
    c = doc["cpu"]
    lines = [f"# Photo index search and append: Kotlin (JVM) and JS (headless Chromium) -- issue 21",
             "", f"CPU: {c['model']} ({c['cores']} cores; {' '.join(c['flags'])}); one core (taskset -c 0).",
             f"Load average before / after: {doc['loadavg_before']} / {doc['loadavg_after']}"
             + (" -- PROVISIONAL: the machine was shared and loaded (> 1.5)" if max(doc['loadavg_before'][0], doc['loadavg_after'][0]) > 1.5 else ""),
             f"Date: {doc['created']}. Command: `python benchmarks/app_index_search.py {doc['args']}`.", "",
             "## Search, top-24, 512-d (goal: 100k <= 20 ms, 1M <= 200 ms)", "",
             "| port | N | p50 ms | min ms | exact fp32 baseline p50 ms | recall@24 vs exact fp32 | storage |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for port, rows in (("Kotlin / JVM", doc["kotlin_search"]), ("JS / Chromium", doc["js_search"])):
        for r in rows:
            if "error" in r:
                lines.append(f"| {port} | {r['n']:,} | failed: {r['error']} | | | | |")
                continue
            f = lambda x, d=2: "-" if x is None else f"{x:.{d}f}"
            lines.append(f"| {port} | {r['n']:,} | {f(r['p50_ms'])} | {f(r['min_ms'])} | {f(r.get('baseline_p50_ms'))} | "
                         f"{f(r.get('recall_at_k_vs_exact_fp32'), 4)} | {r['storage']} |")
    a = doc.get("kotlin_append")
    if a:
        lines += ["", f"## Append (Kotlin, {a['n']:,} embeddings, batches of {a['batch']}, fsync per batch)", "",
                  f"- {a['seconds']:.1f} s, in a JVM capped at {a['max_heap_mb']:.0f} MB (vectors + 64 MB + 24 MB of JVM "
                  f"baseline; {' '.join(a['gc'])}): it finished. Heap before {a['heap_before_mb']:.1f} MB; live heap after GC "
                  f"(sampled every 40 batches) at most {a['live_after_gc_max_mb']:.1f} MB = vectors {a['vectors_mb']:.1f} MB + "
                  f"{a['live_growth_beyond_vectors_mb']:.1f} MB (goal: growth <= 64 MB beyond the vectors). The pools' peak "
                  f"including garbage not yet collected: {a['heap_peak_mb']:.1f} MB.",
                  f"- File {a['file_bytes']:,} bytes = {a['file_ratio_to_n_dim_2_plus_keys']:.4f} x (N x dim x 2 + keys) "
                  f"= {a['file_ratio_to_n_dim_2']:.4f} x (N x dim x 2) (goal <= 1.1 x N x dim x 2 + keys)."]
    lines += ["", "## Reading", "", NOTES, "", "Raw figures: app_index_search_kj.json.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--append", type=int, default=100000, help="embeddings appended (0: skip)")
    ap.add_argument("--queries", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-js", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    a = ap.parse_args(argv)
    sizes = [int(s) for s in a.sizes.split(",") if s]
    doc = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "args": " ".join(argv if argv is not None else sys.argv[1:]),
           "cpu": cpu(), "platform": platform.platform(), "loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    classes = compile_kotlin()
    doc["java"] = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    doc["kotlin_search"] = [java(classes, ["search", n, a.queries, a.rounds, 24], "3g" if n > 300_000 else "1500m") for n in sizes]
    if a.append:
        with tempfile.TemporaryDirectory() as d:
            # the heap capped at the vectors' bytes + 64 MB + 24 MB for the JVM's own baseline: finishing is the proof
            cap = a.append * 512 * 2 // (1 << 20) + 64 + 24
            doc["kotlin_append"] = java(classes, ["append", a.append, 256, d], f"{cap}m")
    doc["js_search"] = [] if a.no_js else js_search(sizes, a.queries, a.rounds, 24)
    doc["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "app_index_search_kj.json").write_text(json.dumps(doc, indent=1) + "\n")
    (a.out / "app_index_search_kj.md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
