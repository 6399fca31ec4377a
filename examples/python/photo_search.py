#!/usr/bin/env python3
"""Photo search by text over an embedding index, with an exported bundle (the apps' search screen).

    python examples/python/photo_search.py BUNDLE --photos FOLDER --query "a dog on a beach"
           [--index photos.npz] [--top-k 5] [--json]

Every image under FOLDER (jpg, jpeg, png, webp, bmp, heic when Pillow can read it) is embedded once by
the image tower and kept in the index file (default: FOLDER/.mc2export-index-<variant>-<runtime>.npz,
rebuilt for new or changed files); the query is embedded by the text tower and the photos are ranked by
cosine similarity.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mc2bundle import Bundle, BundleError  # noqa: E402

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".heic", ".heif", ".tif", ".tiff"}


def build_index(bundle: Bundle, folder: Path, index_path: Path, log=print):
    """(paths, [N, D] unit embeddings), reusing the embeddings of unchanged files from ``index_path``."""
    photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    if not photos:
        raise BundleError(f"no images found under '{folder}'")
    old = {}
    key = f"{bundle.config['variant']}|{bundle.runtime}|{bundle.config.get('precision')}"
    if index_path.is_file():
        try:
            z = np.load(index_path, allow_pickle=False)
            if str(z["model"]) == key:
                old = {(str(p), float(m)): e for p, m, e in zip(z["paths"], z["mtimes"], z["embeddings"])}
        except (OSError, ValueError, KeyError):
            old = {}
    paths, mtimes, embs, new = [], [], [], 0
    for p in photos:
        k = (str(p), p.stat().st_mtime)
        e = old.get(k)
        if e is None:
            try:
                e = bundle.encode_image(p)
            except BundleError as err:
                log(f"skipping {p}: {err}")
                continue
            new += 1
        paths.append(k[0])
        mtimes.append(k[1])
        embs.append(np.asarray(e, dtype=np.float32))
    if not embs:
        raise BundleError(f"none of the images under '{folder}' could be read")
    E = np.stack(embs)
    if new:
        tmp = index_path.with_name(index_path.name + ".tmp.npz")
        np.savez(tmp, model=np.array(key), paths=np.array(paths), mtimes=np.array(mtimes), embeddings=E)
        tmp.replace(index_path)
    log(f"index: {len(paths)} photos ({new} embedded now) in {index_path}")
    return paths, E


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--photos", required=True, type=Path, help="folder of images to search")
    ap.add_argument("--query", "-q", required=True, action="append", help="text query (repeatable)")
    ap.add_argument("--index", type=Path, default=None, help="index file (.npz)")
    ap.add_argument("--top-k", "-k", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        bundle = Bundle(args.bundle, threads=args.threads)
        if not args.photos.is_dir():
            raise BundleError(f"--photos '{args.photos}' is not a folder")
        index = args.index or args.photos / f".mc2export-index-{bundle.config['variant']}-{bundle.runtime}.npz"
        paths, E = build_index(bundle, args.photos, index, log=lambda s: print(s, file=sys.stderr))
        out = []
        for q in args.query:
            qe, truncated = bundle.encode_text(q)
            if truncated:
                print(f"warning: the query is longer than {bundle.tokenizer.context_length} tokens and was truncated",
                      file=sys.stderr)
            scores = E @ qe.astype(np.float32)
            order = np.argsort(-scores, kind="stable")[: args.top_k]
            out.append({"query": q, "hits": [{"path": paths[i], "score": float(scores[i])} for i in order]})
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"bundle": bundle.config["variant"], "runtime": bundle.runtime, "results": out}, indent=1))
        return 0
    for r in out:
        print(f"query: {r['query']}")
        for rank, h in enumerate(r["hits"], 1):
            print(f"  {rank:<3} {h['score']:+.4f}  {h['path']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
