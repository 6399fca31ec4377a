"""The library on disk: a SQLite manifest and append-only shard files of embedding rows.

::

    LIBRARY/
      manifest.sqlite        photos (path, size, mtime, status, shard, row, reason), meta, shard row counts
      shards-<gen>/000000.f16  rows of ``dim`` fp16 (or .f32) values, appended, never rewritten
      stats.json             the last run's counts and per-stage times
      ann.faiss              the approximate index (only past the exact-search size, see search.py)

Crash safety, the one rule: a batch's rows are written to the shard and fsynced *before* the manifest
transaction that points at them commits. The manifest's ``shards.rows`` is therefore the truth; rows
beyond it (a run killed between the fsync and the commit) are cut off when the library is opened, and
the next run appends the same photos again at the same place. A photo that changed or was deleted keeps
its old row in the shard (listed in ``dead``) until ``--compact``, which writes a new shard generation
and a new manifest and switches by one ``rename`` of the manifest.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import UserError

FORMAT = "mc2export-library"
VERSION = 1
MANIFEST = "manifest.sqlite"
SHARD_ROWS = 65536          # 64 MiB of fp16 x 512 per shard: memory-maps cheaply, few files at 1M photos
DTYPES = {"fp16": np.float16, "fp32": np.float32}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS photos(
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    status TEXT NOT NULL,            -- ok | skipped | deleted
    shard INTEGER, row INTEGER,      -- where its embedding is (ok only)
    reason TEXT);                    -- why it was skipped (one line)
CREATE INDEX IF NOT EXISTS photos_loc ON photos(shard, row);
CREATE TABLE IF NOT EXISTS shards(id INTEGER PRIMARY KEY, rows INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead(shard INTEGER NOT NULL, row INTEGER NOT NULL, PRIMARY KEY(shard, row));
"""


class DiskFull(UserError):
    """The disk filled up while writing: the batch was rolled back, everything committed before is intact."""


@dataclass(frozen=True)
class Model:
    """What made the embeddings: a library holds one embedding space only."""
    variant: str
    checksum: str        # the bundle's checksum (bench.bundles.bundle_checksum)
    dim: int
    description: str     # e.g. "onnx fp32 batch 1 bundle /path"
    bundle: str = ""     # where the bundle was (search embeds its queries with the same bundle)


@dataclass
class Item:
    """One photo of a batch to record: ``vector`` None means skipped for ``reason``."""
    path: str
    size: int
    mtime_ns: int
    vector: Optional[np.ndarray] = None
    reason: Optional[str] = None


def _full(e: BaseException) -> bool:
    return (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or \
        (isinstance(e, sqlite3.OperationalError) and "full" in str(e).lower())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Library:
    """An open library: ``Library.open(path)`` for an existing one, ``Library.open(path, model)`` to create it if
    missing; every write goes through :meth:`commit` / :meth:`tombstone` / :meth:`compact`."""

    def __init__(self, path: Path, db: sqlite3.Connection):
        self.path = path
        self.db = db
        self.meta = dict(db.execute("SELECT key, value FROM meta"))
        self.dim = int(self.meta["dim"])
        self.dtype = np.dtype(DTYPES[self.meta["dtype"]])
        self.row_bytes = self.dim * self.dtype.itemsize
        self.shard_dir = path / self.meta["shard_dir"]
        self.ext = "." + self.meta["dtype"]
        self._repair()

    # -- opening ------------------------------------------------------------------------------------------

    @staticmethod
    def exists(path) -> bool:
        return (Path(path) / MANIFEST).is_file()

    @classmethod
    def open(cls, path, model: Optional[Model] = None, dtype: str = "fp16") -> "Library":
        """Open the library at ``path``; with ``model`` it is created when missing and must match otherwise
        (another model is refused with one line: a library never mixes embedding spaces)."""
        path = Path(path)
        manifest = path / MANIFEST
        if not manifest.is_file():
            if model is None:
                raise UserError(f"'{path}' is not an mc2export library (no {MANIFEST}): create it with "
                                f"`mc2export index PHOTOS --out '{path}'`")
            if path.exists() and any(p for p in path.iterdir() if not p.name.startswith(".")):
                raise UserError(f"--out '{path}' exists and is not an mc2export library: choose an empty or new "
                                "folder")
            return cls._create(path, model, dtype)
        db = cls._connect(manifest)
        lib = cls(path, db)
        if lib.meta.get("format") != FORMAT:
            raise UserError(f"'{path}' is not an mc2export library (manifest format {lib.meta.get('format')!r})")
        if int(lib.meta.get("version", 0)) > VERSION:
            raise UserError(f"library '{path}' was written by a newer mc2export (format {lib.meta['version']}): "
                            "upgrade mc2export")
        if model is not None:
            lib.check_model(model)
        return lib

    @staticmethod
    def _connect(manifest: Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(manifest), isolation_level=None, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    @classmethod
    def _create(cls, path: Path, model: Model, dtype: str) -> "Library":
        if dtype not in DTYPES:
            raise UserError(f"unknown --dtype '{dtype}': choose fp16 or fp32")
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / f".{MANIFEST}.new-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        db = sqlite3.connect(str(tmp), isolation_level=None)
        db.executescript(_SCHEMA)
        meta = {"format": FORMAT, "version": str(VERSION), "variant": model.variant, "checksum": model.checksum,
                "dim": str(model.dim), "dtype": dtype, "model": model.description, "bundle": model.bundle,
                "normalized": "1",
                "shard_dir": "shards-0", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
        db.close()
        (path / "shards-0").mkdir(exist_ok=True)
        os.replace(tmp, path / MANIFEST)  # the library exists from here on, complete
        _fsync_dir(path)
        return cls(path, cls._connect(path / MANIFEST))

    def check_model(self, model: Model) -> None:
        m = self.meta
        if m["variant"] != model.variant or m["checksum"] != model.checksum or int(m["dim"]) != model.dim:
            raise UserError(f"library '{self.path}' holds embeddings of another model ({m['variant']}, "
                            f"bundle {m['checksum'][:12]}: {m['model']}); this run uses {model.variant}, bundle "
                            f"{model.checksum[:12]}: index with that bundle, or into a new --out (one library, "
                            "one embedding space)")

    def _repair(self) -> None:
        """Cut shard rows no commit points at (a run killed between fsync and commit) and remove shard
        generations and temporaries a killed ``--compact`` left."""
        committed = dict(self.db.execute("SELECT id, rows FROM shards"))
        self.shard_dir.mkdir(exist_ok=True)
        for f in self.shard_dir.iterdir():
            sid = int(f.stem) if f.stem.isdigit() and f.suffix == self.ext else None
            if sid is None or sid not in committed:
                f.unlink()
                continue
            want = committed[sid] * self.row_bytes
            if f.stat().st_size != want:
                with open(f, "r+b") as fh:
                    fh.truncate(want)
                    os.fsync(fh.fileno())
        for p in self.path.iterdir():
            if (p.name.startswith("shards-") and p != self.shard_dir) or p.name.startswith(f".{MANIFEST}.new-"):
                shutil.rmtree(p) if p.is_dir() else p.unlink()

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- reading ------------------------------------------------------------------------------------------

    def known(self) -> Dict[str, Tuple[int, int, str]]:
        """path -> (size, mtime_ns, status) of every photo the manifest knows."""
        return {p: (s, m, st) for p, s, m, st in self.db.execute("SELECT path, size, mtime_ns, status FROM photos")}

    def counts(self) -> Dict[str, int]:
        out = {"ok": 0, "skipped": 0, "deleted": 0}
        out.update(dict(self.db.execute("SELECT status, COUNT(*) FROM photos GROUP BY status")))
        out["rows"] = sum(r for (r,) in self.db.execute("SELECT rows FROM shards"))
        out["dead_rows"] = self.db.execute("SELECT COUNT(*) FROM dead").fetchone()[0]
        return out

    def shard_rows(self) -> List[Tuple[int, int]]:
        return list(self.db.execute("SELECT id, rows FROM shards ORDER BY id"))

    def shard_file(self, sid: int) -> Path:
        return self.shard_dir / f"{sid:06d}{self.ext}"

    def matrices(self) -> Iterator[Tuple[int, np.ndarray]]:
        """(shard id, memory-mapped ``[rows, dim]`` array) of every shard with rows, committed rows only."""
        for sid, rows in self.shard_rows():
            if rows:
                yield sid, np.memmap(self.shard_file(sid), dtype=self.dtype, mode="r", shape=(rows, self.dim))

    def dead_rows(self) -> List[Tuple[int, int]]:
        return list(self.db.execute("SELECT shard, row FROM dead"))

    def at(self, locs: Sequence[Tuple[int, int]]) -> List[Optional[str]]:
        """The live photo at each (shard, row), None for a dead row."""
        out = []
        for sid, row in locs:
            r = self.db.execute("SELECT path FROM photos WHERE shard=? AND row=? AND status='ok'",
                                (int(sid), int(row))).fetchone()
            out.append(r[0] if r else None)
        return out

    def photos(self, status: Optional[str] = None) -> List[tuple]:
        q = "SELECT path, size, mtime_ns, status, shard, row, reason FROM photos"
        return list(self.db.execute(q + (" WHERE status=?" if status else "") + " ORDER BY path",
                                    (status,) if status else ()))

    def vector(self, sid: int, row: int) -> np.ndarray:
        with open(self.shard_file(sid), "rb") as f:
            f.seek(row * self.row_bytes)
            return np.frombuffer(f.read(self.row_bytes), dtype=self.dtype).copy()

    # -- writing ------------------------------------------------------------------------------------------

    def commit(self, items: Sequence[Item]) -> None:
        """Record one batch: vectors appended and fsynced, then one manifest transaction. On a full disk the
        batch is undone (``DiskFull``); what was committed before stays."""
        vecs = [it for it in items if it.vector is not None]
        placed: List[Tuple[int, int]] = []
        touched: Dict[int, int] = {}
        before = dict(self.db.execute("SELECT id, rows FROM shards"))
        try:
            sid, rows = self._tail(before)
            i = 0
            while i < len(vecs):
                take = min(len(vecs) - i, SHARD_ROWS - rows)
                if take == 0:
                    sid, rows = sid + 1, 0
                    continue
                block = np.stack([v.vector for v in vecs[i:i + take]]).astype(self.dtype, copy=False)
                if block.shape[1] != self.dim:
                    raise UserError(f"the model gives {block.shape[1]}-d embeddings, the library holds {self.dim}-d")
                touched[sid] = rows  # before the write: a failed write is cut back to what was committed
                self._append(sid, rows, block)
                placed += [(sid, rows + j) for j in range(take)]
                rows += take
                touched[sid] = rows
                i += take
            self._record(items, placed, touched)
        except BaseException as e:
            self._undo(before, touched)
            if _full(e):
                raise DiskFull(f"the disk is full ({e}): stopped; the library '{self.path}' is intact up to the last "
                               "committed batch: free space and run the same command again to go on") from None
            raise

    def _tail(self, committed: Dict[int, int]) -> Tuple[int, int]:
        if not committed:
            return 0, 0
        sid = max(committed)
        return sid, committed[sid]

    def _append(self, sid: int, rows: int, block: np.ndarray) -> None:
        f = self.shard_file(sid)
        fd = os.open(f, os.O_WRONLY | os.O_CREAT, 0o666)
        try:
            os.ftruncate(fd, rows * self.row_bytes)  # rows of a batch that failed before its commit go
            data = memoryview(np.ascontiguousarray(block)).cast("B")
            off = rows * self.row_bytes
            while data:
                n = os.pwrite(fd, data, off)
                data, off = data[n:], off + n
            os.fsync(fd)
        finally:
            os.close(fd)
        if rows == 0:
            _fsync_dir(self.shard_dir)

    def _record(self, items: Sequence[Item], placed: List[Tuple[int, int]], touched: Dict[int, int]) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            k = 0
            for it in items:
                old = db.execute("SELECT shard, row FROM photos WHERE path=? AND status='ok'", (it.path,)).fetchone()
                if old is not None:
                    db.execute("INSERT OR IGNORE INTO dead VALUES (?, ?)", old)
                if it.vector is not None:
                    sid, row = placed[k]
                    k += 1
                    db.execute("INSERT OR REPLACE INTO photos VALUES (?, ?, ?, 'ok', ?, ?, NULL)",
                               (it.path, it.size, it.mtime_ns, sid, row))
                else:
                    db.execute("INSERT OR REPLACE INTO photos VALUES (?, ?, ?, 'skipped', NULL, NULL, ?)",
                               (it.path, it.size, it.mtime_ns, it.reason))
            for sid, rows in touched.items():
                db.execute("INSERT OR REPLACE INTO shards VALUES (?, ?)", (sid, rows))
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def _undo(self, before: Dict[int, int], touched: Dict[int, int]) -> None:
        for sid in touched:
            with contextlib.suppress(OSError):
                os.truncate(self.shard_file(sid), before.get(sid, 0) * self.row_bytes)

    def tombstone(self, paths: Iterable[str]) -> int:
        """Mark photos deleted (their rows become dead); one transaction."""
        db = self.db
        n = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for p in paths:
                old = db.execute("SELECT shard, row, status FROM photos WHERE path=?", (p,)).fetchone()
                if old is None or old[2] == "deleted":
                    continue
                if old[2] == "ok":
                    db.execute("INSERT OR IGNORE INTO dead VALUES (?, ?)", old[:2])
                db.execute("UPDATE photos SET status='deleted', shard=NULL, row=NULL, reason=NULL WHERE path=?", (p,))
                n += 1
            db.execute("COMMIT")
        except BaseException as e:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            if _full(e):
                raise DiskFull(f"the disk is full ({e}): the deletions were not recorded; free space and rerun") from None
            raise
        return n

    def compact(self) -> Dict[str, int]:
        """Rewrite the shards without dead rows and drop the tombstones, atomically: the new shard generation
        and manifest are written beside the old ones and switched by renaming the manifest."""
        gen = int(self.meta["shard_dir"].split("-")[1]) + 1
        new_dir = self.path / f"shards-{gen}"
        if new_dir.exists():
            shutil.rmtree(new_dir)
        new_dir.mkdir()
        tmp = self.path / f".{MANIFEST}.new-{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        live = list(self.db.execute("SELECT path, size, mtime_ns, shard, row FROM photos WHERE status='ok' "
                                    "ORDER BY shard, row"))
        skipped = list(self.db.execute("SELECT path, size, mtime_ns, reason FROM photos WHERE status='skipped'"))
        before = self.counts()
        out = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            out.executescript(_SCHEMA)
            meta = dict(self.meta, shard_dir=new_dir.name)
            out.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            out.execute("BEGIN")
            maps = {sid: m for sid, m in self.matrices()}
            sid = row = 0
            fh = None
            for i in range(0, len(live), 4096):
                chunk = live[i:i + 4096]
                block = np.stack([maps[s][r] for _, _, _, s, r in chunk])
                j = 0
                while j < len(chunk):
                    if fh is None:
                        fh = open(new_dir / f"{sid:06d}{self.ext}", "wb")
                    take = min(len(chunk) - j, SHARD_ROWS - row)
                    fh.write(np.ascontiguousarray(block[j:j + take]).tobytes())
                    out.executemany("INSERT INTO photos VALUES (?, ?, ?, 'ok', ?, ?, NULL)",
                                    [(p, s, m, sid, row + q) for q, (p, s, m, _, _) in enumerate(chunk[j:j + take])])
                    row += take
                    j += take
                    out.execute("INSERT OR REPLACE INTO shards VALUES (?, ?)", (sid, row))
                    if row == SHARD_ROWS:
                        fh.flush()
                        os.fsync(fh.fileno())
                        fh.close()
                        fh, sid, row = None, sid + 1, 0
            if fh is not None:
                fh.flush()
                os.fsync(fh.fileno())
                fh.close()
            out.executemany("INSERT INTO photos VALUES (?, ?, ?, 'skipped', NULL, NULL, ?)", skipped)
            out.execute("COMMIT")
        finally:
            out.close()
        _fsync_dir(new_dir)
        # the switch: the old manifest's WAL is folded in and removed first, so no stale WAL meets the new file
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()
        old_dir = self.shard_dir
        os.replace(tmp, self.path / MANIFEST)
        _fsync_dir(self.path)
        shutil.rmtree(old_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.path / "ann.faiss").unlink()
        self.__init__(self.path, self._connect(self.path / MANIFEST))
        after = self.counts()
        return {"rows_before": before["rows"], "rows_after": after["rows"],
                "tombstones_dropped": before["deleted"], "dead_rows_dropped": before["dead_rows"]}

    def write_stats(self, stats: dict) -> None:
        from ..outputs import write_atomic

        write_atomic(self.path / "stats.json", json.dumps(stats, indent=2, sort_keys=True) + "\n")


__all__ = ["Library", "Model", "Item", "DiskFull", "FORMAT", "MANIFEST", "SHARD_ROWS", "DTYPES"]
