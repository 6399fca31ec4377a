"""Which ANN library `mc2export search` uses: faiss IVF-SQfp16 vs usearch HNSW (f16) on synthetic clustered
512-d vectors (index_speed.synthetic), queries as far from the rows as text queries are; build time, p50 and
recall@20 against exact search.  pip install faiss-cpu usearch; python benchmarks/ann_choice.py [ROWS]"""
import sys, time, statistics, json, os
import numpy as np
sys.path.insert(0, "benchmarks")
from index_speed import synthetic
import faiss
from usearch.index import Index
n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
v16 = synthetic(n); v = v16.astype(np.float32)
rng = np.random.default_rng(1)
qs = v[rng.integers(0, n, 50)] + rng.normal(0, 0.05, (50, 512)).astype(np.float32)
qs /= np.linalg.norm(qs, axis=1, keepdims=True)
truth = [set(np.argpartition(-(v @ q), 19)[:20]) for q in qs]
out = {"rows": n, "loadavg": os.getloadavg()}
t0 = time.perf_counter()
nlist = int(np.sqrt(n))
ix = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(512), 512, nlist, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
ix.train(v[rng.choice(n, 40 * nlist, replace=False)]); ix.add(v)
out["faiss_build_s"] = time.perf_counter() - t0
for nprobe in (1, 2, 4, 8):
    ix.nprobe = nprobe
    ts, rec = [], []
    for q, tr in zip(qs, truth):
        t = time.perf_counter(); _, I = ix.search(q[None], 20); ts.append(time.perf_counter() - t)
        rec.append(len(set(I[0]) & tr) / 20)
    out[f"faiss_nprobe{nprobe}"] = {"p50_ms": 1e3 * statistics.median(ts), "recall": statistics.mean(rec)}
t0 = time.perf_counter()
u = Index(ndim=512, metric="ip", dtype="f16")
u.add(np.arange(n), v, threads=2)
out["usearch_build_s"] = time.perf_counter() - t0
ts, rec = [], []
for q, tr in zip(qs, truth):
    t = time.perf_counter(); m = u.search(q, 20); ts.append(time.perf_counter() - t)
    rec.append(len(set(m.keys.tolist()) & tr) / 20)
out["usearch"] = {"p50_ms": 1e3 * statistics.median(ts), "recall": statistics.mean(rec)}
print(json.dumps(out, indent=1))
