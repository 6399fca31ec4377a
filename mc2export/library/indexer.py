"""One index run: scan the inputs, diff against the manifest, tombstone what is gone, hand the rest to an
engine (local or Ray), and write the summary into ``LIBRARY/stats.json``."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from ..errors import UserError
from .decode import DecodeConfig
from .progress import Progress
from .sources import plan, scan
from .store import Library


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS
        return max(1, os.cpu_count() or 1)


def index(inputs: Sequence[str], out: Path, *, files_from: Optional[Path] = None, bundle: Optional[Path] = None,
          variant: Optional[str] = None, checkpoint: Optional[Path] = None, runtime: Optional[str] = None,
          dtype: str = "fp16", exact_decode: bool = False, workers: Optional[int] = None,
          threads: Optional[int] = None, engine: str = "local", address: Optional[str] = None,
          max_pixels: Optional[int] = None, commit_every: int = 32, log=None,
          progress_every: Optional[float] = None) -> dict:
    """Index the photos of ``inputs`` into the library ``out``; returns the summary (also in stats.json)."""
    from .decode import MAX_ASPECT, MAX_PIXELS
    from .model import choose

    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    if engine not in ("local", "ray"):
        raise UserError(f"unknown --engine '{engine}': choose local or ray")
    if not inputs and files_from is None:
        raise UserError("nothing to index: pass folders of photos, image files, .tar shards or --files-from")
    t0 = time.perf_counter()
    found = scan(inputs, files_from, skip=out)
    lock = _lock(out)
    t_scan = time.perf_counter() - t0
    # the model is only resolved (and, the first time, exported) when there is a library to open or create
    existing = Library.exists(out)
    lib = Library.open(out) if existing else None
    known = lib.known() if lib is not None else {}
    todo = plan(found, known)
    threads = threads or default_threads()
    workers = default_threads() if workers is None else workers
    choice = None
    if todo.todo or lib is None:
        choice = choose(bundle, variant, checkpoint, runtime, log=log)
        if lib is None:
            lib = Library.open(out, choice.model(), dtype)
        else:
            lib.check_model(choice.model())
    elif bundle is not None or variant or checkpoint:  # nothing to run: only the model's identity is checked
        choice = choose(bundle, variant, checkpoint, runtime, log=log, verify=False)
        lib.check_model(choice.model())
    try:
        progress = Progress(len(todo.todo), every=progress_every)
        progress.add("scan", t_scan)
        deleted = lib.tombstone(todo.deleted) if todo.deleted else 0
        if todo.todo:
            dcfg = DecodeConfig(choice.preprocess, exact=exact_decode, max_pixels=max_pixels or MAX_PIXELS,
                                max_aspect=MAX_ASPECT)
            log(f"indexing {len(todo.todo)} photo(s) ({todo.new} new, {todo.changed} changed; {todo.unchanged} "
                f"unchanged) with {choice.description}; {engine} engine")
            if engine == "ray":
                from .ray_engine import run_ray

                run_ray(todo.todo, choice, lib, dcfg, progress, address=address, threads=threads,
                        group=commit_every)
            else:
                from .local import run_local

                run_local(todo.todo, choice, lib, dcfg, progress, workers=workers, threads=threads,
                          group=commit_every)
            progress.finish()
        counts = lib.counts()
        keys = {ph.key for ph in todo.todo}
        skipped_now = [(p, r) for p, _, _, _, _, _, r in lib.photos("skipped") if p in keys]
        wall = progress.seconds() + t_scan
        summary = {
            "library": str(out), "engine": engine if todo.todo else None,
            "model": lib.meta["model"], "variant": lib.meta["variant"], "checksum": lib.meta["checksum"],
            "found": len(found.photos), "indexed": progress.ok, "skipped": progress.skipped, "new": todo.new,
            "changed": todo.changed, "unchanged": todo.unchanged, "deleted": deleted,
            "seconds": round(wall, 3), "photos_per_s": round(progress.done / wall, 2) if wall > 0 else None,
            "stages_s": {k: round(v, 3) for k, v in progress.stages.items()},
            "exact_decode": bool(exact_decode), "workers": workers, "threads": threads,
            "library_counts": counts, "skipped_files": [{"path": p, "reason": r} for p, r in skipped_now[:1000]],
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        lib.write_stats(summary)
        return summary
    finally:
        lib.close()
        lock.close()


def _lock(out: Path):
    """One writer per library: an exclusive flock on LIBRARY/.lock for the whole run (released by the OS when
    the process dies, so a killed run never blocks the next one)."""
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    f = open(out / ".lock", "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise UserError(f"another mc2export run is writing the library '{out}': wait for it to finish") from None
    return f


def compact(out: Path) -> dict:
    if not Library.exists(out):
        raise UserError(f"'{out}' is not an mc2export library (no manifest.sqlite): nothing to compact")
    lock = _lock(out)
    lib = Library.open(out)
    try:
        return lib.compact()
    finally:
        lib.close()
        lock.close()


__all__ = ["index", "compact", "default_threads"]
