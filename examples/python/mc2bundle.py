"""A minimal reader of an mc2export bundle, the way an app developer prototypes before writing Swift/Kotlin.

Uses only the bundle folder (``config.json``, the model files, ``vocab.json`` + ``merges.txt``) and the
runtime the bundle was exported for -- no mc2export, no PyTorch model code:

* ONNX bundles: ``pip install onnxruntime numpy pillow ftfy regex``
* ExecuTorch bundles: ``pip install executorch numpy pillow ftfy regex`` (ExecuTorch's Python runtime)
* Core ML bundles: ``pip install coremltools numpy pillow ftfy regex`` -- prediction needs macOS
* OpenVINO bundles: ``pip install openvino numpy pillow ftfy regex`` (compiled with the properties in
  ``config.json``: an fp32 model needs its f32 hint, OpenVINO computes in bf16 by default on bf16 CPUs)

What the apps do, in Python:

* tokenizer: CLIP's byte-level BPE read from ``vocab.json`` / ``merges.txt``, cleaning = ftfy.fix_text,
  html.unescape twice, whitespace collapse, lower-case (exactly mc2export.tokenizer / open_clip), rows
  ``[49406, ids..., 49407, 0...]`` of ``context_length`` int32, long prompts truncated with EOT last;
* preprocessing from ``config.json``: EXIF orientation, shortest side -> resolution (PIL filter named in
  the config), center crop, RGB; the ONNX / ExecuTorch image models take float32 NCHW ``u8 / 255`` and
  normalize inside, Core ML takes the R x R picture itself (an ImageType);
* outputs: L2-normalized embeddings when ``output_normalized`` is true (normalized again here anyway).
"""
from __future__ import annotations

import hashlib
import html
import json
import math
import os
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

SOT, EOT = 49406, 49407
FORMAT = "mc2export-bundle"
BUNDLE_VERSION = 2
MAX_RESIZED_PIXELS = 1 << 26  # mc2export.preprocess.MAX_RESIZED_PIXELS: a 1 x 100000 PNG would need ~20 GB
EXTENSIONS = {"onnx": ".onnx", "executorch": ".pte", "coreml": ".mlpackage", "openvino": ".xml"}


class BundleError(Exception):
    """A problem with the bundle folder, worded for the user."""


# -- tokenizer -----------------------------------------------------------------------------------------------

def _bytes_to_unicode() -> Dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


class ClipTokenizer:
    """CLIP BPE from a bundle's ``vocab.json`` + ``merges.txt`` (equal to open_clip's SimpleTokenizer)."""

    def __init__(self, vocab_path: Path, merges_path: Path, context_length: int = 77):
        try:
            import ftfy
            import regex
        except ImportError:
            raise BundleError("the tokenizer needs ftfy and regex: pip install ftfy regex") from None
        self._ftfy = ftfy
        self.encoder: Dict[str, int] = json.loads(Path(vocab_path).read_text(encoding="utf-8"))
        lines = Path(merges_path).read_text(encoding="utf-8").split("\n")[1:]  # skip exactly the header line
        merges = [tuple(line.split()) for line in lines if line]
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.byte_encoder = _bytes_to_unicode()
        self.context_length = context_length
        self.pattern = regex.compile(
            r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE)
        self.cache = {"<start_of_text>": [SOT], "<end_of_text>": [EOT]}

    def clean(self, text: str) -> str:
        text = html.unescape(html.unescape(self._ftfy.fix_text(text)))
        return " ".join(text.strip().split()).lower()

    def _bpe(self, token: str) -> List[int]:
        if token in self.cache:
            return self.cache[token]
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = [(self.ranks.get(p, 1 << 30), i) for i, p in enumerate(zip(word, word[1:]))]
            rank, _ = min(pairs)
            if rank == 1 << 30:
                break
            first, second = next(p for p in zip(word, word[1:]) if self.ranks.get(p) == rank)
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        ids = [self.encoder[w] for w in word]
        self.cache[token] = ids
        return ids

    def encode(self, text: str) -> List[int]:
        out: List[int] = []
        for piece in self.pattern.findall(self.clean(text)):
            out.extend(self._bpe("".join(self.byte_encoder[b] for b in piece.encode("utf-8"))))
        return out

    def __call__(self, text: str) -> Tuple[np.ndarray, bool]:
        """(int32 row of context_length, truncated?)."""
        ids = [SOT, *self.encode(text), EOT]
        truncated = len(ids) > self.context_length
        if truncated:
            ids = ids[: self.context_length]
            ids[-1] = EOT
        row = np.zeros(self.context_length, dtype=np.int32)
        row[: len(ids)] = ids
        return row, truncated


# -- preprocessing -------------------------------------------------------------------------------------------

def load_crop(path, resolution: int, interpolation: str):
    """The R x R RGB PIL image the models see: EXIF orientation, shortest side -> R, center crop."""
    from PIL import Image, ImageOps

    filters = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
    if interpolation not in filters:
        raise BundleError(f"unsupported interpolation {interpolation!r} in config.json")
    try:
        with Image.open(path) as im:
            w, h = im.size  # from the header: refuse a bomb before decoding it (mc2export.preprocess.check_decodable)
            if w * h > (Image.MAX_IMAGE_PIXELS or 89478485) or max(w, h) > 1024 * max(1, min(w, h)):
                raise BundleError(f"image '{path}' ({w}x{h}) is too large or has an extreme aspect ratio: crop it first")
            im.load()
            img = ImageOps.exif_transpose(im)
    except (OSError, ValueError) as e:
        raise BundleError(f"cannot read image '{path}': {e}") from None
    if img.mode not in ("RGB", "RGBA", "L", "LA"):
        img = img.convert("RGBA" if "A" in img.mode else "RGB")
    w, h = img.size
    size = (resolution, int(resolution * h / w)) if w <= h else (int(resolution * w / h), resolution)
    if size[0] * size[1] > MAX_RESIZED_PIXELS:
        raise BundleError(f"image '{path}' ({w}x{h}) has an extreme aspect ratio: crop it first")
    if size != (w, h):
        img = img.resize(size, filters[interpolation])
    left, top = int(round((size[0] - resolution) / 2.0)), int(round((size[1] - resolution) / 2.0))
    return img.crop((left, top, left + resolution, top + resolution)).convert("RGB")


# -- the bundle ----------------------------------------------------------------------------------------------
# The reading rules (docs/bundle.md, "Reading a bundle safely"): config.json must hash to config.json.sha256,
# bundle_version must be 2, every path stays inside the folder (symlinks resolved), every field has its type.

def inside(folder: Path, rel, field: str) -> Path:
    """``folder / rel`` if ``rel`` is a relative POSIX path that resolves inside ``folder``."""
    ok = isinstance(rel, str) and rel and not rel.startswith("/") and "\\" not in rel and "\0" not in rel \
        and ":" not in rel.split("/")[0] and all(p not in ("", ".", "..") for p in rel.split("/"))
    if ok:
        root = os.path.realpath(folder)
        real = os.path.realpath(os.path.join(root, rel))
        ok = real.startswith(root.rstrip(os.sep) + os.sep)
    if not ok:
        raise BundleError(f"config.json {field} {str(rel)[:100]!r} is not a path inside the bundle: re-export it")
    return Path(folder) / rel


def _no_constant(name):
    raise ValueError(f"{name} is not a number")


def _finite(text):
    x = float(text)
    if not math.isfinite(x):
        raise ValueError(f"{text[:30]} is out of range")
    return x


def read_config(folder: Path) -> dict:
    """config.json, checked: its sha256 file, the format and version, and the fields this reader uses."""
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise BundleError(f"'{folder}' is not an mc2export bundle (no config.json)")
    inside(folder, "config.json", "file")
    data = cfg_path.read_bytes()
    try:
        cfg = json.loads(data.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError) as e:
        raise BundleError(f"config.json is not valid JSON: {str(e)[:120]}") from None
    if not isinstance(cfg, dict) or cfg.get("format") != FORMAT:
        raise BundleError(f"'{folder}' is not an mc2export bundle (config.json format is not {FORMAT!r})")
    if cfg.get("bundle_version") != BUNDLE_VERSION:
        raise BundleError(f"bundle_version {str(cfg.get('bundle_version'))[:20]}: written by another mc2export; "
                          "re-export with this one")
    sha = folder / "config.json.sha256"
    want = f"{hashlib.sha256(data).hexdigest()}  config.json\n".encode()
    if not sha.is_file() or sha.read_bytes()[:200] != want:
        raise BundleError("config.json does not match config.json.sha256: the bundle was edited or damaged")
    pre, models = cfg.get("preprocess"), cfg.get("models")

    def whole(v, lo, hi):
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi

    if not (isinstance(pre, dict) and whole(pre.get("resolution"), 1, 4096) and isinstance(pre.get("interpolation"), str)
            and all(isinstance(pre.get(k), list) and len(pre[k]) == 3 and all(isinstance(x, (int, float)) for x in pre[k])
                    for k in ("mean", "std"))):
        raise BundleError("config.json preprocess is not {resolution 1..4096, interpolation, mean[3], std[3]}")
    if not whole(cfg.get("embed_dim"), 1, 8192) or not isinstance(cfg.get("runtime"), str):
        raise BundleError("config.json embed_dim must be an integer in 1..8192 and runtime a string")
    if not (isinstance(models, dict) and models and all(t in ("image", "text") and isinstance(m, dict)
                                                        for t, m in models.items())):
        raise BundleError("config.json models must name the image and/or text model")
    ls = cfg.get("logit_scale")
    if ls is not None and (isinstance(ls, bool) or not isinstance(ls, (int, float))):
        raise BundleError("config.json logit_scale must be a number")
    tok = cfg.get("tokenizer")
    if tok is not None and (not isinstance(tok, dict) or not whole(tok.get("context_length", 77), 1, 1024)):
        raise BundleError("config.json tokenizer must hold context_length 1..1024")
    return cfg


class Bundle:
    """``Bundle(folder)``: config, tokenizer and the two towers in the bundle's runtime."""

    def __init__(self, folder, threads: int = 0):
        self.path = Path(folder)
        if not self.path.is_dir():
            raise BundleError(f"bundle folder '{self.path}' not found: export one with `mc2export onnx --variant s0 --out DIR`")
        cfg = read_config(self.path)
        self.config = cfg
        self.runtime = cfg["runtime"]
        if self.runtime not in EXTENSIONS:
            raise BundleError(f"unknown runtime {self.runtime!r} in config.json")
        pre = cfg["preprocess"]
        self.resolution = pre["resolution"]
        self.interpolation = pre["interpolation"]
        self.embed_dim = cfg["embed_dim"]
        self.logit_scale = float(cfg.get("logit_scale") or 100.0)
        models = cfg["models"]
        self.files = {t: inside(self.path, m["file"], f"models.{t}.file") for t, m in models.items()}
        for t, f in self.files.items():
            if not f.exists():
                raise BundleError(f"the {t} model '{f.name}' listed in config.json is missing from the bundle")
        contract = (models.get("image") or {}).get("input") or {}
        norm = str(contract.get("normalization", "inside the model"))
        self.app_normalizes = not (norm.startswith("inside") or norm.startswith("none")) and self.runtime != "coreml"
        self.mean = np.array(pre["mean"], np.float32).reshape(1, 3, 1, 1)
        self.std = np.array(pre["std"], np.float32).reshape(1, 3, 1, 1)
        self._tok = None
        self._runner = _RUNNERS[self.runtime](self, threads)

    @property
    def tokenizer(self) -> ClipTokenizer:
        if self._tok is None:
            tok = self.config.get("tokenizer") or {}
            self._tok = ClipTokenizer(inside(self.path, tok.get("vocab", "vocab.json"), "tokenizer.vocab"),
                                      inside(self.path, tok.get("merges", "merges.txt"), "tokenizer.merges"),
                                      int(tok.get("context_length") or self.config.get("context_length") or 77))
        return self._tok

    def image_input(self, crop) -> np.ndarray:
        x = np.asarray(crop, dtype=np.uint8).transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255)
        if self.app_normalizes:
            x = (x - self.mean) / self.std
        return np.ascontiguousarray(x, dtype=np.float32)

    def encode_image(self, path) -> np.ndarray:
        if "image" not in self.files:
            raise BundleError("this bundle has no image model (exported with --towers text)")
        crop = load_crop(path, self.resolution, self.interpolation)
        return _unit(self._runner.image(crop))

    def encode_text(self, text: str) -> Tuple[np.ndarray, bool]:
        if "text" not in self.files:
            raise BundleError("this bundle has no text model (exported with --towers image)")
        row, truncated = self.tokenizer(text)
        return _unit(self._runner.text(row[None])), truncated


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64).reshape(-1)
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


class _Onnx:
    def __init__(self, b: Bundle, threads: int):
        try:
            import onnxruntime as ort
        except ImportError:
            raise BundleError("an ONNX bundle needs ONNX Runtime: pip install onnxruntime") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.s = {t: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for t, p in b.files.items()}
        self.b = b
        for t, s in self.s.items():  # the apps feed by name: the model's names must be config.json's
            for side, got in (("inputs", s.get_inputs()), ("outputs", s.get_outputs())):
                want = [x.get("name") for x in b.config["models"][t].get(side) or [] if isinstance(x, dict)]
                if want and want != [a.name for a in got]:
                    raise BundleError(f"the {t} model's {side} {[a.name for a in got]} are not config.json's {want}: "
                                      "re-export the bundle")

    def image(self, crop):
        s = self.s["image"]
        return s.run(None, {s.get_inputs()[0].name: self.b.image_input(crop)})[0][0]

    def text(self, tokens):
        s = self.s["text"]
        return s.run(None, {s.get_inputs()[0].name: tokens.astype(np.int32)})[0][0]


class _ExecuTorch:
    def __init__(self, b: Bundle, threads: int):
        try:
            import torch  # noqa: F401  (ExecuTorch's Python runtime exchanges torch tensors)
            from executorch.runtime import Runtime
        except ImportError:
            raise BundleError("an ExecuTorch bundle needs ExecuTorch's runtime: pip install executorch") from None
        rt = Runtime.get()
        self.m = {t: rt.load_program(str(p)).load_method("forward") for t, p in b.files.items()}
        self.b = b

    def _run(self, tower, x):
        import torch

        return self.m[tower].execute([torch.from_numpy(x)])[0].numpy()[0]

    def image(self, crop):
        return self._run("image", self.b.image_input(crop))

    def text(self, tokens):
        return self._run("text", np.ascontiguousarray(tokens, dtype=np.int32))


class _CoreML:
    def __init__(self, b: Bundle, threads: int):
        if sys.platform != "darwin":
            raise BundleError("Core ML bundles run on macOS (Core ML has no Linux/Windows runtime): use the ONNX or "
                              "ExecuTorch bundle of the same model here")
        try:
            import coremltools as ct
        except ImportError:
            raise BundleError("a Core ML bundle needs coremltools: pip install coremltools") from None
        self.m = {t: ct.models.MLModel(str(p), compute_units=ct.ComputeUnit.ALL) for t, p in b.files.items()}

    def image(self, crop):  # ImageType input: the R x R picture, scale/bias are in the model
        return self.m["image"].predict({"image": crop})["embedding"][0]

    def text(self, tokens):
        return self.m["text"].predict({"tokens": tokens.astype(np.int32)})["embedding"][0]


class _OpenVINO:
    def __init__(self, b: Bundle, threads: int):
        try:
            import openvino as ov
        except ImportError:
            raise BundleError("an OpenVINO bundle needs OpenVINO: pip install openvino") from None
        core = ov.Core()
        bf16 = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        self.r = {}
        for t, p in b.files.items():
            props = dict(b.config["models"][t].get("openvino", {}).get("properties") or {})
            if props.get("INFERENCE_PRECISION_HINT") == "bf16" and not bf16:
                props["INFERENCE_PRECISION_HINT"] = "f32"  # no bf16 units on this CPU
            if threads:
                props["INFERENCE_NUM_THREADS"] = threads
            self.r[t] = core.compile_model(str(p), "CPU", props).create_infer_request()
        self.b = b

    def image(self, crop):
        return self.r["image"].infer({0: self.b.image_input(crop)})[0][0]

    def text(self, tokens):
        return self.r["text"].infer({0: np.ascontiguousarray(tokens, dtype=np.int32)})[0][0]


_RUNNERS = {"onnx": _Onnx, "executorch": _ExecuTorch, "coreml": _CoreML, "openvino": _OpenVINO}

SIMPLE_TEMPLATES = ("itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
                    "a {} in a video game.", "art of the {}.", "a photo of the small {}.")


def class_embeddings(bundle: Bundle, labels: Sequence[str], templates: Sequence[str]) -> Tuple[np.ndarray, int]:
    """``[C, D]`` unit vectors (mean of each label's normalized prompt embeddings) and the number of
    prompts that had to be truncated to the context length."""
    rows, cut = [], 0
    for label in labels:
        embs = []
        for t in templates:
            e, truncated = bundle.encode_text(t.format(label))
            embs.append(e)
            cut += truncated
        rows.append(_unit(np.mean(embs, axis=0)))
    return np.stack(rows), cut


def parse_labels(text: str) -> List[str]:
    labels = [s.strip() for s in text.replace("\n", ",").split(",") if s.strip()]
    if not labels:
        raise BundleError('empty label list: pass --labels "cat,dog,car"')
    dup = next((x for x in labels if labels.count(x) > 1), None)
    if dup is not None:
        raise BundleError(f"label {dup!r} appears twice: give each class once")
    return labels
