"""The reader: which photos the inputs hold, and which of them the library still needs.

Inputs are folders (walked recursively; hidden files and folders skipped), ``--files-from`` lists (one
path a line) and WebDataset-style ``.tar`` files (uncompressed: members are read in place by offset).
A photo's key is its absolute path; a tar member's is ``/abs/shard.tar::member``. Keys are processed in
sorted order, so every run -- interrupted, resumed, or on Ray -- appends rows in the same order.
"""
from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import UserError

EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".tif", ".tiff", ".heic", ".heif",
              ".hif", ".bmp"}
TAR_SEP = "::"


@dataclass(frozen=True)
class Photo:
    key: str                 # absolute path, or tar path + '::' + member name
    size: int
    mtime_ns: int
    tar: Optional[str] = None
    offset: int = 0          # of the member's data inside the tar


@dataclass
class Scan:
    photos: List[Photo]
    roots: List[str]         # key prefixes the inputs cover completely: what is missing under them was deleted
    listed_missing: List[str]  # --files-from entries that do not exist (deleted if the library has them)


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in EXTENSIONS


def _walk(root: Path, skip: Optional[Path], out: List[Photo]) -> None:
    stack = [str(root)]
    while stack:
        d = stack.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir(follow_symlinks=False):
                    if skip is None or os.path.abspath(e.path) != str(skip):
                        stack.append(e.path)
                elif e.is_file() and is_image_name(e.name):
                    st = e.stat()
                    out.append(Photo(os.path.abspath(e.path), st.st_size, st.st_mtime_ns))
            except OSError:
                continue


def _tar(path: Path, out: List[Photo]) -> None:
    key = os.path.abspath(path)
    try:
        with tarfile.open(path, "r:") as tf:
            for m in tf:
                if m.isfile() and is_image_name(m.name):
                    out.append(Photo(key + TAR_SEP + m.name, m.size, int(m.mtime * 1e9), tar=key,
                                     offset=m.offset_data))
    except tarfile.ReadError as e:
        raise UserError(f"cannot read '{path}' as an uncompressed tar ({e}): WebDataset shards must be plain .tar "
                        "files (decompress .tar.gz first)") from None


def scan(inputs: Sequence[str], files_from: Optional[Path] = None, skip: Optional[Path] = None) -> Scan:
    """Every photo of the inputs, sorted by key; ``skip`` (the library folder) is never entered."""
    photos: List[Photo] = []
    roots: List[str] = []
    missing: List[str] = []
    skip = Path(os.path.abspath(skip)) if skip is not None else None
    for raw in inputs:
        p = Path(raw).expanduser()
        if p.is_dir():
            _walk(p, skip, photos)
            roots.append(os.path.join(os.path.abspath(p), ""))
        elif p.is_file() and p.suffix.lower() == ".tar":
            _tar(p, photos)
            roots.append(os.path.abspath(p) + TAR_SEP)
        elif p.is_file():
            st = p.stat()
            photos.append(Photo(os.path.abspath(p), st.st_size, st.st_mtime_ns))
        else:
            raise UserError(f"input not found: '{raw}': pass folders of photos, image files or .tar shards")
    if files_from is not None:
        for line in _lines(files_from):
            p = Path(line).expanduser()
            try:
                st = p.stat()
            except OSError:
                missing.append(os.path.abspath(p))
                continue
            if p.is_file():
                photos.append(Photo(os.path.abspath(p), st.st_size, st.st_mtime_ns))
    uniq: Dict[str, Photo] = {ph.key: ph for ph in photos}
    return Scan(sorted(uniq.values(), key=lambda ph: ph.key), roots, missing)


def _lines(path: Path) -> List[str]:
    import sys

    if str(path) == "-":
        return [x.strip() for x in sys.stdin.read().splitlines() if x.strip()]
    if not path.is_file():
        raise UserError(f"--files-from '{path}' not found")
    try:
        return [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    except UnicodeDecodeError:
        raise UserError(f"--files-from '{path}' is not UTF-8 text (one path a line)") from None


@dataclass
class Plan:
    todo: List[Photo]        # new or changed, sorted
    unchanged: int
    deleted: List[str]
    new: int
    changed: int


def plan(found: Scan, known: Dict[str, Tuple[int, int, str]]) -> Plan:
    """What this run must do: photos new or changed since the manifest saw them, and the ones gone."""
    todo, unchanged, new, changed = [], 0, 0, 0
    seen = set()
    for ph in found.photos:
        seen.add(ph.key)
        k = known.get(ph.key)
        if k is not None and k[2] != "deleted" and k[0] == ph.size and k[1] == ph.mtime_ns:
            unchanged += 1
            continue
        if k is None or k[2] == "deleted":
            new += 1
        else:
            changed += 1
        todo.append(ph)
    roots = tuple(found.roots)
    deleted = [key for key, (_, _, st) in known.items()
               if st != "deleted" and key not in seen and roots and key.startswith(roots)]
    deleted += [key for key in found.listed_missing if key in known and known[key][2] != "deleted"]
    return Plan(todo, unchanged, sorted(set(deleted)), new, changed)


def read_bytes(photo: Photo, limit: Optional[int] = None) -> bytes:
    """The file's bytes (a tar member's, read in place)."""
    if photo.tar is None:
        with open(photo.key, "rb") as f:
            return f.read() if limit is None else f.read(limit)
    with open(photo.tar, "rb") as f:
        f.seek(photo.offset)
        return f.read(photo.size if limit is None else min(limit, photo.size))


def read_key(key: str) -> bytes:
    """The bytes behind a library key (used for thumbnails): a file, or a member of a tar."""
    if TAR_SEP in key and not os.path.exists(key):
        tar, member = key.split(TAR_SEP, 1)
        with tarfile.open(tar, "r:") as tf:
            f = tf.extractfile(member)
            if f is None:
                raise OSError(f"{member} is not a file in {tar}")
            return f.read()
    with open(key, "rb") as f:
        return f.read()



__all__ = ["Photo", "Scan", "Plan", "scan", "plan", "read_bytes", "read_key", "is_image_name", "EXTENSIONS",
           "TAR_SEP"]
