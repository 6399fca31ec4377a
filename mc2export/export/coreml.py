"""Core ML export (ML program, iOS 17 / macOS 14) and its validation.

* Conversion from ``torch.export`` (``run_decompositions({})``, what coremltools 9 takes) -- faster than
  the TorchScript path and free of the MHA fast-path trap.
* Image input: ``ImageType`` (RGB pixel buffer, the app resizes + center-crops to R x R) with the
  card's normalization baked in. Core ML applies ``scale * pixel + bias[c]`` with *one* scale: when the
  std is the same for the three channels (every MobileCLIP except MobileCLIP2-S3/S4/L-14: std 1) the
  ImageType does everything (``scale = 1/(255 std)``, ``bias = -mean/std``); otherwise the ImageType does
  ``pixel/255 - mean[c]`` and the model starts with a per-channel multiply by ``1/std[c]`` (one tiny
  elementwise op; folding it into the first conv would be wrong at the zero-padded borders).
  With ``--batch N > 1`` the image input is a float32 MultiArray ``[N,3,R,R]`` in [0, 1] instead (Core ML
  image inputs carry one image), normalized inside like the ONNX model.
* Text input: int32 MultiArray ``[B, 77]``; argmax pooling on the int32 ids (``reduce_argmax`` takes
  int32). A float cast of the ids -- the usual way around int64 argmax -- is wrong in fp16: 49406 (SOT)
  and 49407 (EOT) both round to 49408 and argmax would pool the SOT at position 0.
* Outputs: ``embedding`` float32 (a cast at the end when computing in fp16: apps get Float32).
* Precisions: ``fp32``; ``fp16`` (compute precision float16, the Neural Engine's); ``int8`` (fp16 +
  linear symmetric per-channel int8 weights); ``pal6`` / ``pal4`` (fp16 + 6- / 4-bit k-means
  palettized weights, per tensor). Constants under 2048 elements (norm weights, biases, scales) are
  never compressed (``weight_threshold``).
* fp16 safety of the text tower: no attention mask constants (non-causal towers have none; causal ones
  use SDPA's ``is_causal``), argmax on int32 (above), L2 normalization pre-scaled by max|x|. After
  conversion every float constant is checked (NaN or a finite value beyond 65504 fails, infinities are
  reported), and the largest fp32
  activation on the probe set is reported against fp16's 65504 (``activation_absmax_fp32``).

Validation: on macOS (``sys.platform == "darwin"``) by prediction with Core ML. Elsewhere prediction
is impossible (no Core ML runtime): the saved program is checked (spec version, I/O names / types /
shapes, metadata, fp16 constants) and its weights, read back from the ``.mlpackage`` (decompressed if
palettized / quantized), are loaded into the PyTorch wrapper and run in the program's compute
precision (fp16 activations for fp16 / int8 / palettized). ``validation.json`` says
``prediction: skipped ...`` plainly.
"""
from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import torch

from ..errors import UserError

FORMAT = "coreml"
PRECISIONS = ("fp32", "fp16", "int8", "pal6", "pal4")
PIP_HINT = "pip install 'mc2export[export]'"
WEIGHT_THRESHOLD = 2048
DEDUP_MATCH = 0.02  # relative error under which a merged constant counts as the parameter's (int8 rounding: ~0.5%)
DEPLOYMENT = "iOS17"


def require() -> None:
    import logging

    logging.getLogger("coremltools").setLevel(logging.ERROR)
    try:
        import coremltools  # noqa: F401  (availability check)
    except ImportError:
        raise UserError(f"Core ML export needs coremltools: {PIP_HINT}") from None


def versions() -> Dict[str, str]:
    from .bundle import tool_versions

    return tool_versions(("coremltools", "scikit-learn"))


def _uniform_std(card: dict) -> bool:
    std = card["preprocess"]["std"]
    return max(std) - min(std) <= 1e-12


def _use_image_type(batch: int) -> bool:
    return batch == 1


def image_type_params(card: dict):
    """(scale, bias) of the ImageType: ``scale * pixel + bias[c]``."""
    mean, std = card["preprocess"]["mean"], card["preprocess"]["std"]
    if _uniform_std(card):
        s = float(std[0])
        return 1.0 / (255.0 * s), [-float(m) / s for m in mean]
    return 1.0 / 255.0, [-float(m) for m in mean]


def image_affine(card: dict, batch: int = 1):
    """(scale, bias) the wrapper applies to the image input after the ImageType's own scale/bias."""
    if not _use_image_type(batch):
        from .wrappers import image_input_affine

        return image_input_affine(card["preprocess"]["mean"], card["preprocess"]["std"])
    if _uniform_std(card):
        return [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]
    return [1.0 / float(s) for s in card["preprocess"]["std"]], [0.0, 0.0, 0.0]


def input_contract(tower: str, card: dict, batch: int = 1) -> dict:
    r = card["resolution"]
    if tower == "text":
        return {"name": "tokens", "type": "MultiArray", "dtype": "int32", "shape": [batch, card["text"]["context_length"]],
                "layout": "[SOT, ids..., EOT, 0...]", "sot": 49406, "eot": 49407, "pad": 0}
    if not _use_image_type(batch):
        return {"name": "image", "type": "MultiArray", "dtype": "float32", "shape": [batch, 3, r, r], "layout": "NCHW",
                "color": "RGB", "range": [0.0, 1.0], "normalization": "inside the model"}
    scale, bias = image_type_params(card)
    return {"name": "image", "type": "ImageType", "color": "RGB", "width": r, "height": r,
            "scale": scale, "bias": bias,
            "per_channel_std_in_model": not _uniform_std(card),
            "pixels": "8-bit RGB(A) pixel buffer already resized (shortest side) and center-cropped to R x R"}


def expected_io(tower: str, card: dict, batch: int) -> dict:
    r = card["resolution"]
    if tower == "image":
        inp = ({"name": "image", "dtype": "image:RGB", "shape": [r, r]} if _use_image_type(batch)
               else {"name": "image", "dtype": "float32", "shape": [batch, 3, r, r]})
    else:
        inp = {"name": "tokens", "dtype": "int32", "shape": [batch, card["text"]["context_length"]]}
    return {"inputs": [inp], "outputs": [{"name": "embedding", "dtype": "float32", "shape": [batch, card["embed_dim"]]}]}


def file_name(tower: str) -> str:
    return f"{tower}.mlpackage"


def _convert(tower: str, wrapper, example, precision: str, card: dict):
    import coremltools as ct

    ep = torch.export.export(wrapper, (example,)).run_decompositions({})
    batch = int(example.shape[0])
    if tower == "image" and _use_image_type(batch):
        scale, bias = image_type_params(card)
        inputs = [ct.ImageType(name="image", shape=tuple(example.shape), scale=scale, bias=bias,
                               color_layout=ct.colorlayout.RGB)]
    elif tower == "image":
        inputs = [ct.TensorType(name="image", shape=tuple(example.shape), dtype=np.float32)]
    else:
        inputs = [ct.TensorType(name="tokens", shape=tuple(example.shape), dtype=np.int32)]
    outputs = [ct.TensorType(name="embedding", dtype=np.float32)]
    cp = ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16
    return ct.convert(ep, inputs=inputs, outputs=outputs, convert_to="mlprogram",
                      minimum_deployment_target=getattr(ct.target, DEPLOYMENT), compute_precision=cp,
                      compute_units=ct.ComputeUnit.ALL, skip_model_load=sys.platform != "darwin")


def _compress(ml, precision: str, keep=()):
    """Compress the weights; constants named in ``keep`` stay as they are (fp16)."""
    import coremltools as ct

    opt = ct.optimize.coreml
    if precision == "int8":
        op_cfg = opt.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                             weight_threshold=WEIGHT_THRESHOLD)
        facts = {"method": "linear_quantize_weights", "mode": "linear_symmetric", "dtype": "int8",
                 "granularity": "per_channel"}
    else:
        nbits = int(precision[3:])
        op_cfg = opt.OpPalettizerConfig(mode="kmeans", nbits=nbits, granularity="per_tensor",
                                        weight_threshold=WEIGHT_THRESHOLD, num_kmeans_workers=1)
        facts = {"method": "palettize_weights", "mode": "kmeans", "nbits": nbits, "granularity": "per_tensor"}
    cfg = opt.OptimizationConfig(global_config=op_cfg, op_name_configs={name: None for name in keep})
    fn = opt.linear_quantize_weights if precision == "int8" else opt.palettize_weights
    return fn(ml, cfg), dict(facts, weight_threshold=WEIGHT_THRESHOLD, kept_uncompressed=len(keep))


def _program_consts(ml) -> Dict[str, np.ndarray]:
    prog = ml._mil_program
    out = {}
    for fn in prog.functions.values():
        for op in fn.operations:
            if op.op_type == "const" and op.val is not None and op.val.val is not None:
                v = op.val.val
                if isinstance(v, np.ndarray):
                    out[op.name] = v
    return out


def saved_consts(path: Path) -> Dict[str, np.ndarray]:
    """Every constant of a saved ``.mlpackage``'s program, compressed weights decompressed (dense)."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load

    ml = ct.models.MLModel(str(path), skip_model_load=True)
    spec = ml.get_spec()
    compressed = any(op.type.startswith("constexpr_") for fn in spec.mlProgram.functions.values()
                     for blk in fn.block_specializations.values() for op in blk.operations)
    if compressed:
        ml = ct.optimize.coreml.decompress_weights(ml)
        prog = getattr(ml, "_mil_program", None)
        if prog is None:
            spec = ml.get_spec()
            prog = load(spec, specification_version=spec.specificationVersion, file_weights_dir=ml.weights_dir)
    else:
        prog = load(spec, specification_version=spec.specificationVersion, file_weights_dir=ml.weights_dir)
    out = {}
    for fn in prog.functions.values():
        for op in fn.operations:
            if op.op_type == "const" and op.val is not None and isinstance(op.val.val, np.ndarray):
                out[op.name] = op.val.val
    return out


def emulate(path: Path, wrapper: torch.nn.Module):
    """(module, coverage): ``wrapper`` with the weights of the saved ``.mlpackage`` (for Linux validation)."""
    return _read_back(wrapper, saved_consts(path))


def _fp16_const_check(consts: Dict[str, np.ndarray]) -> dict:
    """Float constants of the program: NaN anywhere or a finite value beyond fp16's range fails; infinities
    (e.g. a -inf attention-mask fill, fine unless a whole softmax row is masked) are counted and reported."""
    n = nan = inf = 0
    worst = 0.0
    for name, v in consts.items():
        if v.dtype.kind != "f" or not v.size:
            continue
        n += 1
        a = v.astype(np.float32)
        nan += int(np.isnan(a).any())
        inf += int(np.isinf(a).any())
        finite = a[np.isfinite(a)]
        if finite.size:
            worst = max(worst, float(np.abs(finite).max()))
    return {"float_consts": n, "with_nan": nan, "with_inf": inf, "largest_finite_abs": worst, "fp16_max": 65504.0,
            "passed": nan == 0 and worst <= 65504.0}


def _sanitize(name: str) -> str:
    return "p_" + re.sub(r"[^0-9a-zA-Z_]", "_", name)


def _param_table(wrapper: torch.nn.Module) -> Dict[str, str]:
    """Sanitized name (as the converter names constants) -> parameter name."""
    return {_sanitize(n): n for n, _ in wrapper.named_parameters()}


def _param_of(const_name: str, table: Dict[str, str]):
    """The parameter a program constant was converted from (``table``: sanitized name -> parameter name):
    the converter appends ``_suffix`` parts (casts, layout) to the parameter's sanitized name."""
    cand = const_name
    while cand not in table:
        if "_" not in cand:
            return None
        cand = cand.rsplit("_", 1)[0]
    return table[cand]


def _kept_consts(consts: Dict[str, np.ndarray], wrapper: torch.nn.Module) -> list:
    """Program constants holding weights of :func:`.wrappers.precision_sensitive` modules (left uncompressed;
    constants under the compression threshold are left out: they stay uncompressed anyway)."""
    from .wrappers import precision_sensitive, under

    keep = precision_sensitive(wrapper)
    if not keep:
        return []
    table = _param_table(wrapper)
    return sorted(c for c in consts if consts[c].size >= WEIGHT_THRESHOLD and (p := _param_of(c, table)) is not None
                  and under(p.rsplit(".", 1)[0], keep))


def _read_back(wrapper: torch.nn.Module, consts: Dict[str, np.ndarray]):
    """A copy of ``wrapper`` with every parameter found among the program's constants replaced by it.
    Returns (module, coverage dict)."""
    table = _param_table(wrapper)
    params = dict(wrapper.named_parameters())
    found: Dict[str, np.ndarray] = {}
    used = set()
    for cname, v in consts.items():
        pname = _param_of(cname, table)
        if pname is None:
            continue
        shape = tuple(params[pname].shape)
        arr = np.asarray(v)
        if arr.shape == shape:
            found[pname] = arr
        elif arr.ndim == 2 and arr.T.shape == shape:
            found[pname] = arr.T
        elif arr.size == int(np.prod(shape)):
            found[pname] = arr.reshape(shape)
        else:
            continue
        used.add(cname)
    # constants renamed by the converter (e.g. a transposed matmul weight): match the rest by value. A
    # constant already matched can serve again only as the converter's merge of equal weights (its
    # const-deduplication: e.g. random-init RepMixer kernels, identity + 1e-5 x noise, equal in fp16)
    left = {n: np.asarray(v) for n, v in consts.items() if v.dtype.kind == "f" and v.size >= 2}
    for pname, p in params.items():
        if pname in found or p.numel() < 2:
            continue
        ref = p.detach().numpy().astype(np.float32)
        best, best_err = None, 0.25
        for cname, arr in left.items():
            if arr.size != ref.size:
                continue
            for cand in (arr, arr.T if arr.ndim == 2 else None):
                if cand is None or cand.shape != ref.shape:
                    continue
                err = float(np.linalg.norm(cand.astype(np.float32) - ref) / max(np.linalg.norm(ref), 1e-30))
                if err < best_err and (cname not in used or err < DEDUP_MATCH):
                    best, best_err = (cname, cand), err
        if best is not None:
            used.add(best[0])
            found[pname] = best[1]
    emu = copy.deepcopy(wrapper)
    emu_params = dict(emu.named_parameters())
    for pname, arr in found.items():
        emu_params[pname].data.copy_(torch.from_numpy(np.ascontiguousarray(arr).astype(np.float32)))
    total = sum(p.numel() for p in params.values())
    # an all-zero parameter (a random-weights ViT's position embedding, a zero bias) is an addition of zero
    # that the converter removes: the program computes the same without it, and so does the emulation
    zeros = [p for p in params if p not in found and not params[p].detach().any()]
    got = sum(params[p].numel() for p in found) + sum(params[p].numel() for p in zeros)
    missing = [p for p in params if p not in found and p not in zeros]
    return emu, {"parameters": len(params), "read_back": len(found), "elements_fraction": got / total if total else 1.0,
                 "not_found": missing[:5], "zero_eliminated_by_converter": zeros[:5]}


def export(tower: str, wrapper, example, folder: Path, precision: str, metadata: Dict[str, str], scratch: Path,
           log: Callable[[str], None] = lambda s: None, card: dict = None, **_) -> dict:
    require()
    if precision not in PRECISIONS:
        raise UserError(f"Core ML precision '{precision}' is not supported: choose one of {', '.join(PRECISIONS)}")
    if card is None:
        from .. import get_card

        card = get_card(metadata["mc2export.variant"])
    log(f"  torch.export -> Core ML ML program ({DEPLOYMENT}, compute {'fp32' if precision == 'fp32' else 'fp16'})")
    ml = _convert(tower, wrapper, example, precision, card)
    info = {"deployment_target": f"{DEPLOYMENT} / macOS14", "exporter": "coremltools.convert(torch.export)",
            "compute_precision": "float32" if precision == "fp32" else "float16"}
    consts = _program_consts(ml)
    if precision != "fp32":
        info["fp16_constants"] = _fp16_const_check(consts)
    if precision in ("int8", "pal6", "pal4"):
        log(f"  compressing weights ({precision})")
        ml, info["compression"] = _compress(ml, precision, _kept_consts(consts, wrapper))
    # metadata inside the model
    ml.author = metadata.get("author", "")
    ml.license = metadata.get("license", "")
    ml.short_description = metadata.get("description", "")
    ml.version = metadata.get("mc2export.version", "")
    for k, v in metadata.items():
        if k.startswith("mc2export."):
            ml.user_defined_metadata[k] = str(v)
    spec_desc = {"image": "RGB image, resized (shortest side) and center-cropped to the model resolution",
                 "tokens": "int32 token ids [SOT, ids..., EOT, 0...] (CLIP BPE, context 77)"}
    inp = "image" if tower == "image" else "tokens"
    ml.input_description[inp] = spec_desc[inp]
    ml.output_description["embedding"] = ("L2-normalized " if metadata.get("mc2export.output_normalized") == "true"
                                          else "unnormalized ") + f"{card['embed_dim']}-d {tower} embedding"
    path = Path(folder) / file_name(tower)
    ml.save(str(path))
    info["files"] = [file_name(tower)]
    return info


def read_spec(path: Path):
    import coremltools as ct

    return ct.models.MLModel(str(path), skip_model_load=True).get_spec()


_ARRAY_TYPES = {65568: "float32", 65552: "float16", 131104: "int32"}


def read_io(path: Path) -> dict:
    spec = read_spec(path)

    def desc(f):
        t = f.type
        kind = t.WhichOneof("Type")
        if kind == "imageType":
            cs = {10: "GRAYSCALE", 20: "RGB", 30: "BGR"}.get(t.imageType.colorSpace, str(t.imageType.colorSpace))
            return {"name": f.name, "dtype": f"image:{cs}", "shape": [int(t.imageType.height), int(t.imageType.width)]}
        if kind == "multiArrayType":
            return {"name": f.name, "dtype": _ARRAY_TYPES.get(t.multiArrayType.dataType, str(t.multiArrayType.dataType)),
                    "shape": [int(d) for d in t.multiArrayType.shape]}
        return {"name": f.name, "dtype": kind, "shape": []}

    return {"inputs": [desc(f) for f in spec.description.input], "outputs": [desc(f) for f in spec.description.output]}


def check_spec(path: Path) -> dict:
    """Spec-level facts of the saved model: ML program, spec version (8 = iOS17/macOS14), metadata."""
    spec = read_spec(path)
    meta = spec.description.metadata
    user = dict(meta.userDefined)
    facts = {"specification_version": int(spec.specificationVersion),
             "ml_program": spec.WhichOneof("Type") == "mlProgram",
             "author": meta.author, "license": meta.license, "has_description": bool(meta.shortDescription),
             "user_defined_keys": len(user)}
    problems = []
    if facts["specification_version"] < 8:
        problems.append(f"spec version {facts['specification_version']} < 8 (iOS17)")
    if not facts["ml_program"]:
        problems.append("not an ML program")
    for key in ("mc2export.variant", "mc2export.tower", "mc2export.precision", "mc2export.output_normalized"):
        if key not in user:
            problems.append(f"metadata key {key} missing")
    if not meta.author or not meta.license or not meta.shortDescription:
        problems.append("author/license/description missing")
    facts["problems"] = problems
    return facts


def runner(folder: Path, tower: str, info: dict, wrapper=None, card=None, precision="fp32"):
    """``(fn, io, how)``: Core ML prediction on macOS; elsewhere PyTorch running the read-back weights."""
    import coremltools as ct

    path = Path(folder) / info["files"][0]
    io = read_io(path)
    spec_facts = check_spec(path)
    info["spec"] = spec_facts
    if spec_facts["problems"]:
        from .validate import ValidationError

        raise ValidationError(f"coreml {tower}: converted program check failed: {'; '.join(spec_facts['problems'])}")
    fp16 = info.get("fp16_constants")
    if fp16 is not None and not fp16["passed"]:
        from .validate import ValidationError

        raise ValidationError(f"coreml {tower}: fp16 constants out of range: {fp16['with_nan']} hold NaN, largest "
                              f"finite |const| {fp16['largest_finite_abs']:.3g} (fp16 max 65504)")
    image_type = io["inputs"][0]["dtype"].startswith("image:")
    if sys.platform == "darwin":  # the real code path: prediction with Core ML
        model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.ALL)

        def run(x: np.ndarray) -> np.ndarray:
            if image_type:
                from PIL import Image

                outs = []
                for img in x:
                    u8 = np.clip(np.rint(img.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)
                    outs.append(model.predict({"image": Image.fromarray(u8, "RGB")})["embedding"])
                return np.concatenate(outs)
            return model.predict({io["inputs"][0]["name"]: x})["embedding"]

        return run, io, f"coremltools {ct.__version__} prediction (Core ML, compute units ALL)"

    # the weights of the file on disk, not of the object in memory
    affine = image_type_params(card) if image_type else None
    run_emulated, info["emulation"] = emulated_runner(saved_consts(path), wrapper, precision, image_affine=affine,
                                                      what=f"coreml {tower}", source="the .mlpackage")
    how = ("skipped: Core ML prediction needs macOS; checked the saved program (spec, I/O, metadata, fp16 constants) "
           "and ran its weights, read back from the .mlpackage, in PyTorch "
           f"({'fp16' if precision != 'fp32' else 'fp32'} activations)")
    return run_emulated, io, how


def emulated_runner(consts: Dict[str, np.ndarray], wrapper: torch.nn.Module, precision: str, image_affine=None,
                    what: str = "coreml", source: str = "the Core ML program"):
    """``(run, emulation facts)``: ``wrapper`` with the weights of a saved Core ML program (``consts``) in
    PyTorch, in the program's compute precision -- the Linux stand-in for Core ML prediction. Fails
    (:class:`ValidationError`) unless nearly every parameter is found among the program's constants.
    ``image_affine``: the ImageType's ``(scale, bias)``, applied to the [0, 1] input rounded to uint8."""
    from .validate import ValidationError

    emu, coverage = _read_back(wrapper, consts)
    half = precision != "fp32"
    facts = {"weights_read_back": coverage, "activations": "float16" if half else "float32"}
    if coverage["elements_fraction"] < 0.999:
        raise ValidationError(f"{what}: only {coverage['elements_fraction']:.1%} of the weights could be read back "
                              f"from {source} for validation (missing {coverage['not_found']})")
    emu = emu.half() if half else emu.float()
    if image_affine is not None:
        scale, bias = image_affine
        bias = torch.tensor(bias, dtype=torch.float32).reshape(1, 3, 1, 1)

    def run(x: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(x)
        if image_affine is not None:  # what the ImageType does: pixel * scale + bias[c], pixel = uint8
            t = torch.round(t * 255.0) * scale + bias
        if half and t.is_floating_point():
            t = t.half()
        if t.dim() == 4:  # channels-last: oneDNN's faster conv path, same results to rounding
            t = t.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            return emu(t).float().numpy()

    run.any_batch = True  # PyTorch takes the whole probe set at once
    return run, facts
