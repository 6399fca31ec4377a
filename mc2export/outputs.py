"""Where the commands write: one early check of an output path, atomic writes, and what killed runs left.

Every command that writes checks its output options with :func:`output_file` / :func:`output_dir`
before any slow work, so a path it cannot write is one line and exit 2, not a traceback after the work.
Files are written to a hidden temporary beside the target, ``.mc2export-tmp-<name>-<pid>-<random>``,
then renamed (:func:`write_atomic`); a run killed by SIGKILL leaves that temporary behind, and the next
run to the same place removes it (:func:`sweep`): the pid in the name tells a dead run from a live one.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

from .errors import UserError

TMP_PREFIX = ".mc2export-tmp-"


def note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr, flush=True)


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except OSError:  # e.g. a parent without search permission
        return False


def _first_existing(p: Path) -> Path:
    while not _exists(p) and p != p.parent:
        p = p.parent
    return p


def _probe(folder: Path, option: str, shown: Path) -> None:
    """Create and remove a file in ``folder``: the only test that also sees read-only mounts, /proc and
    immutable folders (``os.access`` answers yes to root for all of them)."""
    if not folder.is_dir():
        raise UserError(f"cannot write {option} '{shown}': '{folder}' is a file, not a folder: choose another path")
    try:
        fd, name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{shown.name}-{os.getpid()}-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise UserError(f"cannot write {option} '{shown}': '{folder}' is not writable ({e.strerror or e}): "
                        "choose another path") from None


_WRITE_ERRNOS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                 errno.EROFS: "the file system is read-only", errno.ENOENT: "a folder vanished while writing",
                 errno.EIO: "an I/O error", errno.EFBIG: "the file is too large for the file system"}


def write_failure(e: BaseException) -> Optional[str]:
    """One line for an environment failure while a command ran -- disk full, quota, an output folder deleted
    under us -- or None for anything else (a bug keeps its traceback). Libraries that wrap the OSError
    (torch's zip writer, protobuf) are recognised by its text."""
    if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
        where = f" ('{e.filename}')" if getattr(e, "filename", None) else ""
        return (f"cannot write{where}: {_WRITE_ERRNOS[e.errno]} ({e.strerror or e}); no half-written "
                "file was left: free some space or fix the folder, then run it again")
    text = str(e)
    for errnum, why in _WRITE_ERRNOS.items():
        if errnum != errno.ENOENT and os.strerror(errnum) in text:
            return (f"cannot write: {why} ({os.strerror(errnum)} in {type(e).__name__}); no half-written "
                    "file was left: free some space, then run it again")
    return None


def output_file(path, option: str = "--out", suffix: Optional[str] = None) -> Path:
    """Fail early (``UserError``) when ``path`` cannot be written as a file; returns it (``~`` expanded).
    Creates nothing (its missing parent folders are created when the file is written)."""
    path = Path(path).expanduser()
    if suffix is not None and path.suffix != suffix:
        raise UserError(f"{option} must end in {suffix} (got '{path}')")
    if path.is_dir():
        raise UserError(f"{option} '{path}' is a folder: pass a file path")
    _probe(_first_existing(path.absolute().parent), option, path)
    return path


def outside(path, folders, option: str, what: str = "the bundle") -> None:
    """Refuse (``UserError``) an output ``path`` that lies inside one of ``folders`` (the inputs being read,
    e.g. a bundle whose files are checksummed): a writer never replaces what it does not own."""
    real = Path(os.path.realpath(Path(path).expanduser()))
    for folder in folders:
        root = Path(os.path.realpath(Path(folder).expanduser()))
        if real == root or root in real.parents:
            raise UserError(f"{option} '{path}' is inside {what} '{folder}' it reads: write it somewhere else")


def output_dir(path, option: str = "--out", *, replace: bool = False) -> Path:
    """Fail early (``UserError``) when ``path`` cannot be used as an output folder; returns it (``~`` expanded).

    ``replace=True``: the folder is built beside itself and renamed into place (a bundle), so its parent
    must be writable; otherwise files are written inside it (created with its parents if missing)."""
    path = Path(path).expanduser()
    if _exists(path) and not path.is_dir():
        raise UserError(f"{option} '{path}' exists and is not a folder: choose another path")
    _probe(path if (path.is_dir() and not replace) else _first_existing(path.absolute().parent), option, path)
    return path


def write_atomic(path, data: Union[str, bytes]) -> Path:
    """Write ``data`` to ``path`` through a temporary beside it and a rename: never half a file.
    Text is written as UTF-8. The folder is created if missing; a leftover of a killed run is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}-{os.getpid()}-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def sweep(target, log: Callable[[str], None] = note) -> None:
    """Remove the temporaries that killed runs left beside ``target`` (``.mc2export-tmp-[old-]<name>-<pid>-*``
    of a pid that is gone). A folder a killed ``--force`` had moved aside (``old-``) is moved back when
    ``target`` is missing. Temporaries without a pid (older versions) are reported with the command that
    removes them."""
    target = Path(target).absolute()
    folder = target.parent
    pattern = re.compile(re.escape(TMP_PREFIX) + r"(old-)?" + re.escape(target.name) + r"-(?:(\d+)-)?[a-z0-9_]{8}$")
    try:
        entries = sorted(folder.iterdir()) if folder.is_dir() else []
    except OSError:
        return
    for entry in entries:
        m = pattern.match(entry.name)
        if not m:
            continue
        pid = int(m.group(2)) if m.group(2) else None
        if pid is None:
            log(f"'{entry}' was left by an interrupted run of an older mc2export: remove it with "
                f"rm -rf '{entry}'")
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        if m.group(1) and (entry / "bundle").is_dir() and not _exists(target):
            os.replace(entry / "bundle", target)
            log(f"restored '{target}' (moved aside by a --force run that was killed before it finished)")
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        log(f"removed '{entry.name}' in '{folder}', left by an interrupted run (pid {pid})")


@contextlib.contextmanager
def run_folder(path, keep: Callable[[Path], bool]) -> Iterator[Path]:
    """Create the folder of a run (``train --out``, ``reinforce --out``). When the run fails or is
    interrupted and ``keep(folder)`` says it holds nothing worth keeping (no checkpoint, no finished
    shard), what the run added is removed again -- and the folder, with the parents it created."""
    given = Path(path)
    path = given.absolute()
    anchor = _first_existing(path)
    before = {p.name for p in path.iterdir()} if path.is_dir() else set()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create --out '{path}': {e.strerror or e}: choose another path") from None
    try:
        yield given
    except BaseException:
        if not keep(path):
            for p in path.iterdir():
                if p.name not in before:
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink()
            d = path
            while d != anchor and d.is_dir() and not any(d.iterdir()):
                d.rmdir()
                d = d.parent
        raise


__all__ = ["output_file", "output_dir", "outside", "write_failure", "write_atomic", "sweep", "run_folder", "note", "TMP_PREFIX"]
