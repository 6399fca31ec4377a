"""CLI: ``mc2export index`` and ``mc2export search`` (registered by ``mc2export/cli.py``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import UserError


def register(app: typer.Typer, command) -> None:
    @command("index", interrupted="the library keeps every batch committed so far; run the same command again "
                                  "to go on")
    def index_cmd(inputs: List[str] = typer.Argument(None, help="Folders of photos (recursive), image files, or "
                                                     "WebDataset .tar shards."),
                  out: Path = typer.Option(..., "--out", "-o", help="The library folder (created on first use)."),
                  files_from: Optional[Path] = typer.Option(None, "--files-from", help="A file with one photo path "
                                                            "a line ('-': standard input)."),
                  bundle: Optional[Path] = typer.Option(None, "--bundle", "-b", help="An exported bundle with an "
                                                        "image tower (default: the fast path on this machine, "
                                                        "exported once into a cache; see docs/library.md)."),
                  variant: Optional[str] = typer.Option(None, "--variant", "-v", help="Default model: the variant "
                                                        "(default s0)."),
                  checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Default model: local weights "
                                                            "(default: the variant's pretrained weights)."),
                  runtime: Optional[str] = typer.Option(None, "--runtime", "-r", help="onnxruntime, openvino, "
                                                        "executorch, torch (default: the bundle's own)."),
                  engine: str = typer.Option("local", "--engine", help="local (a process pool here) or ray (Ray "
                                             "Data; needs the ray extra)."),
                  address: Optional[str] = typer.Option(None, "--address", help="Ray: the cluster to join "
                                                        "(ray://HOST:10001 or auto; default: a local instance)."),
                  dtype: str = typer.Option("fp16", "--dtype", help="Stored embeddings: fp16 or fp32 (new library "
                                            "only)."),
                  exact_decode: bool = typer.Option(False, "--exact-decode", help="Decode JPEGs at full size "
                                                    "(default: reduced DCT scale >= the model's resolution)."),
                  workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Decoding processes "
                                                        "(default: the CPUs; 0: decode inline)."),
                  threads: Optional[int] = typer.Option(None, "--threads", "-t", min=1, help="Inference threads "
                                                        "(default: the CPUs)."),
                  max_pixels: Optional[int] = typer.Option(None, "--max-pixels", min=1, help="Refuse images larger "
                                                           "than this (decompression bombs; default 200 M)."),
                  commit_every: int = typer.Option(32, "--commit-every", min=1, help="Photos per inference call "
                                                   "and manifest commit (what a killed run can lose)."),
                  compact: bool = typer.Option(False, "--compact", help="Rewrite the shards without tombstones and "
                                               "dead rows (atomically), then stop."),
                  build_ann: Optional[bool] = typer.Option(None, "--ann/--no-ann", help="Build the approximate "
                                                           "search index at the end (default: past 300k rows)."),
                  quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines.")):
        """Embed every photo under PATHs into a library (resumable, incremental); search it with `mc2export search`."""
        from .. import signals
        from ..outputs import output_dir
        from .indexer import compact as do_compact
        from .indexer import index

        out = output_dir(out, "--out")

        def log(msg: str) -> None:
            signals.check()
            if not quiet:
                typer.echo(msg, err=True)

        if compact:
            if inputs or files_from:
                raise UserError("--compact takes only --out: run it on its own")
            r = do_compact(out)
            typer.echo(f"compacted {out}: {r['rows_before']} -> {r['rows_after']} rows "
                       f"({r['dead_rows_dropped']} dead rows, {r['tombstones_dropped']} tombstones dropped)")
            return
        s = index(list(inputs or []), out, files_from=files_from, bundle=bundle, variant=variant,
                  checkpoint=checkpoint, runtime=runtime, dtype=dtype, exact_decode=exact_decode, workers=workers,
                  threads=threads, engine=engine, address=address, max_pixels=max_pixels,
                  commit_every=commit_every, log=log,
                  progress_every=1e9 if quiet else None)
        _maybe_ann(out, build_ann, log)
        for f in s["skipped_files"][:20]:
            typer.echo(f"skipped {f['path']}: {f['reason']}", err=True)
        if s["skipped"] > 20:
            typer.echo(f"... and {s['skipped'] - 20} more skipped (all in {out / 'stats.json'})", err=True)
        st = s["stages_s"]
        typer.echo(f"{s['indexed']} indexed, {s['skipped']} skipped, {s['unchanged']} unchanged, {s['deleted']} "
                   f"deleted; {s['seconds']:.1f} s, {s['photos_per_s'] or 0:.1f} photos/s; stages (s): "
                   + ", ".join(f"{k} {v:.1f}" for k, v in st.items())
                   + f"; library {out}: {s['library_counts']['ok']} photos (details: {out / 'stats.json'})")

    @command("search")
    def search_cmd(library: Path = typer.Argument(..., help="A library written by `mc2export index`."),
                   query: Optional[str] = typer.Argument(None, help='Words, e.g. "a dog on the beach".'),
                   image: Optional[Path] = typer.Option(None, "--image", help="Search with a photo instead of words."),
                   k: int = typer.Option(20, "-k", "--top-k", min=1, help="Results."),
                   json_out: Optional[Path] = typer.Option(None, "--json", help="Write the rows (best first) as JSON."),
                   html_out: Optional[Path] = typer.Option(None, "--html", help="Write a self-contained contact sheet."),
                   bundle: Optional[Path] = typer.Option(None, "--bundle", help="The library's bundle, if it moved."),
                   exact: Optional[bool] = typer.Option(None, "--exact/--ann", help="Force exact or approximate "
                                                        "search (default: approximate past 300k rows when built)."),
                   build: bool = typer.Option(False, "--build-ann", help="(Re)build the approximate index, then stop."),
                   threads: int = typer.Option(2, "--threads", "-t", min=1)):
        """Top-k photos of a library for words or a photo: table, --json rows, --html contact sheet."""
        from ..outputs import output_file, write_atomic
        from .search import QueryEncoder, build_ann, search
        from .sheet import contact_sheet, table, to_json
        from .store import Library

        json_out = output_file(json_out, "--json") if json_out is not None else None
        html_out = output_file(html_out, "--html") if html_out is not None else None
        lib = Library.open(library)
        try:
            if build:
                info = build_ann(lib, log=lambda s: typer.echo(s, err=True))
                typer.echo(json.dumps(info))
                return
            if (query is None) == (image is None):
                raise UserError('pass words ("a dog on the beach") or --image PHOTO, one of them')
            enc = QueryEncoder(lib, bundle, threads=threads)
            q = enc.text(query) if query is not None else enc.image(image)
            hits, method = search(lib, q, k, exact=exact)
            label = query if query is not None else f"photo {image}"
            typer.echo(table(hits))
            if json_out is not None:
                write_atomic(json_out, to_json(hits, label, method))
            if html_out is not None:
                write_atomic(html_out, contact_sheet(hits, label, method, str(library)))
                typer.echo(f"wrote {html_out}", err=True)
        finally:
            lib.close()


def _maybe_ann(out: Path, build: Optional[bool], log) -> None:
    from .search import ANN_ROWS, build_ann
    from .store import Library

    lib = Library.open(out)
    try:
        rows = lib.counts()["rows"]
        if build or (build is None and rows > ANN_ROWS):
            build_ann(lib, log=log)
    finally:
        lib.close()


__all__ = ["register"]
