"""A reading-rules-conformant copy of a bundle folder for the app tests (docs/bundle.md, "Reading a bundle safely").

The apps read ``bundle_version`` 2 only and check ``config.json`` against ``config.json.sha256``. Where a bundle
under test was written by an exporter that still writes version 1 (before the reading rules reached it), the
tests run on a copy that says version 2 and carries the checksum line; a version-2 bundle is copied as it is.
Model files are hard-linked (or copied), never symlinked: a symlink out of a bundle is refused by the readers.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path


def seal(folder: Path) -> None:
    """Write ``config.json.sha256`` for the folder's config.json as it is now (``sha256sum -c`` format)."""
    data = (Path(folder) / "config.json").read_bytes()
    tmp = Path(folder) / ".config.json.sha256.new"
    tmp.write_text(f"{hashlib.sha256(data).hexdigest()}  config.json\n")
    os.replace(tmp, Path(folder) / "config.json.sha256")  # never write through a hard link into the original


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def v2_copy(bundle: Path, dest: Path) -> Path:
    """``dest``: a copy of ``bundle`` with ``bundle_version`` 2 and a matching ``config.json.sha256``."""
    bundle, dest = Path(bundle), Path(dest)
    shutil.copytree(bundle, dest, copy_function=_link_or_copy)
    cfg = json.loads((dest / "config.json").read_text(encoding="utf-8"))
    if cfg.get("bundle_version") != 2 or not (dest / "config.json.sha256").is_file():
        cfg["bundle_version"] = 2
        (dest / "config.json").unlink()  # a hard link: never write through it
        (dest / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        seal(dest)
    return dest
