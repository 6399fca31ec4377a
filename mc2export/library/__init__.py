"""Photo libraries: ``mc2export index`` embeds every photo of a library once, ``mc2export search`` finds them
with words or a photo. Format and Ray usage: ``docs/library.md``.

One run flows one way -- reader -> decoder -> model runner -> writer -- behind one distributor:

* :mod:`.sources`   -- the reader: folders, ``--files-from`` lists, WebDataset tars; what is new, changed, gone.
* :mod:`.decode`    -- the decoder: reduced-size JPEG decode + the exact preprocessing; hostile files refused.
* :mod:`.model`     -- the model runner: the bundle (``--bundle`` or the cached default), batched, via the
                       runtime layer of ``bench`` / ``verify``.
* :mod:`.store`     -- the writer and the library on disk: SQLite manifest + append-only fp16 shards,
                       crash-safe commits, tombstones, ``--compact``.
* :mod:`.local`     -- the local engine: a bounded decode pool overlapped with inference.
* :mod:`.ray_engine` -- the Ray Data engine: decode as CPU tasks, inference in an actor pool.
* :mod:`.indexer`   -- one run: scan, diff, tombstone, engine, summary (``stats.json``).
* :mod:`.progress`  -- photos/s, ETA, skipped; per-stage times.
* :mod:`.search`    -- exact search over memory-mapped shards; the faiss IVF index past 300k rows.
* :mod:`.sheet`     -- results as a table, JSON and a self-contained HTML contact sheet.
* :mod:`.commands`  -- the two CLI commands.

Nothing heavy is imported here.
"""
from __future__ import annotations
