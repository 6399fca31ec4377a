"""The model runner: which bundle embeds the photos, and running it in batches through the runtime layer
that ``bench`` and ``verify`` use (:func:`mc2export.bench.runtimes.load`).

Without ``--bundle`` the default is the fast path on this machine, exported once into a cache and reused
(``$MC2EXPORT_CACHE`` or ``~/.cache/mc2export/index-models/<key>``, the key hashing variant, weights,
format, precision, batch and the mc2export version):

* OpenVINO installed (x86 desktops / servers, ``pip install 'mc2export[openvino]'``): an OpenVINO IR of the
  image tower, int8 (NNCF post-training quantization, validated against the folded model at export) --
  the fastest CPU path measured here (docs/library.md);
* otherwise ONNX Runtime, fp32.

Never eager PyTorch: ``--runtime torch`` exists for comparison only.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import UserError
from .store import Model

DEFAULT_BATCH = 8


@dataclass(frozen=True)
class Choice:
    """The bundle a run uses and how it is run."""
    bundle: Path
    runtime: str
    checksum: str
    variant: str
    dim: int
    batch: int
    preprocess: dict
    description: str

    def model(self) -> Model:
        return Model(self.variant, self.checksum, self.dim, self.description, str(self.bundle))


def _cache_root() -> Path:
    env = os.environ.get("MC2EXPORT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mc2export" / "index-models"


def default_format() -> tuple:
    """(format, precision) of the default bundle on this machine."""
    from ..bench.runtimes import _installed

    if _installed("openvino") and _installed("nncf"):
        return "openvino", "int8"
    if _installed("onnxruntime"):
        return "onnx", "fp32"
    raise UserError("no runtime to run the image model: pip install 'mc2export[openvino]' (x86) or "
                    "'mc2export[export]' (ONNX Runtime), or pass --bundle DIR")


def _weights_id(variant: str, checkpoint: Optional[Path]) -> str:
    if checkpoint is None:
        return f"pretrained:{variant}"
    h = hashlib.sha256()
    with open(checkpoint, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"checkpoint:{h.hexdigest()}"


def cached_bundle(variant: str, checkpoint: Optional[Path], fmt: Optional[str] = None,
                  precision: Optional[str] = None, batch: int = DEFAULT_BATCH, log=print) -> Path:
    """The cached bundle (image and text towers: ``search`` embeds its words with the same weights) for these weights, exported (and validated) on first use."""
    from .. import __version__, cards
    from ..outputs import sweep

    if checkpoint is not None and not Path(checkpoint).is_file():
        raise UserError(f"--checkpoint '{checkpoint}' not found")
    vid = cards.resolve_variant(variant)
    if fmt is None:
        fmt, precision = default_format()
    precision = precision or ("int8" if fmt == "openvino" else "fp32")
    key = hashlib.sha256("\n".join([vid, _weights_id(vid, checkpoint), fmt, precision, str(batch),
                                    __version__]).encode()).hexdigest()[:16]
    out = _cache_root() / f"{vid}-{fmt}-{precision}-b{batch}-{key}"
    if (out / "config.json").is_file():
        return out
    from ..export import export_bundle

    out.parent.mkdir(parents=True, exist_ok=True)
    sweep(out)
    log(f"exporting the image model once ({vid}, {fmt} {precision}, batch {batch}) into {out} ...")
    export_bundle(fmt, vid, out=out, checkpoint=checkpoint, pretrained=checkpoint is None, precision=precision,
                  towers="image,text", batch=batch, log=lambda s: None)
    return out


def choose(bundle: Optional[Path], variant: Optional[str], checkpoint: Optional[Path], runtime: Optional[str],
           batch: int = DEFAULT_BATCH, log=print, verify: bool = True) -> Choice:
    """Resolve ``--bundle`` / ``--variant --checkpoint`` / ``--runtime`` into a :class:`Choice`. ``verify``:
    re-hash the bundle's files (needed before it runs; not to compare its checksum with a library's)."""
    from ..bench.bundles import DEFAULT_RUNTIME, check_runtime, load_bundle
    from ..bench.runtimes import require

    if bundle is None:
        bundle = cached_bundle(variant or "s0", checkpoint, batch=batch, log=log)
    elif variant or checkpoint:
        raise UserError("pass --bundle, or --variant / --checkpoint (the default model), not both")
    b = load_bundle(bundle, verify=verify, skip_option=None)
    if "image" not in b.towers:
        raise UserError(f"bundle '{bundle}' holds no image model: export one with --towers image (or image,text)")
    runtime = runtime or DEFAULT_RUNTIME.get(b.format, "onnxruntime")
    require(runtime)
    check_runtime(b, runtime)
    dim = int(b.config.get("embed_dim") or b.model_entry("image")["output"]["shape"][-1])
    batch_n = int(b.config.get("batch") or 1)
    desc = f"{b.format} {b.precision} batch {batch_n} bundle {b.path} on {runtime}"
    return Choice(b.path, runtime, b.checksum, b.variant, dim, batch_n, dict(b.config["preprocess"]), desc)


class Embedder:
    """The bundle's image tower, loaded once: ``uint8 [n, R, R, 3]`` -> L2-normalized ``float32 [n, D]``.
    Fixed-batch bundles get their last batch padded (the padding rows are dropped)."""

    def __init__(self, bundle: Path, runtime: str, threads: int):
        from ..bench.bundles import load_bundle
        from ..bench.runtimes import load

        b = load_bundle(bundle, verify=False)  # the driver verified it once
        self.batch = int(b.config.get("batch") or 1)
        self.normalized = bool(b.config.get("output_normalized", True))
        self.loaded = load(runtime, b, "image", threads)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        from .decode import to_model

        n = len(pixels)
        out = []
        for i in range(0, n, self.batch):
            x = to_model(pixels[i:i + self.batch])
            if len(x) < self.batch:
                x = np.concatenate([x, np.zeros((self.batch - len(x),) + x.shape[1:], np.float32)])
            y = np.asarray(self.loaded.run(x), dtype=np.float32).reshape(self.batch, -1)
            out.append(y[:min(self.batch, n - i)])
        y = np.concatenate(out) if out else np.zeros((0, 0), np.float32)
        if not np.isfinite(y).all():
            raise UserError("the model produced non-finite embeddings: the bundle is broken; export it again")
        if not self.normalized:
            y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
        return y


__all__ = ["Choice", "Embedder", "choose", "cached_bundle", "default_format", "DEFAULT_BATCH"]
