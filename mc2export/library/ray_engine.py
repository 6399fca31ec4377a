"""The Ray Data engine (``--engine ray``; ``pip install 'mc2export[ray]'``): reading and decoding run as
CPU tasks, inference in an actor pool that loads the bundle once per actor, and this process -- the
driver -- writes every batch into the library with the same :meth:`store.Library.commit` as the local
engine. Ray's ordered execution (``preserve_order``) keeps the rows in the photos' sorted order, so a
Ray run writes the library a local run writes; the manifest makes it resumable the same way.

On a cluster (``--address``), the photos, the bundle and the library's parent folder must be at the same
paths on every node (a shared file system), and mc2export installed in each node's Python.
"""
from __future__ import annotations

import time
from typing import Dict, Optional, Sequence

import numpy as np

from .. import signals
from ..errors import UserError
from .decode import DecodeConfig, decode_photo
from .model import Choice, Embedder
from .progress import Progress
from .sources import Photo
from .store import Item, Library

DECODE_BATCH = 4


def _decode(batch: Dict[str, np.ndarray], cfg: DecodeConfig) -> Dict[str, np.ndarray]:
    r = cfg.resolution
    n = len(batch["key"])
    px = np.zeros((n, r, r, 3), np.uint8)
    ok = np.zeros(n, bool)
    reason, t_read, t_dec = [], np.zeros(n), np.zeros(n)
    for i in range(n):
        tar = batch["tar"][i]
        ph = Photo(str(batch["key"][i]), int(batch["size"][i]), int(batch["mtime_ns"][i]),
                   tar=str(tar) if tar else None, offset=int(batch["offset"][i]))
        a, why, t_read[i], t_dec[i] = decode_photo(ph, cfg)
        if a is not None:
            px[i], ok[i] = a, True
        reason.append(why or "")
    return {"key": batch["key"], "size": batch["size"], "mtime_ns": batch["mtime_ns"], "pixels": px, "ok": ok,
            "reason": np.array(reason, dtype=object), "t_read": t_read, "t_decode": t_dec}


class _EmbedActor:
    """One per actor: the bundle is loaded once, then every batch that reaches this actor runs on it."""

    def __init__(self, bundle: str, runtime: str, threads: int):
        self.embed = Embedder(bundle, runtime, threads)

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        ok = batch["ok"]
        px = batch["pixels"]
        t0 = time.perf_counter()
        y = self.embed(px[ok]) if ok.any() else np.zeros((0, 1), np.float32)
        vec = np.zeros((len(ok), y.shape[1] if len(y) else 1), np.float32)
        if len(y):
            vec[ok] = y
        n = len(ok)
        out = {k: v for k, v in batch.items() if k != "pixels"}
        out["vector"] = vec
        out["t_infer"] = np.full(n, (time.perf_counter() - t0) / max(n, 1))
        return out


def run_ray(todo: Sequence[Photo], choice: Choice, lib: Library, dcfg: DecodeConfig, progress: Progress,
            address: Optional[str] = None, threads: int = 2, actors: int = 1, group: int = 32) -> None:
    try:
        import ray
        import ray.data
    except ImportError:
        raise UserError("--engine ray needs Ray Data: pip install 'mc2export[ray]'") from None
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(2, threads), include_dashboard=False, log_to_driver=False)
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        items = [{"key": p.key, "size": p.size, "mtime_ns": p.mtime_ns, "tar": p.tar or "", "offset": p.offset}
                 for p in todo]
        group = max(choice.batch, -(-group // choice.batch) * choice.batch)
        ds = ray.data.from_items(items, override_num_blocks=max(1, len(items) // (4 * group)) or 1)
        ds = ds.map_batches(_decode, batch_size=DECODE_BATCH, fn_kwargs={"cfg": dcfg}, num_cpus=1)
        ds = ds.map_batches(_EmbedActor, batch_size=group,
                            fn_constructor_kwargs={"bundle": str(choice.bundle), "runtime": choice.runtime,
                                                   "threads": threads},
                            compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1)
        for b in ds.iter_batches(batch_size=group, batch_format="numpy", prefetch_batches=1):
            signals.check()
            ok = b["ok"]
            items_ = [Item(str(k), int(s), int(m), b["vector"][i] if ok[i] else None, None if ok[i] else str(r))
                      for i, (k, s, m, r) in enumerate(zip(b["key"], b["size"], b["mtime_ns"], b["reason"]))]
            t0 = time.perf_counter()
            lib.commit(items_)
            progress.add("write", time.perf_counter() - t0)
            progress.add("read", float(b["t_read"].sum()))
            progress.add("decode", float(b["t_decode"].sum()))
            progress.add("infer", float(b["t_infer"].sum()))
            progress.update(ok=int(ok.sum()), skipped=int((~ok).sum()))
    finally:
        if started:
            ray.shutdown()


__all__ = ["run_ray"]
