"""Reading a bundle safely: nothing a file says is trusted (``docs/bundle.md``, "Reading a bundle safely").

The rules every Python reader of a bundle folder follows (the apps implement the same ones):

- R0 ``bundle_version`` must be :data:`BUNDLE_VERSION`; ``verify/manifest.json`` ``version`` must be 1.
- R1 ``config.json`` is read once as bytes and must hash to ``config.json.sha256`` (:func:`read_config`);
  its ``files`` table covers every other file.
- R2 every path from a file is a relative POSIX path that resolves inside the bundle (:func:`inside`),
  symlinks included (:func:`walk`).
- R5 JSON is parsed strictly (:func:`loads`: no NaN / Infinity, no overflow to inf, bounded size and depth)
  and each field has its type and a sane range (:func:`check_config`).

Tolerances (R3) come from the precision tier in code (:func:`tier_of`), coverage (R4) and I/O names (R6)
are checked by ``mc2export verify``. Every violation is a one-line :class:`~mc2export.errors.UserError`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Dict, Iterator, Optional

from ..errors import UserError
from ..strictjson import MAX_JSON_BYTES, MAX_JSON_DEPTH, BadJSON, loads

BUNDLE_FORMAT = "mc2export-bundle"
BUNDLE_VERSION = 2
CONFIG = "config.json"
CONFIG_SHA256 = "config.json.sha256"
MANIFEST_VERSION = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
REEXPORT = "re-export it with this mc2export"
# precision -> tolerance tier (validate.tolerance_for's grouping); a precision not named here is refused
TIERS = {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16", "int8": "compressed", "int8-static": "compressed",
         "int8-bf16": "compressed", "pal6": "compressed", "pal4": "compressed", "auto": "compressed"}
BOUNDS = {"resolution": (1, 4096), "embed_dim": (1, 8192), "context_length": (1, 1024), "batch": (1, 4096),
          "rows": (1, 10000)}


def read_json(path: Path, what: str, hint: str, limit: int = MAX_JSON_BYTES):
    """A JSON file read strictly; ``UserError`` (naming ``what`` and ``hint``) when it is missing or refused."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise UserError(f"cannot read {what} '{path}' ({e.strerror or e}): {hint}") from None
    try:
        return loads(data, limit)
    except BadJSON as e:
        raise UserError(f"{what} '{path}' is not valid JSON ({e}): {hint}") from None


def sha256_line(data: bytes) -> str:
    """The content of ``config.json.sha256`` for config.json's bytes (``sha256sum -c`` reads it)."""
    return f"{hashlib.sha256(data).hexdigest()}  {CONFIG}\n"


def _plain(o):
    if hasattr(o, "item") and hasattr(o, "dtype"):  # numpy scalars
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def config_bytes(cfg: dict) -> bytes:
    return (json.dumps(cfg, indent=2, ensure_ascii=False, allow_nan=False, default=_plain) + "\n").encode("utf-8")


def write_config(folder, cfg: dict) -> bytes:
    """Write ``config.json`` and its ``config.json.sha256`` into ``folder`` (the writer's half of R1)."""
    data = config_bytes(cfg)
    folder = Path(folder)
    for name, content in ((CONFIG_SHA256, sha256_line(data).encode()), (CONFIG, data)):
        tmp = folder / f".{name}.{os.getpid()}.new"
        tmp.write_bytes(content)
        os.replace(tmp, folder / name)  # never in place: the file may be a hard link
    return data


def inside(folder, rel, field: str) -> Path:
    """``folder / rel`` when ``rel`` is a relative POSIX path that resolves inside ``folder`` (R2)."""
    folder = Path(folder)
    bad = None
    if not isinstance(rel, str) or not rel:
        bad = "is not a relative path"
    elif rel.startswith("/") or "\\" in rel or "\0" in rel or re.match(r"[A-Za-z]:", rel):
        bad = "is not a relative POSIX path"
    elif any(part in ("", ".", "..") for part in rel.split("/")):
        bad = "has an empty, '.' or '..' component"
    if bad is None:
        root = os.path.realpath(folder)
        real = os.path.realpath(os.path.join(root, rel))
        if not (real == root or real.startswith(root.rstrip(os.sep) + os.sep)):
            bad = "leaves the bundle folder (a symlink out of it)"
    if bad:
        shown = repr(rel)[:120]
        raise UserError(f"bundle '{folder}' is refused: {field} {shown} {bad}: {REEXPORT}")
    return folder / rel


def walk(folder) -> Iterator[str]:
    """Relative POSIX paths of the files under ``folder``, sorted; a symlink that leaves it, a symlinked
    folder or anything but a regular file (a FIFO would hang the hashing) is refused (R2)."""
    folder = Path(folder)
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(folder).as_posix()
            if p.is_symlink():
                inside(folder, rel, "the file")
                if p.is_dir():
                    raise UserError(f"bundle '{folder}' is refused: {rel!r} is a symlinked folder: {REEXPORT}")
            if name in filenames:
                if not p.is_file():  # a FIFO or device would hang or lie when hashed
                    raise UserError(f"bundle '{folder}' is refused: {rel!r} is not a regular file: {REEXPORT}")
                out.append(rel)
    return iter(sorted(out))


def _hint_version(v) -> str:
    return (f"bundle_version {v!r}: written by another mc2export (this one reads version {BUNDLE_VERSION}); "
            f"{REEXPORT}")


def read_config(folder) -> dict:
    """config.json of the bundle ``folder``: bytes read once, hashed against ``config.json.sha256`` (R1),
    parsed strictly, version (R0) and types (R5) checked. Paths are checked where they are used."""
    folder = Path(folder)
    cfg_path = folder / CONFIG
    if not cfg_path.is_file():
        raise UserError(f"'{folder}' is not an mc2export bundle (no config.json): pass the folder an export "
                        "wrote")
    inside(folder, CONFIG, "config.json")
    try:
        with open(cfg_path, "rb") as f:
            data = f.read(MAX_JSON_BYTES + 1)
        line = (folder / CONFIG_SHA256).read_bytes()[:200] if (folder / CONFIG_SHA256).is_file() else None
    except OSError as e:
        raise UserError(f"cannot read the bundle '{folder}': {e.strerror or e}") from None
    if (folder / CONFIG_SHA256).is_file():
        inside(folder, CONFIG_SHA256, "config.json.sha256")
    try:
        cfg = loads(data)
    except BadJSON as e:
        raise UserError(f"bundle '{folder}' is corrupt: config.json is not valid JSON ({e}): {REEXPORT}") from None
    if not isinstance(cfg, dict) or cfg.get("format") != BUNDLE_FORMAT:
        raise UserError(f"bundle '{folder}' is corrupt: config.json is not an {BUNDLE_FORMAT} config: {REEXPORT}")
    if cfg.get("bundle_version") != BUNDLE_VERSION or isinstance(cfg.get("bundle_version"), bool):
        raise UserError(f"bundle '{folder}' is refused: {_hint_version(cfg.get('bundle_version'))}")
    if line is None or line != sha256_line(data).encode():
        raise UserError(f"bundle '{folder}' is refused: config.json does not match config.json.sha256: the "
                        f"bundle was edited or damaged; {REEXPORT}")
    check_config(cfg, folder)
    return cfg


def _int(v, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def check_config(cfg: dict, folder) -> None:
    """R5 on the fields readers use: types and ranges; ``UserError`` naming the field."""
    def bad(field: str, why: str):
        raise UserError(f"bundle '{folder}' is refused: config.json {field} {why}: {REEXPORT}")

    for key in ("variant", "runtime", "precision"):
        if not isinstance(cfg.get(key), str) or not cfg[key]:
            bad(key, "must be a non-empty string")
    if cfg["precision"] not in TIERS:
        bad("precision", f"{cfg['precision'][:40]!r} is not a precision this mc2export knows")
    if "batch" in cfg and not _int(cfg["batch"], *BOUNDS["batch"]):
        bad("batch", "must be an integer in 1..4096")
    for key in ("embed_dim", "context_length", "resolution"):
        if cfg.get(key) is not None and not _int(cfg[key], *BOUNDS[key]):
            bad(key, f"must be an integer in {BOUNDS[key][0]}..{BOUNDS[key][1]}")
    pre = cfg.get("preprocess")
    if pre is not None:
        if not isinstance(pre, dict):
            bad("preprocess", "must be an object")
        if "resolution" in pre and not _int(pre["resolution"], *BOUNDS["resolution"]):
            bad("preprocess.resolution", "must be an integer in 1..4096")
    models = cfg.get("models")
    if not isinstance(models, dict) or not models:
        bad("models", "must name at least one model")
    for tower, m in models.items():
        if tower not in ("image", "text"):
            bad(f"models.{tower[:20]}", "is not a tower (image, text)")
        if not isinstance(m, dict) or not isinstance(m.get("file"), str):
            bad(f"models.{tower}", "names no file")
        for key in ("files",):
            if key in m and not (isinstance(m[key], list) and all(isinstance(x, str) for x in m[key])):
                bad(f"models.{tower}.{key}", "must be a list of paths")
        for side in ("inputs", "outputs"):
            io = m.get(side)
            if io is not None and not (isinstance(io, list) and all(isinstance(x, dict) and
                                                                    isinstance(x.get("name"), str) for x in io)):
                bad(f"models.{tower}.{side}", "must be a list of {name, dtype, shape}")
    files = cfg.get("files")
    if not isinstance(files, dict):
        bad("files", "must be the table of the bundle's files")
    for name, f in files.items():
        if not (isinstance(f, dict) and isinstance(f.get("sha256"), str) and _HEX64.fullmatch(f["sha256"])
                and _int(f.get("bytes"), 0, 1 << 50)):
            bad(f"files[{name[:80]!r}]", "must be {sha256: 64 hex digits, bytes: an integer}")
    for key in ("validation",):
        if cfg.get(key) is not None and not isinstance(cfg[key], str):
            bad(key, "must be a path")
    if "output_normalized" in cfg and not isinstance(cfg["output_normalized"], bool):
        bad("output_normalized", "must be true or false")
    if cfg.get("logit_scale") is not None and (isinstance(cfg["logit_scale"], bool)
                                               or not isinstance(cfg["logit_scale"], (int, float))):
        bad("logit_scale", "must be a number")


def model_paths(cfg: dict, folder) -> Dict[str, Path]:
    """Each tower's model file, checked to lie inside the bundle (R2)."""
    out = {}
    for tower, m in cfg["models"].items():
        out[tower] = inside(folder, m["file"], f"models.{tower}.file")
        for f in m.get("files") or ():
            inside(folder, f, f"models.{tower}.files")
    return out


def tier_of(precision) -> str:
    """The tolerance tier of a precision, from :data:`TIERS` (never from a file); ``KeyError`` if unknown."""
    return TIERS[precision]


def resolution(cfg: dict) -> Optional[int]:
    pre = cfg.get("preprocess") or {}
    return pre.get("resolution") or cfg.get("resolution")


__all__ = ["BUNDLE_VERSION", "BUNDLE_FORMAT", "CONFIG", "CONFIG_SHA256", "MANIFEST_VERSION", "TIERS", "BOUNDS",
           "BadJSON", "loads", "read_json", "sha256_line", "config_bytes", "write_config", "inside", "walk",
           "read_config", "check_config", "model_paths", "tier_of", "resolution"]
