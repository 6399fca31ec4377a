"""``mc2export reinforce``: DataCompDR-style reinforced data (``docs/reinforced_data.md``).

For every image of the source (an image folder or webdataset tars with ``jpg/png`` + ``txt``):
N recorded augmentations (:mod:`.augment`), each teacher's embedding of every augmented view, synthetic
captions from a captioner, and each teacher's embedding of the ground-truth and synthetic captions.

Work is cut into shards (one per source tar; ``--shard-size`` images of an image folder). A shard is
written to ``NAME.tmp`` and renamed when complete, so a killed run restarts where it stopped
(finished shards are skipped). Under ``torchrun`` rank r of W makes shards r, r+W, r+2W, ...;
every random draw is a function of (seed, sample key), so the result does not depend on W, on the
order, or on restarts.

Teachers (``--teacher``, repeatable; their embeddings are concatenated in the given order):
  ``VARIANT``             an mc2export variant with its pretrained weights (Hugging Face hub, cached)
  ``CHECKPOINT``          a weights file (mc2export, open_clip, Apple); the variant is read or guessed
  ``VARIANT=CHECKPOINT``  both explicit
  ``module:function``     a callable returning a teacher object: ``embed_dim`` (int),
                          ``preprocess`` (dict: resolution, mean, std), optional ``logit_scale`` (float),
                          ``encode_image(pixels [B,3,R,R]) -> [B,D]``, ``encode_text(list[str]) -> [B,D]``
Captioners: ``--captions FILE`` (JSON {key: [captions]} or JSONL {"key": ..., "captions": [...]}; for an
image folder the key may also be the image path relative to the folder) or ``--captioner
module:function`` called as ``f(images)`` or ``f(images, ground_truth_captions)`` on a list of PIL
images, returning one list of captions per image.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import re
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from ..errors import UserError
from ..strictjson import loads as strict_loads
from ..outputs import output_dir, run_folder
from .augment import AugmentConfig, draw, replay, sample_rng, to_tensor
from .data import (FORMAT, MANIFEST, SKIP_LIMIT, SampleError, ShardWriter, Source, Stats, decode_image,
                   encode_embeddings, image_entry, write_json_atomic)

_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass
class ReinforceConfig:
    src: List[str]
    teachers: List[str]
    out: str
    num_aug: int = 10
    captions: Optional[str] = None          # a captions file
    captioner: Optional[str] = None         # or module:function
    num_syn: Optional[int] = None           # keep at most this many synthetic captions per image
    shard_size: int = 1000                  # images per shard (image-folder sources)
    emb_format: str = "npz"                 # npz (fp32) or pth.gz (bf16)
    images: str = "embed"                   # embed the images, or "join" them from the source tars by key
    aug_size: Optional[int] = None          # generation size of the crops (default: the first teacher's)
    crop_scale: Optional[List[float]] = None  # RandomResizedCrop area range (default 0.08, 1: DataCompDR's)
    rand_augment: bool = True               # RandAugment after the crop (DataCompDR: yes)
    teacher_scales: Optional[List[float]] = None
    batch_size: int = 32                    # images per step (x num_aug views through each teacher)
    seed: int = 0
    device: str = "auto"


# ------------------------------------------------------------------------------------------- teachers
def load_callable(spec: str, what: str) -> Callable:
    mod_name, fn_name = spec.split(":", 1)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise UserError(f"cannot import {what} module '{mod_name}' ({e}); is it on PYTHONPATH?") from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise UserError(f"{what} '{spec}': '{mod_name}' has no callable '{fn_name}'")
    return fn


class Teacher:
    """A teacher as reinforce uses it: unit embeddings of pixels and of texts."""

    def __init__(self, name: str, obj, dim: int, preprocess: dict, logit_scale: Optional[float], device,
                 text_fn: Callable[[List[str]], torch.Tensor], image_fn: Callable[[torch.Tensor], torch.Tensor]):
        self.name, self.obj, self.dim, self.device = name, obj, int(dim), device
        self.resolution = int(preprocess["resolution"])
        self.mean, self.std = tuple(preprocess.get("mean", (0, 0, 0))), tuple(preprocess.get("std", (1, 1, 1)))
        self.logit_scale = logit_scale
        self._text, self._image = text_fn, image_fn

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor, batch: int = 64) -> torch.Tensor:
        out = [self._image(pixels[i:i + batch].to(self.device)).float().cpu() for i in range(0, len(pixels), batch)]
        return _unit(torch.cat(out), self, "image")

    @torch.no_grad()
    def encode_texts(self, texts: List[str], batch: int = 256) -> torch.Tensor:
        out = [self._text(texts[i:i + batch]).float().cpu() for i in range(0, len(texts), batch)]
        return _unit(torch.cat(out), self, "text")

    def describe(self) -> dict:
        return {"name": self.name, "dim": self.dim, "logit_scale": self.logit_scale, "resolution": self.resolution}


def _unit(x: torch.Tensor, t: Teacher, kind: str) -> torch.Tensor:
    if x.ndim != 2 or x.shape[1] != t.dim:
        raise UserError(f"teacher {t.name} returned {kind} embeddings of shape {tuple(x.shape)}, expected [N, {t.dim}]")
    return torch.nn.functional.normalize(x, dim=-1)


def load_teacher(spec: str, device: torch.device, logit_scale: Optional[float] = None) -> Teacher:
    from .. import create_model, tokenize

    if _CALLABLE.match(spec) and not Path(spec).exists():
        obj = load_callable(spec, "teacher")()
        for attr in ("embed_dim", "preprocess", "encode_image", "encode_text"):
            if not hasattr(obj, attr):
                raise UserError(f"teacher '{spec}' returned an object without '{attr}' (see mc2export reinforce --help)")
        scale = logit_scale if logit_scale is not None else getattr(obj, "logit_scale", None)
        if scale is None:
            raise UserError(f"teacher '{spec}' has no logit_scale: pass --teacher-logit-scales")
        if hasattr(obj, "to"):
            obj = obj.to(device) or obj
        return Teacher(spec, obj, obj.embed_dim, obj.preprocess, float(scale), device,
                       text_fn=lambda texts: obj.encode_text(list(texts)), image_fn=obj.encode_image)
    variant, ckpt = None, None
    if "=" in spec:
        variant, ckpt = spec.split("=", 1)
    elif Path(spec).exists():
        ckpt = spec
    else:
        variant = spec
    model = create_model(variant, checkpoint=ckpt, pretrained=ckpt is None).to(device).eval()
    if model.text is None:
        raise UserError(f"teacher '{spec}' has no text tower (an image-only checkpoint): it cannot embed captions")
    card = model.card
    scale = logit_scale if logit_scale is not None else float(model.logit_scale.detach().exp())
    def amp():
        return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    def image_fn(px):
        with amp():
            return model.encode_image(px)

    def text_fn(texts):
        tokens = tokenize(texts, context_length=model.context_length).to(device)
        with amp():
            return model.encode_text(tokens)

    name = f"{card['id']}" + (f" ({ckpt})" if ckpt else " (pretrained)")
    return Teacher(name, model, card["embed_dim"], card["preprocess"], scale, device, text_fn, image_fn)


# ------------------------------------------------------------------------------------------ captioners
class Captioner:
    def __init__(self, cfg: ReinforceConfig):
        self.table: Optional[Dict[str, List[str]]] = None
        self.fn: Optional[Callable] = None
        self.limit = cfg.num_syn
        if cfg.captions and cfg.captioner:
            raise UserError("give either --captions FILE or --captioner module:function, not both")
        if cfg.captions:
            self.table = read_captions(cfg.captions)
            self.name = str(cfg.captions)
        elif cfg.captioner:
            if not _CALLABLE.match(cfg.captioner):
                raise UserError(f"--captioner must be module:function, got {cfg.captioner!r}")
            self.fn = load_callable(cfg.captioner, "captioner")
            try:
                n = len([p for p in inspect.signature(self.fn).parameters.values()
                         if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])
            except (TypeError, ValueError):
                n = 1
            self.with_gt = n >= 2
            self.name = cfg.captioner
        else:
            self.name = None

    @property
    def enabled(self) -> bool:
        return self.table is not None or self.fn is not None

    def __call__(self, samples: List[dict]) -> List[List[str]]:
        if not self.enabled:
            return [[] for _ in samples]
        if self.table is not None:
            out = []
            for s in samples:
                caps = self.table.get(s["key"]) or self.table.get(s.get("path") or "")
                if caps is None:
                    raise UserError(f"captions file {self.name} has no captions for sample '{s['key']}'"
                                    + (f" ({s['path']})" if s.get("path") else ""))
                out.append(caps)
        else:
            images = [s["image"] for s in samples]
            out = self.fn(images, [s["gt"] for s in samples]) if self.with_gt else self.fn(images)
            out = [[c] if isinstance(c, str) else c for c in out]
            if len(out) != len(samples):
                raise UserError(f"captioner {self.name} returned {len(out)} caption lists for {len(samples)} images")
        out = [[str(c) for c in caps if str(c).strip()][:self.limit] for caps in out]
        for s, caps in zip(samples, out):
            if not caps:
                raise UserError(f"captioner {self.name} gave no caption for sample '{s['key']}'")
        return out


def read_captions(path: str) -> Dict[str, List[str]]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"captions file not found: '{p}'")
    try:
        text = p.read_text(encoding="utf-8")
        if p.suffix == ".jsonl":
            table = {}
            for line in text.splitlines():
                if line.strip():
                    rec = strict_loads(line)
                    table[str(rec["key"])] = list(rec["captions"])
            return table
        obj = strict_loads(text)
        return {str(k): ([v] if isinstance(v, str) else list(v)) for k, v in obj.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"cannot read captions file '{p}' ({e}): expected JSON {{key: [captions]}} or JSONL "
                        '{"key": ..., "captions": [...]} lines') from None


# ------------------------------------------------------------------------------------------- reinforce
def _manifest(cfg: ReinforceConfig, source: Source, teachers: List[Teacher], aug: AugmentConfig,
              captioner: Captioner) -> dict:
    return {
        "format": FORMAT,
        "teachers": [dict(t.describe(), spec=s) for t, s in zip(teachers, cfg.teachers)],
        "embedding_dim": sum(t.dim for t in teachers),
        "num_aug": cfg.num_aug,
        "augment": aug.to_dict(),
        "emb_format": cfg.emb_format,
        "images": cfg.images,
        "sha256": "image bytes",
        "syn_key": "syn_text",
        "captioner": captioner.name,
        "num_syn": (cfg.num_syn or "all") if captioner.enabled else 0,
        "source": [str(x) for x in cfg.src],
        "source_kind": source.kind,
        "shard_size": cfg.shard_size if source.kind == "folder" else None,
        "seed": cfg.seed,
        "shards": [{"name": f"shard-{i:06d}.tar", "source": name} for i, name in enumerate(source.shard_names)],
    }


def check_out_folder(out: Path) -> None:
    """``--out`` is new, empty, or a folder a reinforce run wrote (it holds our ``dataset.json``): any other
    folder's files -- a ``shard-000000.tar`` of someone else included -- are never counted as done, nor
    replaced, nor removed."""
    from ..outputs import TMP_PREFIX

    out = Path(out)
    if not out.is_dir() or (out / MANIFEST).is_file():
        return
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith(TMP_PREFIX))
    if names:
        raise UserError(f"--out '{out}' holds files reinforce did not write ({', '.join(names[:3])}"
                        f"{', ...' if len(names) > 3 else ''}) and no {MANIFEST}: choose a new or empty folder")


def _stamp(tar: Path) -> list:
    st = tar.stat()
    return [st.st_size, st.st_mtime_ns]


def _done(out: Path, i: int) -> bool:
    """Shard ``i`` is done when its tar and the stats we write after it agree on its size and mtime (a tar
    alone is a run killed between the two, or not ours: made again; stats of older versions have no stamp)."""
    tar, st = out / f"shard-{i:06d}.tar", out / f"shard-{i:06d}.stats.json"
    if not (tar.is_file() and st.is_file()):
        return False
    try:
        rec = strict_loads(st.read_bytes())
    except (OSError, ValueError):
        return False
    st = tar.stat()
    return isinstance(rec, dict) and rec.get("tar", [st.st_size, st.st_mtime_ns]) == [st.st_size, st.st_mtime_ns]


def reinforce(cfg: ReinforceConfig) -> dict:
    output_dir(cfg.out, "--out")
    check_out_folder(cfg.out)
    if cfg.num_aug < 1:
        raise UserError("--num-aug must be at least 1")
    if cfg.emb_format not in ("npz", "pth.gz"):
        raise UserError(f"--format must be npz (fp32) or pth.gz (bf16), got {cfg.emb_format!r}")
    if cfg.images not in ("embed", "join"):
        raise UserError(f"--images must be embed or join, got {cfg.images!r}")
    if not cfg.teachers:
        raise UserError("no teacher: pass --teacher (repeatable), e.g. --teacher s2 or --teacher ckpt.safetensors")
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(cfg.device if cfg.device != "auto" else
                          (f"cuda:{local}" if torch.cuda.is_available() else "cpu"))
    source = Source(cfg.src if len(cfg.src) > 1 else cfg.src[0], shard_size=cfg.shard_size)
    if cfg.images == "join" and source.kind != "wds":
        raise UserError("--images join needs webdataset tars as the source (an image folder's images are embedded)")
    scales = cfg.teacher_scales or [None] * len(cfg.teachers)
    if len(scales) != len(cfg.teachers):
        raise UserError(f"{len(cfg.teachers)} teachers but {len(scales)} --teacher-logit-scales")
    captioner = Captioner(cfg)
    teachers = [load_teacher(s, device, sc) for s, sc in zip(cfg.teachers, scales)]
    scale = tuple(cfg.crop_scale or (0.08, 1.0))
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1:
        raise UserError(f"--crop-scale must be two numbers 0 < lo <= hi <= 1, got {cfg.crop_scale!r}")
    aug = AugmentConfig(size=cfg.aug_size or teachers[0].resolution, scale=scale, rand_augment=cfg.rand_augment)
    # one process: a run that ends without a finished shard takes its folder away again (ranks share it)
    keep = (lambda d: True) if world > 1 else (lambda d: any(d.glob("shard-*.tar")))
    with run_folder(cfg.out, keep) as out:
        return _reinforce(cfg, source, teachers, captioner, aug, out, rank, world)


def _reinforce(cfg: ReinforceConfig, source: Source, teachers: List[Teacher], captioner: Captioner,
               aug: AugmentConfig, out: Path, rank: int, world: int) -> dict:
    manifest = _manifest(cfg, source, teachers, aug, captioner)
    mpath = out / MANIFEST
    if mpath.is_file():
        old = strict_loads(mpath.read_bytes())
        diff = [k for k in manifest if k != "teachers" and old.get(k) != manifest[k]]
        if [t["spec"] for t in old.get("teachers", [])] != cfg.teachers:
            diff.insert(0, "teachers")
        if diff:
            raise UserError(f"'{out}' holds reinforced data made with other settings ({', '.join(diff)} differ): "
                            "use a new --out, or rerun with the same settings to resume")
    else:
        write_json_atomic(mpath, manifest)

    mine = [i for i in range(len(source)) if i % world == rank]
    todo = [i for i in mine if not _done(out, i)]
    prefix = f"[rank {rank}/{world}] " if world > 1 else ""
    print(f"{prefix}reinforcing {len(source)} shards of {cfg.src[0] if len(cfg.src) == 1 else cfg.src} into {out}: "
          f"{len(mine)} mine, {len(mine) - len(todo)} already done; teachers "
          f"{', '.join(f'{t.name} ({t.dim}-d, scale {t.logit_scale:g})' for t in teachers)}; {cfg.num_aug} "
          f"augmentations at {aug.size} px; captions: {captioner.name or 'none'}", file=sys.stderr, flush=True)
    total = Stats()
    t0, done_samples = time.time(), 0
    for n, i in enumerate(todo, 1):
        stats = Stats()
        count = _reinforce_shard(i, source, teachers, captioner, aug, cfg, out / f"shard-{i:06d}.tar", stats,
                                 progress=_Progress(f"{prefix}shard {i} ({n}/{len(todo)})", t0, done_samples))
        done_samples += count
        if done_samples == 0 and total.skipped + stats.skipped >= SKIP_LIMIT:  # bounded: not every shard for nothing
            (out / f"shard-{i:06d}.tar").unlink(missing_ok=True)
            raise UserError(f"{prefix}{total.skipped + stats.skipped} samples were skipped and none was usable "
                            f"({', '.join(f'{k}: {v}' for k, v in stats.reasons.items())}): check the source")
        write_json_atomic(out / f"shard-{i:06d}.stats.json", {**stats.as_dict(), "samples": count,
                                                             "tar": _stamp(out / f"shard-{i:06d}.tar")})
        for k in ("shards", "corrupt_shards", "samples", "skipped"):
            setattr(total, k, getattr(total, k) + getattr(stats, k))
        total.reasons.update(stats.reasons)
        print(f"{chr(13) if sys.stderr.isatty() else ''}{prefix}shard {i} done ({n}/{len(todo)}): {count} samples written"
              + (f", {stats.skipped} skipped" if stats.skipped else "")
              + (", SOURCE SHARD CORRUPT (kept the samples before the damage)" if stats.corrupt_shards else "")
              + f"; {done_samples / max(time.time() - t0, 1e-9):.1f} samples/s", file=sys.stderr, flush=True)
    if todo and done_samples == 0:  # every image unreadable: empty shards would count as done on a rerun
        for i in todo:
            for f in (out / f"shard-{i:06d}.tar", out / f"shard-{i:06d}.stats.json"):
                f.unlink(missing_ok=True)
        why = ", ".join(f"{k}: {v}" for k, v in total.reasons.items()) or "the source holds no image-text samples"
        raise UserError(f"{prefix}no usable sample in {cfg.src[0] if len(cfg.src) == 1 else cfg.src} ({why}): "
                        "check the images (are they JPEG/PNG/WebP files?) and run again")
    summary = {"rank": rank, "world": world, "shards_written": len(todo), "samples_written": done_samples,
               "skipped": total.skipped, "corrupt_source_shards": total.corrupt_shards,
               "reasons": dict(total.reasons), "seconds": round(time.time() - t0, 2), "out": str(out)}
    print(f"{prefix}done: {done_samples} samples in {len(todo)} new shards"
          + (f"; skipped {total.skipped} samples ({', '.join(f'{k}: {v}' for k, v in total.reasons.items())})"
             if total.skipped or total.corrupt_shards else "") + f" -> {out}", file=sys.stderr, flush=True)
    return summary


class _Progress:
    """Progress within a shard: rewritten in place on a terminal, a line every 30 s in a log file."""

    def __init__(self, label: str, t0: float, before: int):
        self.label, self.t0, self.before, self.last = label, t0, before, time.time()
        self.tty = sys.stderr.isatty()

    def __call__(self, k: int) -> None:
        now = time.time()
        if not self.tty and now - self.last < 30:
            return
        self.last = now
        rate = (self.before + k) / max(now - self.t0, 1e-9)
        print(f"{chr(13) if self.tty else ''}{self.label}: {k} samples, {rate:.1f} samples/s",
              end="" if self.tty else "\n", file=sys.stderr, flush=True)


def _reinforce_shard(index: int, source: Source, teachers: List[Teacher], captioner: Captioner,
                     aug: AugmentConfig, cfg: ReinforceConfig, path: Path, stats: Stats, progress=None) -> int:
    writer = ShardWriter(path)
    try:
        chunk: List[dict] = []
        for s in source.samples(index, stats):
            rec = _prepare(s, aug, cfg, stats)
            if rec is not None:
                chunk.append(rec)
            if len(chunk) == cfg.batch_size:
                _write_chunk(chunk, teachers, captioner, aug, cfg, writer)
                chunk = []
                if progress:
                    progress(writer.count)
        if chunk:
            _write_chunk(chunk, teachers, captioner, aug, cfg, writer)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return writer.count


def _prepare(s: dict, aug: AugmentConfig, cfg: ReinforceConfig, stats: Stats) -> Optional[dict]:
    where = f"{s.get('__url__', '?')} key {s['__key__']}"
    ent = image_entry(s)
    if ent is None:
        stats.skip("no image entry", where)
        return None
    if "txt" not in s:
        stats.skip("no caption (txt)", where)
        return None
    try:
        image = decode_image(ent[1])
    except SampleError as e:
        stats.skip(str(e), where)
        return None
    rng = sample_rng(cfg.seed, s["__key__"])
    params = [draw(aug, rng, *image.size) for _ in range(cfg.num_aug)]
    meta = {}
    if "json" in s:
        try:
            meta = strict_loads(s["json"])
            meta = meta if isinstance(meta, dict) else {}
        except ValueError:
            meta = {}
    url = s.get("url.txt") or s.get("url")
    return {"key": s["__key__"], "ext": ent[0], "bytes": ent[1], "image": image, "params": params,
            "gt": s["txt"].decode("utf-8", "replace").strip(), "path": s.get("__path__"), "meta": meta,
            "url": url.decode("utf-8", "replace").strip() if url else (
                Path(s["__url__"]).resolve().as_uri() if "__path__" in s else f"{s['__url__']}#{s['__key__']}")}


def _write_chunk(chunk: List[dict], teachers: List[Teacher], captioner: Captioner, aug: AugmentConfig,
                 cfg: ReinforceConfig, writer: ShardWriter) -> None:
    syn = captioner(chunk)
    n = cfg.num_aug
    image_embs, text_embs = [], []
    texts = [t for rec, caps in zip(chunk, syn) for t in [rec["gt"], *caps]]
    for t in teachers:
        views = [to_tensor(replay(rec["image"], p, t.resolution, aug.size, aug.interpolation), t.mean, t.std)
                 for rec in chunk for p in rec["params"]]
        image_embs.append(t.encode_images(torch.stack(views)).reshape(len(chunk), n, t.dim))
        text_embs.append(t.encode_texts(texts))
    image_emb = torch.cat(image_embs, dim=-1).numpy()
    text_all = torch.cat(text_embs, dim=-1).numpy()
    row = 0
    for k, (rec, caps) in enumerate(zip(chunk, syn)):
        m = 1 + len(caps)
        ext, emb = encode_embeddings(image_emb[k], text_all[row:row + m], cfg.emb_format)
        row += m
        meta = {"uid": str(rec["meta"].get("uid", rec["key"])), "sha256": hashlib.sha256(rec["bytes"]).hexdigest()}
        if rec["path"]:
            meta["path"] = rec["path"]
        files = {"url.txt": rec["url"].encode(), "syn.json": json.dumps({"syn_text": caps}).encode(),
                 "paug.json": json.dumps({"param_aug": rec["params"]}).encode(), ext: emb,
                 "json": json.dumps(meta).encode()}
        if cfg.images == "embed":
            files[rec["ext"]] = rec["bytes"]
            files["txt"] = rec["gt"].encode()
        writer.write(rec["key"], files)


__all__ = ["ReinforceConfig", "reinforce", "load_teacher", "Teacher", "Captioner", "read_captions"]
