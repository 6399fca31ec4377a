"""The local engine: decoding in a bounded pool of worker processes, overlapped with inference in this
process, and the writer committing each batch (:meth:`store.Library.commit`).

The pool is started before the model loads (its workers are forked without the runtime's threads) and
ignores SIGINT (the command's handler stops the run; the workers go with the pool). At most
``2 * workers + 2`` chunks are in flight, so memory stays bounded whatever the library's size, and the
results are taken in submission order: rows are appended in the sorted order of the photos.
"""
from __future__ import annotations

import multiprocessing as mp
import signal
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from typing import List, Sequence

import numpy as np

from .. import signals
from .decode import DecodeConfig, decode_chunk
from .model import Choice, Embedder
from .progress import Progress
from .sources import Photo
from .store import Item, Library

CHUNK = 4            # photos per worker task: one IPC round trip for several photos
INFER_MIN = 32       # photos per inference call and commit (rounded up to the bundle's batch)


def _quiet_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command's handler stops the run
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # forked with the command's handler, which only fits it
    _die_with_parent()
    from .decode import _register_heif

    _register_heif()


def _die_with_parent() -> None:
    """A worker outlives a SIGKILLed parent otherwise: forked siblings hold the task pipe open, so it never
    sees EOF. Linux: PR_SET_PDEATHSIG; elsewhere the workers end when their next task read fails."""
    import ctypes
    import os

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(0)
    except (OSError, AttributeError):
        pass


class Writer:
    """Collects decoded photos in order, runs the model on full batches and commits them."""

    def __init__(self, lib: Library, embed, progress: Progress, batch: int, group: int = INFER_MIN):
        self.lib, self.embed, self.progress = lib, embed, progress
        self.group = max(batch, -(-group // batch) * batch)
        self.pending: List[tuple] = []   # (photo, pixels or None, reason)
        self.ready = 0

    def add(self, photo: Photo, pixels, reason) -> None:
        self.pending.append((photo, pixels, reason))
        self.ready += pixels is not None
        if self.ready >= self.group or len(self.pending) >= 4 * self.group:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        signals.check()
        ok = [i for i, (_, px, _) in enumerate(self.pending) if px is not None]
        vecs = {}
        if ok:
            t0 = time.perf_counter()
            y = self.embed(np.stack([self.pending[i][1] for i in ok]))
            self.progress.add("infer", time.perf_counter() - t0)
            vecs = dict(zip(ok, y))
        items = [Item(ph.key, ph.size, ph.mtime_ns, vecs.get(i), reason)
                 for i, (ph, _, reason) in enumerate(self.pending)]
        t0 = time.perf_counter()
        self.lib.commit(items)
        self.progress.add("write", time.perf_counter() - t0)
        self.progress.update(ok=len(ok), skipped=len(items) - len(ok))
        self.pending, self.ready = [], 0


def run_local(todo: Sequence[Photo], choice: Choice, lib: Library, dcfg: DecodeConfig, progress: Progress,
              workers: int, threads: int, group: int = INFER_MIN) -> None:
    """Index ``todo`` into ``lib``."""
    chunks = [list(todo[i:i + CHUNK]) for i in range(0, len(todo), CHUNK)]
    if workers <= 0:  # inline decoding (debugging, or a machine with one core)
        writer = Writer(lib, Embedder(choice.bundle, choice.runtime, threads), progress, choice.batch, group)
        for c in chunks:
            signals.check()
            _take(c, decode_chunk(c, dcfg), writer, progress)
        writer.flush()
        return
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=_quiet_worker)
    try:
        writer = Writer(lib, Embedder(choice.bundle, choice.runtime, threads), progress, choice.batch, group)
        window: deque = deque()
        feed = iter(chunks)

        def fill() -> None:
            while len(window) < 2 * workers + 2:
                c = next(feed, None)
                if c is None:
                    return
                window.append((c, pool.submit(decode_chunk, c, dcfg)))

        fill()
        while window:
            c, fut = window.popleft()
            t0 = time.perf_counter()
            res = fut.result()
            progress.add("decode_wait", time.perf_counter() - t0)
            fill()
            _take(c, res, writer, progress)
        writer.flush()
    finally:
        # wait for the workers (at most their chunks in flight): forked, they hold the library lock's
        # descriptor, and a run that returned must not leave the next run locked out
        pool.shutdown(wait=True, cancel_futures=True)


def _take(chunk, results, writer: Writer, progress: Progress) -> None:
    for ph, (px, reason, t_read, t_dec) in zip(chunk, results):
        progress.add("read", t_read)
        progress.add("decode", t_dec)
        writer.add(ph, px, reason)


__all__ = ["run_local", "Writer", "CHUNK"]
