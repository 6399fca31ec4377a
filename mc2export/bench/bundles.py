"""Reading an export bundle for benchmarking (format: ``docs/bundle.md``): config, model files, checksum."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from ..errors import UserError

BUNDLE_FORMAT = "mc2export-bundle"
EXPORT_HINT = "re-export it with `mc2export onnx|executorch|coreml --variant V ... --out DIR`"
# the runtime a bundle's format runs on by default, and the formats each runtime accepts (None: any)
DEFAULT_RUNTIME = {"onnx": "onnxruntime", "executorch": "executorch", "coreml": "coreml", "openvino": "openvino",
                   "litert": "litert"}
RUNTIME_FORMATS = {"onnxruntime": ("onnx",), "executorch": ("executorch",), "coreml": ("coreml",),
                   "openvino": ("openvino",), "litert": ("litert",), "torch": None, "torch-unfolded": None}


@dataclass
class Bundle:
    path: Path
    config: dict
    checksum: str                      # sha256 over the sorted (file, sha256) table of config.json
    verified: bool
    validation: Optional[dict] = None
    towers: List[str] = field(default_factory=list)

    @property
    def format(self) -> str:
        return self.config.get("runtime") or self.config.get("format_name") or "?"

    @property
    def variant(self) -> str:
        return self.config["variant"]

    @property
    def precision(self) -> str:
        return self.config.get("precision", "fp32")

    def model_file(self, tower: str) -> Path:
        m = (self.config.get("models") or {}).get(tower)
        if not m:
            raise UserError(f"bundle '{self.path}' holds no {tower} model (towers: {', '.join(self.towers) or 'none'})"
                            f": pass --towers {','.join(self.towers) or 'image,text'}, or {EXPORT_HINT}")
        from ..export.reading import inside

        return inside(self.path, m["file"], f"models.{tower}.file")

    def model_entry(self, tower: str) -> dict:
        return (self.config.get("models") or {}).get(tower) or {}

    def summary(self) -> dict:
        """The ``bundle`` object of a result."""
        w = self.config.get("weights") or {}
        files = self.config.get("files") or {}
        size = sum(int(f.get("bytes", 0)) for f in files.values())
        return {"path": str(self.path), "format": self.format, "precision": self.precision,
                "variant": self.variant, "checksum": self.checksum, "verified": self.verified,
                "created": self.config.get("created"), "bytes": size,
                "random_weights": bool(w.get("random_weights")), "weights_source": w.get("source"),
                "batch": self.config.get("batch", 1), "towers": list(self.towers),
                "exporter_versions": self.config.get("versions") or {}}


def bundle_checksum(files: Dict[str, dict]) -> str:
    """One sha256 for the whole bundle: over ``"<path>\\t<sha256>\\n"`` lines of its file table, sorted."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}\t{files[name].get('sha256', '')}\n".encode())
    return h.hexdigest()


def load_bundle(path, verify: bool = True, skip_option: Optional[str] = "--no-verify") -> Bundle:
    """Read (and by default re-hash) a bundle; every problem is a one-line ``UserError`` naming the fix.
    ``skip_option``: the caller's option that skips the re-hash, suggested when it fails (None: it has none)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"bundle not found: '{p}': pass the folder an export wrote "
                        "(`mc2export onnx|executorch|coreml ... --out DIR`)")
    if not p.is_dir():
        raise UserError(f"'{p}' is not a bundle folder: pass the folder an export wrote (it holds config.json)")
    from ..export.reading import model_paths, read_config, read_json, inside

    try:
        cfg = read_config(p)
    except UserError as e:
        raise UserError(f"{e}" if "re-export" in str(e) else f"{e}; {EXPORT_HINT}") from None
    models = cfg["models"]
    files = cfg["files"]
    if verify:
        from ..export.bundle import verify_bundle

        try:
            verify_bundle(p)
        except UserError as e:
            raise UserError(f"{e}: the bundle is corrupt or was edited; {EXPORT_HINT}"
                            + (f" (or pass {skip_option} to measure it anyway)" if skip_option else "")) from None
    else:
        for tower, path in model_paths(cfg, p).items():
            if not path.exists():
                raise UserError(f"bundle '{p}' is corrupt: {models[tower]['file']} is missing: {EXPORT_HINT}")
    validation = None
    vpath = inside(p, cfg.get("validation") or "validation.json", "validation")
    if vpath.is_file():
        try:
            validation = read_json(vpath, "validation.json", EXPORT_HINT)
        except UserError:
            validation = None
    towers = [t for t in ("image", "text") if t in models]
    return Bundle(path=p.absolute(), config=cfg, checksum=bundle_checksum(files), verified=bool(verify),
                  validation=validation, towers=towers)


def as_bundle(b, verify: bool = True) -> Bundle:
    """A :class:`Bundle` from a path (loaded and verified) or an already loaded one."""
    return b if isinstance(b, Bundle) else load_bundle(b, verify=verify)


def check_runtime(bundle: Bundle, runtime: str) -> None:
    allowed = RUNTIME_FORMATS.get(runtime)
    if allowed is not None and bundle.format not in allowed:
        raise UserError(f"runtime {runtime} cannot run a {bundle.format} bundle ('{bundle.path}'): use --runtime "
                        f"{DEFAULT_RUNTIME.get(bundle.format, 'torch')} (or torch / torch-unfolded), or export "
                        f"a {allowed[0]} bundle")


__all__ = ["Bundle", "load_bundle", "as_bundle", "bundle_checksum", "check_runtime", "DEFAULT_RUNTIME", "RUNTIME_FORMATS"]
