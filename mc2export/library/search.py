"""Search a library: a query embedding (words through the bundle's text tower, or a photo through its image
tower) against the library's rows.

Exact by default: every shard is memory-mapped and scored in blocks (fp16 rows widened to fp32 a block at
a time, one matrix-vector product each), dead rows masked, top-k by ``argpartition``. Past
:data:`ANN_ROWS` rows, and when an ``ann.faiss`` covering every row exists (``mc2export index`` builds it
at the end of a run past that size, or ``mc2export search --build-ann``), the query goes to faiss'
IVF index instead (fp16 scalar-quantized, inner product), with ``nprobe`` chosen at build time: the
smallest reaching recall@20 >= 0.95 against exact search on 200 probes as far from the library as text
queries are (a row plus noise of the same norm), recorded in ``ann.json``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from ..errors import UserError
from .store import Library

BLOCK = 16384
ANN_ROWS = 300_000      # exact search over fp16 rows meets 100 ms up to about here on 2 cores (index_speed.md)
ANN_FILE, ANN_INFO = "ann.faiss", "ann.json"


@dataclass
class Hit:
    rank: int
    score: float
    path: str
    shard: int
    row: int


def exact_scores(lib: Library, q: np.ndarray, k: int) -> List[Tuple[float, int, int]]:
    """(score, shard, row) of the best ``k`` live rows, best first."""
    q = np.asarray(q, np.float32).reshape(-1)
    dead: dict = {}
    for s, r in lib.dead_rows():
        dead.setdefault(s, []).append(r)
    cand_s, cand_sid, cand_row = [], [], []
    for sid, m in lib.matrices():
        scores = np.empty(len(m), np.float32)
        for i in range(0, len(m), BLOCK):
            scores[i:i + BLOCK] = np.asarray(m[i:i + BLOCK], dtype=np.float32) @ q
        if sid in dead:
            scores[np.asarray(dead[sid], np.int64)] = -np.inf
        kk = min(k, len(scores))
        idx = np.argpartition(-scores, kk - 1)[:kk] if kk < len(scores) else np.arange(len(scores))
        cand_s.append(scores[idx])
        cand_sid.append(np.full(len(idx), sid, np.int64))
        cand_row.append(idx.astype(np.int64))
    if not cand_s:
        return []
    s, sid, row = np.concatenate(cand_s), np.concatenate(cand_sid), np.concatenate(cand_row)
    order = np.lexsort((row, sid, -s))[:k]  # ties: lower shard / row first (deterministic)
    return [(float(s[i]), int(sid[i]), int(row[i])) for i in order if np.isfinite(s[i])]


def _global_rows(lib: Library) -> List[Tuple[int, int]]:
    """(shard id, first global row) per shard: the ANN index numbers rows across shards."""
    out, base = [], 0
    for sid, rows in lib.shard_rows():
        out.append((sid, base))
        base += rows
    return out


def ann_fresh(lib: Library) -> bool:
    info = lib.path / ANN_INFO
    if not (lib.path / ANN_FILE).is_file() or not info.is_file():
        return False
    try:
        return json.loads(info.read_text())["rows"] == lib.counts()["rows"]
    except (ValueError, KeyError):
        return False


def build_ann(lib: Library, target_recall: float = 0.95, k: int = 20, log=lambda s: None) -> dict:
    """Train and fill the IVF index over every row; pick the smallest nprobe whose recall@k against exact
    search on 200 held-out rows reaches ``target_recall``; write ann.faiss + ann.json atomically."""
    try:
        import faiss
    except ImportError:
        raise UserError("the approximate index needs faiss: pip install 'mc2export[index]'") from None
    from ..outputs import write_atomic

    mats = [m for _, m in lib.matrices()]
    n = sum(len(m) for m in mats)
    if n < 1000:
        raise UserError(f"the library has {n} rows: exact search is fast at this size, no approximate index needed")
    d = lib.dim
    nlist = int(min(max(64, np.sqrt(n)), n // 39))  # k-means cost grows with nlist x the training sample
    rng = np.random.default_rng(0)
    allrows = np.concatenate([np.asarray(m, np.float32) for m in mats]) if n <= 2_000_000 else None
    if allrows is None:
        raise UserError("libraries past 2 M rows: build the index in parts (not supported yet)")
    train = allrows[rng.choice(n, min(n, 40 * nlist), replace=False)]
    t0 = time.perf_counter()
    quant = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFScalarQuantizer(quant, d, nlist, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    index.train(train)
    index.add(allrows)
    t_build = time.perf_counter() - t0
    dead = _dead_global(lib)
    # probes like real queries: far from every row (a text query's best cosine is ~0.3), near a held-out row
    probe = allrows[rng.choice(n, 200, replace=False)] + rng.normal(0, 1 / np.sqrt(d), (200, d)).astype(np.float32)
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    truth = np.empty((len(probe), k), np.int64)
    for i in range(0, len(probe), 20):  # 20 queries at a time: 20 x n scores, not 200 x n
        sc = probe[i:i + 20] @ allrows.T
        truth[i:i + 20] = np.argpartition(-sc, k - 1, axis=1)[:, :k]
    chosen, recall = None, 0.0
    for nprobe in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        if nprobe > nlist:
            break
        index.nprobe = nprobe
        _, got = index.search(probe, k)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(got, truth)]))
        chosen = nprobe
        if recall >= target_recall:
            break
    index.nprobe = chosen
    data = faiss.serialize_index(index).tobytes()
    info = {"rows": n, "nlist": nlist, "nprobe": chosen, "recall_at_k": round(recall, 4), "k": k,
            "build_s": round(t_build, 2), "dead_rows": len(dead), "kind": "IVF-SQfp16, inner product"}
    write_atomic(lib.path / ANN_FILE, data)
    write_atomic(lib.path / ANN_INFO, json.dumps(info, indent=2) + "\n")
    log(f"approximate index: {n} rows, nlist {nlist}, nprobe {chosen}, recall@{k} {recall:.3f}, "
        f"built in {t_build:.1f} s")
    return info


def _dead_global(lib: Library) -> set:
    base = dict(_global_rows(lib))
    return {base[s] + r for s, r in lib.dead_rows()}


def ann_scores(lib: Library, q: np.ndarray, k: int) -> List[Tuple[float, int, int]]:
    import faiss

    index = _read_index(faiss, lib.path / ANN_FILE)
    index.nprobe = int(json.loads((lib.path / ANN_INFO).read_text())["nprobe"])
    dead = _dead_global(lib)
    bases = _global_rows(lib)
    starts = np.array([b for _, b in bases])
    want = k + len(dead)
    s, ids = index.search(np.asarray(q, np.float32).reshape(1, -1), want)
    out = []
    for score, g in zip(s[0], ids[0]):
        if g < 0 or int(g) in dead:
            continue
        i = int(np.searchsorted(starts, g, side="right") - 1)
        out.append((float(score), bases[i][0], int(g - bases[i][1])))
        if len(out) == k:
            break
    return out


def _read_index(faiss, path: Path):
    """The index with its inverted lists memory-mapped (no copy of a 1 GB index per query), where faiss can."""
    for flag in ("IO_FLAG_MMAP_IFC", "IO_FLAG_MMAP"):
        if hasattr(faiss, flag):
            try:
                return faiss.read_index(str(path), getattr(faiss, flag) | faiss.IO_FLAG_READ_ONLY)
            except RuntimeError:
                continue
    return faiss.read_index(str(path))


def search(lib: Library, q: np.ndarray, k: int = 20, exact: Optional[bool] = None) -> Tuple[List[Hit], str]:
    """Top-``k`` live photos for the query vector, and the method used ("exact" / "ann")."""
    fresh = ann_fresh(lib)
    if exact is False and not fresh:
        raise UserError("no up-to-date approximate index in this library: build it with "
                        f"`mc2export search '{lib.path}' --build-ann`")
    use_ann = exact is False or (exact is None and fresh and lib.counts()["rows"] > ANN_ROWS)
    rows = ann_scores(lib, q, k) if use_ann else exact_scores(lib, q, k)
    paths = lib.at([(s, r) for _, s, r in rows])
    hits = [Hit(i + 1, sc, p, s, r) for i, ((sc, s, r), p) in enumerate(zip(rows, paths)) if p is not None]
    return hits, "ann" if use_ann else "exact"


class QueryEncoder:
    """Embeds search queries with the library's own bundle (text tower for words, image tower for photos)."""

    def __init__(self, lib: Library, bundle: Optional[Path] = None, runtime: Optional[str] = None,
                 threads: int = 2):
        from ..bench.bundles import DEFAULT_RUNTIME, load_bundle

        path = Path(bundle or lib.meta.get("bundle") or "")
        if not (path / "config.json").is_file():
            raise UserError(f"the bundle that indexed '{lib.path}' is gone ('{path}'): pass it with --bundle")
        b = load_bundle(path, verify=False)
        if b.checksum != lib.meta["checksum"]:
            raise UserError(f"bundle '{path}' is not the one that indexed '{lib.path}' (checksum {b.checksum[:12]} "
                            f"!= {lib.meta['checksum'][:12]}): pass the library's own bundle")
        self.bundle = b
        self.runtime = runtime or DEFAULT_RUNTIME.get(b.format, "onnxruntime")
        self.threads = threads

    def text(self, words: str) -> np.ndarray:
        from ..bench.runtimes import load
        from ..tokenizer import tokenize

        if "text" not in self.bundle.towers:
            raise UserError(f"bundle '{self.bundle.path}' has no text tower: search it with --image, or index with "
                            "a bundle exported with --towers image,text")
        m = load(self.runtime, self.bundle, "text", self.threads)
        batch = int(self.bundle.config.get("batch") or 1)
        ctx = int(self.bundle.config.get("context_length") or 77)
        tok = tokenize([words] * batch, context_length=ctx).numpy().astype(np.int32)
        return _unit(np.asarray(m.run(tok), np.float32).reshape(batch, -1)[0])

    def image(self, path: Path) -> np.ndarray:
        from .decode import DecodeConfig, Unreadable, model_input
        from .model import Embedder

        try:
            px = model_input(Path(path).read_bytes(), DecodeConfig(dict(self.bundle.config["preprocess"]), exact=True))
        except OSError as e:
            raise UserError(f"cannot read --image '{path}': {e.strerror or e}") from None
        except Unreadable as e:
            raise UserError(f"cannot read --image '{path}': {e}") from None
        return _unit(Embedder(self.bundle.path, self.runtime, self.threads)(px[None])[0])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


__all__ = ["Hit", "search", "exact_scores", "ann_scores", "build_ann", "ann_fresh", "QueryEncoder", "ANN_ROWS"]
