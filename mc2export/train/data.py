"""Reinforced (DataCompDR-format) and plain image-text data: webdataset tars read with ``tarfile``.

File compatibility with webdataset: a sample is the run of consecutive tar members sharing a *key*
(the member path up to the first dot of its basename); the rest of the name is the extension
(``url.txt``, ``syn.json``, ``paug.json``, ``npz``, ``pth.gz``, ``json``, ``jpg``, ``txt``, ...).
See ``docs/reinforced_data.md`` for the per-sample layout.

Damaged data is never skipped silently: every corrupt shard and every skipped sample is counted in a
:class:`Stats` (shown in progress lines and in the training log) and reported once on stderr. A
shard whose embeddings do not have the teachers' width is a configuration error and stops the run.
"""
from __future__ import annotations

import glob
import gzip
import io
import json
import os
import re
import sys
import tarfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import UserError
from ..strictjson import loads as strict_loads

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp")
FOLDER_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
MANIFEST = "dataset.json"
FORMAT = "mc2export-dr/1"
SYN_KEY_REGEX = r"^syn_text.*$"  # Apple's --dataset-reinforcement-syn-text-key-regex default


class EmbeddingMismatch(Exception):
    """A shard's embeddings do not match the teachers (fatal: the data and the run disagree)."""


class SampleError(Exception):
    """One sample cannot be used (counted and skipped)."""


@dataclass
class Stats:
    """Counters of one reader; merged across workers and ranks for the log."""

    shards: int = 0
    corrupt_shards: int = 0
    samples: int = 0
    skipped: int = 0
    reasons: Counter = field(default_factory=Counter)
    warned: int = 0

    def skip(self, reason: str, where: str = "") -> None:
        self.skipped += 1
        self.reasons[reason] += 1
        self.warn(f"skipped a sample{(' in ' + where) if where else ''}: {reason}")

    def corrupt(self, shard: str, reason: str) -> None:
        self.corrupt_shards += 1
        self.reasons["corrupt shard"] += 1
        self.warn(f"corrupt shard '{shard}': {reason}; the samples before the damage were kept", force=True)

    def warn(self, msg: str, force: bool = False) -> None:
        # every corrupt shard is reported; skipped samples up to 20 times per reader, then counted only
        if force or self.warned < 20:
            print(f"warning: {msg}", file=sys.stderr, flush=True)
            self.warned += 1

    def as_dict(self) -> dict:
        return {"shards": self.shards, "corrupt_shards": self.corrupt_shards, "samples": self.samples,
                "skipped": self.skipped, "reasons": dict(self.reasons)}


def merge_stats(items: Sequence[dict]) -> dict:
    out = {"shards": 0, "corrupt_shards": 0, "samples": 0, "skipped": 0, "reasons": Counter()}
    for d in items:
        for k in ("shards", "corrupt_shards", "samples", "skipped"):
            out[k] += d.get(k, 0)
        out["reasons"].update(d.get("reasons", {}))
    out["reasons"] = dict(out["reasons"])
    return out


# --------------------------------------------------------------------------------------------- paths
def _brace_expand(spec: str) -> List[str]:
    """webdataset-style ``{000..009}`` ranges and ``{a,b}`` alternatives."""
    m = re.search(r"\{([^{}]*)\}", spec)
    if not m:
        return [spec]
    head, body, tail = spec[:m.start()], m.group(1), spec[m.end():]
    r = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if r:
        lo, hi, width = int(r.group(1)), int(r.group(2)), len(r.group(1))
        items = [str(i).zfill(width) for i in range(lo, hi + 1)]
    else:
        items = body.split(",")
    return [x for item in items for x in _brace_expand(head + item + tail)]


DATA_HINT = "pass an image folder (class_name/*.jpg), webdataset .tar shards or a reinforce --out folder"


def expand_shards(specs) -> List[str]:
    """Tar paths from a directory (its ``*.tar``), a file, a glob or a brace pattern (or a list of these)."""
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    out: List[str] = []
    for spec in specs:
        spec = str(spec)
        p = Path(spec)
        if p.is_dir():
            entries = sorted(p.iterdir())
            found = [str(x) for x in entries if x.name.endswith((".tar", ".tar.gz", ".tgz"))]
            if not entries:
                raise UserError(f"'{p}' is empty: {DATA_HINT}")
            if not found:
                names = ", ".join(x.name for x in entries[:3]) + (", ..." if len(entries) > 3 else "")
                raise UserError(f"'{p}' holds neither .tar shards nor class folders ({names}): {DATA_HINT}")
            out += found
            continue
        for item in _brace_expand(spec):
            matches = sorted(glob.glob(item)) if any(c in item for c in "*?[") else [item]
            if not matches:
                raise UserError(f"no file matches '{item}': {DATA_HINT}")
            for x in matches:
                if not Path(x).exists():
                    raise UserError(f"'{x}' not found: {DATA_HINT}")
                if not Path(x).is_file():
                    raise UserError(f"'{x}' is not a .tar shard: {DATA_HINT}")
                out.append(x)
    return out


# ---------------------------------------------------------------------------------------- tar reading
SKIP_LIMIT = 1000  # consecutive skipped samples after which a training stream gives up


def safe_member(name: str) -> bool:
    """A tar member name we read: relative, no ``..`` / empty components, no backslash or NUL. Others are
    refused (skipped and counted): their keys would travel into reinforce's shards and a consumer's paths."""
    parts = name.split("/")
    return bool(name) and not name.startswith("/") and "\\" not in name and "\0" not in name \
        and not re.match(r"[A-Za-z]:", name) and all(p not in ("", ".", "..") for p in parts)


def split_key(name: str) -> Tuple[str, str]:
    """webdataset's ``base_plus_ext``: ``dir/abc.seg.jpg`` -> (``dir/abc``, ``seg.jpg``)."""
    m = re.match(r"^((?:.*/|)[^.]+)[.]([^/]*)$", name)
    if not m:
        return name, ""
    return m.group(1), m.group(2)


def iter_members(path: str, stats: Optional[Stats] = None) -> Iterator[Tuple[str, bytes]]:
    """(name, bytes) of the regular files of a tar, streamed. A damaged shard ends the stream and is
    counted (``stats.corrupt``); a trailing garbage header, which ``tarfile`` treats as the end of the
    archive, is detected by checking that only zero padding follows the last member."""
    try:
        f = open(path, "rb")
    except OSError as e:
        if stats is not None:
            stats.corrupt(path, f"cannot open ({e.strerror})")
        return
    with f:
        try:
            with tarfile.open(fileobj=f, mode="r|*") as tf:
                for member in tf:
                    if not member.isfile():
                        continue
                    base = member.name.rsplit("/", 1)[-1]
                    if base.startswith(".") or (base.startswith("__") and base.endswith("__")):
                        continue
                    if not safe_member(member.name):
                        if stats is not None:
                            stats.skip("unsafe member name (absolute or '..')", f"{path}: {member.name[:80]!r}")
                        continue
                    data = tf.extractfile(member).read()
                    yield member.name, data
                end = tf.offset
            if not path.endswith((".gz", ".tgz")):
                f.seek(end)
                while True:
                    chunk = f.read(1 << 20)
                    if not chunk:
                        break
                    if chunk.count(0) != len(chunk):
                        raise tarfile.ReadError(f"unreadable data at byte {end} (a damaged member header)")
        except Exception as e:  # tarfile / gzip / bz2 / lzma raise many types on damage (TypeError: fuzzing)
            if stats is not None:
                stats.corrupt(path, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)


def iter_samples(path: str, stats: Optional[Stats] = None) -> Iterator[Dict[str, bytes]]:
    """Samples of a tar: dicts ``{"__key__": key, "__url__": path, ext: bytes, ...}`` grouped by key."""
    current: Optional[Dict] = None
    if stats is not None:
        stats.shards += 1
    for name, data in iter_members(path, stats):
        key, ext = split_key(name)
        if current is None or current["__key__"] != key:
            if current is not None:
                yield current
            current = {"__key__": key, "__url__": path}
        current[ext.lower()] = data
    if current is not None:
        yield current


class ShardWriter:
    """Writes one tar shard atomically: to ``NAME.tmp``, renamed to ``NAME`` on :meth:`close`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tar = tarfile.open(self.tmp, "w", format=tarfile.GNU_FORMAT)
        self.count = 0

    def write(self, key: str, files: Dict[str, bytes]) -> None:
        if not safe_member(key):
            raise ValueError(f"sample key {key!r} is not a safe member name")
        if "." in key.rsplit("/", 1)[-1]:
            raise ValueError(f"sample key {key!r} contains a dot: webdataset would split it")
        for ext, data in files.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode = len(data), 0, 0o444
            self._tar.addfile(info, io.BytesIO(data))
        self.count += 1

    def close(self) -> Path:
        self._tar.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._tar.close()
        finally:
            self.tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------- embeddings
def encode_embeddings(image_emb: np.ndarray, text_emb: np.ndarray, fmt: str) -> Tuple[str, bytes]:
    """(extension, bytes): ``npz`` (fp32, ``numpy.savez``) or ``pth.gz`` (bf16, gzipped ``torch.save``)."""
    if fmt == "npz":
        buf = io.BytesIO()
        np.savez(buf, image_emb=np.asarray(image_emb, np.float32), text_emb=np.asarray(text_emb, np.float32))
        return "npz", buf.getvalue()
    if fmt == "pth.gz":
        import torch

        buf = io.BytesIO()
        torch.save({"image_emb": torch.as_tensor(np.asarray(image_emb, np.float32)).to(torch.bfloat16),
                    "text_emb": torch.as_tensor(np.asarray(text_emb, np.float32)).to(torch.bfloat16)}, buf)
        return "pth.gz", gzip.compress(buf.getvalue(), compresslevel=6, mtime=0)
    raise UserError(f"unknown embedding format {fmt!r}: use npz (fp32) or pth.gz (bf16)")


def decode_embeddings(sample: Dict[str, bytes]) -> Dict[str, np.ndarray]:
    """All arrays of the sample's ``npz`` (preferred, fp32) or ``pth.gz`` (bf16) entry, as float32."""
    if "npz" in sample:
        with np.load(io.BytesIO(sample["npz"]), allow_pickle=False) as z:
            return {k: np.asarray(z[k], dtype=np.float32) for k in z.files}
    if "pth.gz" in sample:
        import torch

        obj = torch.load(io.BytesIO(gzip.decompress(sample["pth.gz"])), map_location="cpu", weights_only=True)
        if not isinstance(obj, dict):
            raise ValueError("pth.gz does not hold a dict")
        return {k: torch.as_tensor(v).float().numpy() for k, v in obj.items()}
    raise KeyError("no npz or pth.gz entry")


# --------------------------------------------------------------------------------------- image folder
def list_image_folder(root: str | os.PathLike) -> Tuple[List[str], List[Tuple[str, int]]]:
    """(sorted class folder names, [(image path, class index)]) of a ``class_name/*.jpg`` folder."""
    root = Path(root)
    if root.is_file():
        raise UserError(f"'{root}' is a file: pass the image folder (class_name/*.jpg) that holds it")
    if not root.is_dir():
        raise UserError(f"image folder not found: '{root}'")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise UserError(f"'{root}' has no class folders: expected an image folder (class_name/*.jpg), .tar shards, "
                        "or a reinforce output directory (dataset.json)")
    items = []
    for ci, name in enumerate(classes):
        for p in sorted((root / name).rglob("*")):
            if p.suffix.lower() in FOLDER_IMAGE_SUFFIXES and p.is_file():
                items.append((str(p), ci))
    if not items:
        raise UserError(f"no images (.jpg/.png/.webp/.bmp) under '{root}': expected an image folder "
                        "(class_name/*.jpg), .tar shards, or a reinforce output directory (dataset.json)")
    return classes, items


def class_caption(name: str) -> str:
    return f"a photo of a {name.replace('_', ' ')}"


class Source:
    """Image-text samples for ``reinforce`` or plain training: an image folder or webdataset tars.

    ``shards`` lists the units of work; :meth:`samples` yields sample dicts (``__key__``, an image
    entry, ``txt``) of one of them. Image-folder captions: a ``NAME.txt`` beside the image, else
    ``a photo of a {class name}``.
    """

    def __init__(self, spec, shard_size: int = 1000):
        self.spec = spec
        p = Path(str(spec[0] if isinstance(spec, (list, tuple)) and len(spec) == 1 else spec))
        if not isinstance(spec, (list, tuple)) and p.is_dir() and not any(p.glob("*.tar")) \
                and any(d.is_dir() for d in p.iterdir()):
            self.kind = "folder"
            self.classes, items = list_image_folder(p)
            self.root = p
            self.shards = [items[i:i + shard_size] for i in range(0, len(items), shard_size)]
            self.shard_names = [f"{self.root}#{i}" for i in range(len(self.shards))]
        else:
            self.kind = "wds"
            self.shards = expand_shards(spec)
            self.shard_names = list(self.shards)

    def __len__(self) -> int:
        return len(self.shards)

    def samples(self, index: int, stats: Optional[Stats] = None) -> Iterator[Dict]:
        shard = self.shards[index]
        if self.kind == "wds":
            yield from iter_samples(shard, stats)
            return
        if stats is not None:
            stats.shards += 1
        base = sum(len(s) for s in self.shards[:index])
        for k, (path, ci) in enumerate(shard):
            p = Path(path)
            try:
                data = p.read_bytes()
            except OSError as e:
                if stats is not None:
                    stats.skip(f"unreadable file {p} ({e.strerror})")
                continue
            side = p.with_suffix(".txt")
            caption = side.read_text(encoding="utf-8").strip() if side.is_file() else class_caption(self.classes[ci])
            ext = p.suffix.lower().lstrip(".")
            yield {"__key__": f"{base + k:09d}", "__url__": str(p), ext: data, "txt": caption.encode(),
                   "cls": str(ci).encode(), "__path__": str(p.relative_to(self.root))}


def image_entry(sample: Dict) -> Optional[Tuple[str, bytes]]:
    for ext in IMAGE_EXTS:
        if ext in sample:
            return ext, sample[ext]
    return None


def decode_image(data: bytes):
    from PIL import Image

    from ..preprocess import check_decodable

    try:
        with warnings.catch_warnings():  # Pillow's bomb warning: check_decodable refuses those
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                check_decodable(*im.size)  # from the header, before decoding (a bomb is a skipped sample)
                im.load()
                return im.convert("RGB")
    except Exception as e:  # PIL raises many types for damaged data
        raise SampleError(f"undecodable image ({type(e).__name__})") from None


def join_by_key(dr: Iterator[Dict], src: Iterator[Dict], stats: Optional[Stats] = None) -> Iterator[Dict]:
    """Add the image and caption of the source sample with the same key to each reinforced sample.

    Both streams are expected in the same key order with possible gaps (DataComp shards lose samples
    whose download failed); out-of-order keys are buffered."""
    buffer: Dict[str, Dict] = {}
    src = iter(src)
    for s in dr:
        key = s["__key__"]
        match = buffer.pop(key, None)
        while match is None:
            nxt = next(src, None)
            if nxt is None:
                break
            if nxt["__key__"] == key:
                match = nxt
            else:
                buffer[nxt["__key__"]] = nxt
        if match is None:
            if stats is not None:
                stats.skip(f"key {key} not in the source shard (no image to join)")
            continue
        merged = {k: v for k, v in match.items() if not k.startswith("__")}
        merged.update(s)
        yield merged


# ------------------------------------------------------------------------------------ training stream
class TarReader:
    """The shards of a training set; with ``sources``, images and captions are joined by key from the
    source shard of the same index (DataCompDR-12M ships no images)."""

    kind = "wds"

    def __init__(self, shards: List[str], sources: Optional[List[str]] = None):
        if sources is not None and len(sources) != len(shards):
            raise UserError(f"{len(shards)} reinforced shards but {len(sources)} source shards to join images "
                            "from: give one source shard per reinforced shard, in the same order")
        self.shards, self.sources = shards, sources

    def __len__(self) -> int:
        return len(self.shards)

    def samples(self, index: int, stats: Optional[Stats] = None) -> Iterator[Dict]:
        dr = iter_samples(self.shards[index], stats)
        if self.sources is None:
            return dr
        return join_by_key(dr, iter_samples(self.sources[index], None), stats)


@dataclass
class StreamSpec:
    """What a training stream produces (picklable: it travels to the loader's worker processes)."""

    batch_size: int
    size: int                          # the student's resolution
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    interpolation: str                 # the student's resize filter (replayed crops use it)
    context_length: int
    reinforced: bool
    aug: dict                          # AugmentConfig.to_dict(); its size = the generation size
    teacher_dims: Tuple[int, ...] = ()
    captions: str = "both"             # "both" (ground truth + synthetic) or "gt"
    syn_regex: str = SYN_KEY_REGEX
    shuffle_buffer: int = 256
    seed: int = 0
    verify_sha256: bool = False


def stream_seed(*parts) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little")


def _shuffled(items: Iterator, size: int, rng) -> Iterator:
    buf: list = []
    for x in items:
        buf.append(x)
        if len(buf) >= size:
            k = rng.randrange(len(buf))
            buf[k], buf[-1] = buf[-1], buf[k]
            yield buf.pop()
    rng.shuffle(buf)
    yield from buf


def make_example(s: Dict, spec: StreamSpec, rng) -> Dict:
    """One training example from a raw sample (raises SampleError or EmbeddingMismatch)."""
    from .augment import AugmentConfig, check_params, draw, replay, to_tensor

    ent = image_entry(s)
    if ent is None:
        raise SampleError("no image entry (jpg/png/webp)")
    if "txt" not in s:
        raise SampleError("no caption (txt)")
    gt = s["txt"].decode("utf-8", "replace").strip()
    ex: Dict = {"gt": gt}
    if spec.verify_sha256 and "json" in s:
        import hashlib

        try:
            want = strict_loads(s["json"]).get("sha256")
        except (ValueError, AttributeError):
            want = None
        if want and hashlib.sha256(ent[1]).hexdigest() != want:
            raise SampleError("image bytes do not match the sha256 in json (its stored crops would be wrong)")
    img = decode_image(ent[1])
    aug = AugmentConfig.from_dict(spec.aug)
    if spec.reinforced:
        try:
            paug = strict_loads(s["paug.json"])["param_aug"]
        except (KeyError, ValueError, TypeError):
            raise SampleError("missing or unreadable paug.json") from None
        if not isinstance(paug, list) or not paug:
            raise SampleError("paug.json holds no augmentations")
        embs: Dict[str, np.ndarray] = {}
        if spec.teacher_dims:  # distillation: the teachers' embeddings of this sample
            try:
                embs = decode_embeddings(s)
            except Exception as e:  # numpy / torch / gzip raise many types for damaged data
                raise SampleError(f"unreadable embeddings ({type(e).__name__})") from None
            image_emb, text_emb = embs.get("image_emb"), embs.get("text_emb")
            if image_emb is None or text_emb is None or image_emb.ndim != 2 or text_emb.ndim != 2:
                raise SampleError("the embeddings lack image_emb [N_aug, D] / text_emb [1 + N_syn, D]")
            want = sum(spec.teacher_dims)
            if image_emb.shape[1] != want or text_emb.shape[1] != want:
                raise EmbeddingMismatch(
                    f"shard '{s['__url__']}' holds {image_emb.shape[1]}-d teacher embeddings but the teachers are "
                    f"{'+'.join(map(str, spec.teacher_dims))} = {want}-d: this data was made with other teachers "
                    "(check --teacher-dims, or the data's dataset.json)")
            if len(paug) != image_emb.shape[0]:
                raise SampleError(f"paug.json has {len(paug)} augmentations but image_emb has "
                                  f"{image_emb.shape[0]} rows")
        k = rng.randrange(len(paug))
        params = paug[k]
        try:
            check_params(params)
        except ValueError as e:
            raise SampleError(f"bad augmentation parameters: {e}") from None
        if embs:
            ex["img_emb"], ex["gt_emb"] = embs["image_emb"][k], embs["text_emb"][0]
        if spec.captions == "both":
            try:
                syn = strict_loads(s["syn.json"])
            except (KeyError, ValueError):
                raise SampleError("missing or unreadable syn.json") from None
            keys = [key for key, v in syn.items() if re.match(spec.syn_regex, key) and isinstance(v, list) and v]
            if not keys:
                raise SampleError("no synthetic caption in syn.json")
            key = keys[rng.randrange(len(keys))]
            c = rng.randrange(len(syn[key]))
            ex["syn"] = str(syn[key][c])
            if embs:
                text_emb = embs["text_emb"]
                if text_emb.shape[0] > 1:  # DataCompDR layout: [ground truth, synthetic captions...]
                    if 1 + c >= text_emb.shape[0]:
                        raise SampleError("text_emb has fewer rows than 1 + the synthetic captions")
                    ex["syn_emb"] = text_emb[1 + c]
                elif f"{key}_emb" in embs and c < len(embs[f"{key}_emb"]):
                    ex["syn_emb"] = embs[f"{key}_emb"][c]
                else:
                    raise SampleError(f"no embedding of synthetic caption {key}[{c}]")
    else:
        params = draw(aug, rng, *img.size)
        if spec.captions == "both":
            raise SampleError("plain data has no synthetic captions")
    try:
        view = replay(img, params, spec.size, aug.size, spec.interpolation)
    except Exception as e:
        raise SampleError(f"cannot replay the augmentation ({type(e).__name__}: {e})") from None
    ex["image"] = to_tensor(view, spec.mean, spec.std)
    return ex


def collate(examples: List[Dict], spec: StreamSpec) -> Dict:
    import torch

    from ..tokenizer import tokenize

    out = {"images": torch.stack([e["image"] for e in examples]),
           "gt": tokenize([e["gt"] for e in examples], context_length=spec.context_length)}
    if "syn" in examples[0]:
        out["syn"] = tokenize([e["syn"] for e in examples], context_length=spec.context_length)
    for k in ("img_emb", "gt_emb", "syn_emb"):
        if k in examples[0]:
            out[k] = torch.from_numpy(np.stack([e[k] for e in examples]).astype(np.float32))
    return out


try:
    from torch.utils.data import IterableDataset as _IterableBase
except ImportError:  # pragma: no cover - torch is a dependency
    _IterableBase = object


class TrainStream(_IterableBase):
    """An endless stream of batches for one (segment, rank): every loader worker draws shards with
    replacement (webdataset's resampled shards) from its own RNG seeded by (seed, segment, rank,
    worker), shuffles samples in a buffer and yields collated batches. The stream of a segment is
    therefore a pure function of those numbers: a run resumed at a segment boundary sees exactly the
    batches the uninterrupted run saw. Each batch carries its worker's cumulative :class:`Stats`."""

    def __init__(self, reader, spec: StreamSpec, segment: int, rank: int):
        super().__init__()
        self.reader, self.spec, self.segment, self.rank = reader, spec, segment, rank

    def __iter__(self):
        import random

        import torch

        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        if info is not None:
            torch.set_num_threads(1)
        rng = random.Random(stream_seed(self.spec.seed, self.segment, self.rank, wid))
        stats = Stats()
        n = len(self.reader)

        def raw():
            dry = 0
            while True:
                got = False
                for s in self.reader.samples(rng.randrange(n), stats):
                    got = True
                    yield s
                dry = 0 if got else dry + 1
                if dry >= max(8, 2 * n):
                    return

        batch: List[Dict] = []
        dry = 0  # samples skipped since the last usable one
        for s in _shuffled(raw(), self.spec.shuffle_buffer, rng):
            try:
                ex = make_example(s, self.spec, rng)
            except SampleError as e:
                stats.skip(str(e), f"{s.get('__url__', '?')} key {s.get('__key__', '?')}")
                dry += 1
                if dry >= SKIP_LIMIT:  # the shards are read with replacement: without this, a spin forever
                    yield {"error": f"{dry} samples in a row were skipped and none was usable "
                                    f"({dict(stats.reasons)}): check the data (images, paug.json, captions)"}
                    return
                continue
            except EmbeddingMismatch as e:
                yield {"error": str(e)}
                return
            dry = 0
            stats.samples += 1
            batch.append(ex)
            if len(batch) == self.spec.batch_size:
                out = collate(batch, self.spec)
                out["stats"] = json.dumps(stats.as_dict())
                out["worker"] = wid
                yield out
                batch = []
        yield {"error": f"no usable samples left to read: {stats.corrupt_shards} of the shards read were corrupt "
                        f"and {stats.skipped} samples were skipped ({dict(stats.reasons)})"}


def batches(reader, spec: StreamSpec, segment: int, rank: int, workers: int) -> Iterator[Dict]:
    """The batch iterator of one segment (``workers`` loader processes, or in-process for 0)."""
    stream = TrainStream(reader, spec, segment, rank)
    if workers <= 0:
        return iter(stream)
    from torch.utils.data import DataLoader

    return iter(DataLoader(stream, batch_size=None, num_workers=workers, prefetch_factor=4,
                           persistent_workers=False))


# ------------------------------------------------------------------------------------------ manifest
def read_manifest(data: str | os.PathLike) -> Optional[dict]:
    p = Path(data)
    m = p / MANIFEST if p.is_dir() else None
    if m is None or not m.is_file():
        return None
    try:
        return strict_loads(m.read_bytes())
    except ValueError as e:
        raise UserError(f"cannot read '{m}': {e}") from None


def write_json_atomic(path: Path, obj) -> None:
    """Atomically, with a temporary name unique to the process (ranks may write the same file)."""
    from ..outputs import write_atomic

    write_atomic(path, json.dumps(obj, indent=1) + "\n")


__all__ = ["Stats", "merge_stats", "expand_shards", "iter_members", "iter_samples", "split_key", "safe_member",
           "SKIP_LIMIT", "ShardWriter",
           "encode_embeddings", "decode_embeddings", "list_image_folder", "Source", "image_entry",
           "decode_image", "join_by_key", "read_manifest", "EmbeddingMismatch", "SampleError", "MANIFEST",
           "FORMAT", "SYN_KEY_REGEX", "IMAGE_EXTS", "class_caption", "write_json_atomic", "TarReader", "StreamSpec",
           "TrainStream", "batches", "make_example", "collate"]
