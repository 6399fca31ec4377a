"""The bundle directory: atomic creation, checksums, ``config.json`` and ``validation.json``.

A bundle is built in a hidden temporary directory next to ``--out`` (same filesystem) and renamed into
place only after every model was exported and validated; any exception -- a validation failure, a
``UserError``, Ctrl-C or SIGTERM (:mod:`mc2export.signals`) -- removes the temporary directory, so
``--out`` never holds half a bundle; what a SIGKILL leaves is removed by the next run to that ``--out``.
With ``--force`` an existing bundle at ``--out`` (only a bundle: :func:`check_replaceable`) is first
renamed aside and deleted only after the new bundle is in place. The format is documented in
``docs/bundle.md``.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Iterable, Optional

from ..errors import UserError
from ..strictjson import loads as strict_loads
from ..outputs import TMP_PREFIX, output_dir, sweep

from .reading import BUNDLE_FORMAT, BUNDLE_VERSION, CONFIG_SHA256


def check_out(out: Path, force: bool) -> Path:
    """Fail early (``UserError``) when ``out`` cannot receive a bundle. Returns the absolute path.

    ``--force`` replaces only a folder that is recognisably a bundle (see :func:`check_replaceable`).
    What killed runs left beside ``out`` is cleaned up here, first (:func:`mc2export.outputs.sweep`)."""
    out = Path(out).expanduser().absolute()
    sweep(out)
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise UserError(f"--out '{out}' exists and is not empty: pass --force to replace it (an mc2export "
                            "bundle only), or choose another path")
        check_replaceable(out)
    output_dir(out, "--out", replace=True)
    return out


def check_replaceable(out: Path) -> None:
    """``--force`` deletes ``out``: only when it is an mc2export bundle (its config.json says so) holding
    nothing but the files that config.json lists, and never the current folder or one that holds it."""
    try:
        here = Path.cwd().resolve()
    except OSError:  # the current folder was deleted under us
        here = None
    real = out.resolve()
    if here is not None and (real == here or real in here.parents):
        raise UserError(f"--out '{out}' is the current folder or holds it: --force never replaces that; "
                        "cd to another folder, or choose another --out")
    try:
        cfg = strict_loads((out / "config.json").read_bytes())
    except (OSError, ValueError):
        cfg = None
    if not isinstance(cfg, dict) or cfg.get("format") != BUNDLE_FORMAT:
        raise UserError(f"--out '{out}' is not an mc2export bundle (it holds {_listing(out)}): --force replaces "
                        "bundles only; choose another --out")
    listed = set(cfg.get("files") or {}) | {"config.json", CONFIG_SHA256}
    extra = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                   if not p.is_dir() and p.relative_to(out).as_posix() not in listed)
    if extra:
        raise UserError(f"--out '{out}' is an mc2export bundle but also holds files it does not list "
                        f"({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''}): move them out first, "
                        "or choose another --out")


def _listing(folder: Path) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    more = ", ..." if len(names) > 3 else ""
    return f"{len(names)} entr{'y' if len(names) == 1 else 'ies'}: {', '.join(names[:3])}{more}"


class AtomicDir:
    """``with AtomicDir(out, force) as tmp:`` build in ``tmp``; on success ``out`` is replaced atomically.

    The temporary folders carry the pid (``.mc2export-tmp-<name>-<pid>-*``): those of a killed run are
    removed by the next run to the same ``out`` (:func:`check_out`)."""

    def __init__(self, out: Path, force: bool):
        self.out = check_out(out, force)
        self.force = force
        self.tmp: Optional[Path] = None

    def __enter__(self) -> Path:
        parent = self.out.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{self.out.name}-{os.getpid()}-", dir=parent))
        except OSError as e:
            raise UserError(f"cannot write to --out '{self.out}': {e.strerror or e}") from None
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.cleanup()
            return False
        try:
            self._commit()
        except BaseException:
            self.cleanup()
            raise
        return False

    def cleanup(self) -> None:
        if self.tmp is not None and self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp = None

    def _commit(self) -> None:
        assert self.tmp is not None
        _normal_permissions(self.tmp)
        old = None
        if self.out.exists():
            if not any(self.out.iterdir()):
                return self._fill()
            if not self.force:  # filled while we were exporting
                raise UserError(f"--out '{self.out}' was filled while exporting: pass --force or choose "
                                "another path")
            check_replaceable(self.out)  # and changed, maybe: check again
            old = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}old-{self.out.name}-{os.getpid()}-",
                                        dir=self.out.parent))
            os.replace(self.out, old / "bundle")
        try:
            os.replace(self.tmp, self.out)
        except OSError as e:
            if old is not None:  # put the previous bundle back
                os.replace(old / "bundle", self.out)
                shutil.rmtree(old, ignore_errors=True)
            raise UserError(f"cannot move the bundle into '{self.out}': {e.strerror or e}") from None
        self.tmp = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _fill(self) -> None:
        """An empty ``out`` is filled in place, not replaced: it may be the current folder, or one the user
        made with its own permissions. config.json, the mark of a bundle, moves last."""
        assert self.tmp is not None
        names = sorted(p.name for p in self.tmp.iterdir() if p.name != "config.json")
        names += ["config.json"] if (self.tmp / "config.json").exists() else []
        moved = []
        try:
            for n in names:
                os.replace(self.tmp / n, self.out / n)
                moved.append(n)
        except OSError as e:
            for n in moved:  # back into the temporary folder, which the caller removes
                os.replace(self.out / n, self.tmp / n)
            raise UserError(f"cannot move the bundle into '{self.out}': {e.strerror or e}") from None
        self.tmp.rmdir()
        self.tmp = None


def _normal_permissions(root: Path) -> None:
    """mkdtemp/mkstemp create 0700/0600 entries: give the bundle the usual umask-based modes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(root, 0o777 & ~umask)
    for p in root.rglob("*"):
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def file_table(root: Path, exclude: Iterable[str] = ("config.json", CONFIG_SHA256)) -> Dict[str, dict]:
    """``{relative posix path: {"sha256", "bytes"}}`` of every file under ``root`` (directories such as
    ``.mlpackage`` are listed file by file), sorted."""
    root = Path(root)
    skip = set(exclude)
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            if rel in skip:
                continue
            out[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    return out


def path_size(p: Path) -> int:
    p = Path(p)
    if p.is_file():
        return p.stat().st_size
    return sum(q.stat().st_size for q in p.rglob("*") if q.is_file())


def tool_versions(extra: Iterable[str] = ()) -> Dict[str, str]:
    """Versions of Python, the platform and every tool that took part (those installed)."""
    from importlib import metadata

    from .. import __version__

    out = {"mc2export": __version__, "python": platform.python_version(),
           "platform": f"{platform.system()} {platform.release()} {platform.machine()}"}
    for dist in ("torch", "numpy", *extra):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_json(path: Path, obj) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n",
                          encoding="utf-8")


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def verify_bundle(folder: Path) -> dict:
    """Read ``config.json`` under the reading rules (:mod:`.reading`: its own checksum, version, types) and
    re-hash every file it lists; raise ``UserError`` on a missing / changed / extra file or a path or
    symlink that leaves the folder. Returns the config."""
    from .reading import CONFIG, inside, model_paths, read_config, walk

    folder = Path(folder)
    cfg = read_config(folder)
    listed = cfg["files"]
    for name in listed:
        inside(folder, name, "files")
    model_paths(cfg, folder)
    present = [n for n in walk(folder) if n not in (CONFIG, CONFIG_SHA256)]
    missing = sorted(set(listed) - set(present))
    extra = sorted(set(present) - set(listed))
    changed = []
    if not missing and not extra:
        for name in sorted(listed):
            p = folder / name
            if p.stat().st_size != listed[name]["bytes"] or sha256_file(p) != listed[name]["sha256"]:
                changed.append(name)
    if missing or extra or changed:
        raise UserError(f"bundle '{folder}' does not match its config.json: missing {missing[:3]}, "
                        f"extra {extra[:3]}, changed {changed[:3]}")
    return cfg


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def remove_tree(p: Path) -> None:
    shutil.rmtree(p, ignore_errors=True)


__all__ = ["AtomicDir", "check_out", "check_replaceable", "sha256_file", "file_table", "path_size", "tool_versions",
           "write_json", "now_iso", "verify_bundle", "human_bytes", "BUNDLE_FORMAT", "BUNDLE_VERSION"]
