"""Zero-shot classification accuracy on an image folder (``class_name/*.jpg``), the CLIP recipe:
class embeddings from a prompt ensemble (:mod:`mc2export.zeroshot`), images through the model's
own inference preprocessing (its card), top-1 / top-5 of the cosine similarities."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from ..errors import UserError


def load_classnames(path: str | Path, folders: Sequence[str]) -> List[str]:
    """Class names for the sorted class folders: one name per line in folder order, or lines
    ``folder<TAB>name`` (or ``folder: name``) for an explicit mapping."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"classnames file not found: '{p}'")
    lines = [x.strip() for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]
    if lines and all(("\t" in x or ": " in x) for x in lines):
        mapping = {}
        for x in lines:
            k, v = x.split("\t", 1) if "\t" in x else x.split(": ", 1)
            mapping[k.strip()] = v.strip()
        missing = [f for f in folders if f not in mapping]
        if missing:
            raise UserError(f"'{p}' names no class for folder '{missing[0]}' ({len(missing)} folders unnamed)")
        return [mapping[f] for f in folders]
    if len(lines) != len(folders):
        raise UserError(f"'{p}' has {len(lines)} class names but the dataset has {len(folders)} class folders: "
                        "give one name per folder, in sorted folder order (or 'folder<TAB>name' lines)")
    return lines


class BundleModel:
    """An exported bundle (``docs/bundle.md``) behind the two methods zero-shot evaluation needs:
    ``encode_image(pixels)`` / ``encode_text(tokens)``, run in the bundle's own runtime (ONNX Runtime,
    ExecuTorch; Core ML predicts on macOS only). Inputs are cut into the bundle's fixed batch."""

    def __init__(self, path: str | Path):
        from ..bench.bundles import load_bundle
        from ..export import format_module
        from ..preprocess import PreprocessConfig, build_transform

        self.bundle = b = load_bundle(path, skip_option=None)
        cfg = b.config
        missing = [t for t in ("image", "text") if t not in b.towers]
        if missing:
            raise UserError(f"bundle '{b.path}' has no {missing[0]} model: zero-shot needs both towers "
                            "(export with --towers image,text)")
        self.variant, self.batch = cfg["variant"], int(cfg.get("batch", 1))
        self.context_length = int(cfg.get("context_length", 77))
        self.logit_scale = torch.tensor(float(cfg.get("logit_scale", 100.0))).log()
        self.device = torch.device("cpu")
        mod = format_module(b.format)
        self._run = {t: self._runner(mod, b, t) for t in ("image", "text")}
        pre = dict(cfg["preprocess"])
        # ONNX / ExecuTorch take uint8/255 pixels and normalize inside; Core ML takes the pixel buffer
        self.transform = build_transform(PreprocessConfig(resolution=int(pre["resolution"]),
                                                          interpolation=pre["interpolation"],
                                                          mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))

    @staticmethod
    def _runner(mod, b, tower: str):
        from ..errors import unreadable_model

        try:
            return mod.runner(b.path, tower, b.config["models"][tower], card=None)[0]
        except UserError:
            raise
        except Exception as e:  # each runtime raises its own types (protobuf, flatbuffer, ...)
            raise unreadable_model(b.model_file(tower), b.format, e) from None

    def _batched(self, tower: str, x, normalize: bool) -> torch.Tensor:
        import numpy as np

        x = x.numpy()
        if tower == "text":
            x = x.astype(np.int32)
        rows = []
        for i in range(0, len(x), self.batch):
            chunk = x[i:i + self.batch]
            n = len(chunk)
            if n < self.batch:  # the bundle's batch is fixed: pad with copies of the last row
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch - n, 0)])
            rows.append(torch.from_numpy(np.asarray(self._run[tower](chunk), dtype=np.float32))[:n])
        out = torch.cat(rows)
        return torch.nn.functional.normalize(out, dim=-1) if normalize else out

    def encode_image(self, pixels: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self._batched("image", pixels, normalize)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self._batched("text", tokens, normalize)


@torch.no_grad()
def zeroshot_folder(model, root: str | Path, classnames: Optional[str | Path] = None, templates: str = "openai",
                    batch_size: int = 64, limit: Optional[int] = None, progress: bool = False) -> Dict:
    """{"top1", "top5", "n", "classes", "per_class"} of ``model`` (a CLIPModel or a :class:`BundleModel`)
    on the images under ``root``."""
    from .. import image_transform
    from ..preprocess import load_image
    from ..zeroshot import TEMPLATES, class_embeddings
    from .data import list_image_folder

    if templates not in TEMPLATES:
        raise UserError(f"unknown templates {templates!r}: choose one of {', '.join(TEMPLATES)}")
    folders, items = list_image_folder(root)
    names = load_classnames(classnames, folders) if classnames else [f.replace("_", " ") for f in folders]
    if limit:
        items = items[:limit]
    if isinstance(model, BundleModel):
        device, transform = model.device, model.transform
    else:
        device, transform = next(model.parameters()).device, image_transform(model.variant)
    classes = class_embeddings(model, names, TEMPLATES[templates]).to(device)
    correct1 = correct5 = 0
    per_class = torch.zeros(len(names), 2)
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        pixels = torch.stack([transform(load_image(p)) for p, _ in chunk]).to(device)
        logits = model.encode_image(pixels, normalize=True) @ classes.T
        target = torch.tensor([c for _, c in chunk], device=device)
        top = logits.topk(min(5, len(names)), dim=1).indices
        hit1 = top[:, 0] == target
        correct1 += int(hit1.sum())
        correct5 += int((top == target[:, None]).any(1).sum())
        for t, h in zip(target.tolist(), hit1.tolist()):
            per_class[t, 0] += h
            per_class[t, 1] += 1
        if progress:
            print(f"\r{min(start + batch_size, len(items))}/{len(items)} images", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    n = len(items)
    return {"top1": correct1 / n, "top5": correct5 / n, "n": n, "classes": len(names), "templates": templates,
            "chance": 1 / len(names),
            "per_class": {names[i]: (per_class[i, 0] / per_class[i, 1]).item()
                          for i in range(len(names)) if per_class[i, 1] > 0}}


__all__ = ["zeroshot_folder", "load_classnames", "BundleModel"]
