"""LiteRT (TensorFlow Lite) export (``.tflite``) and its interpreter runner: Android's own runtime.

* Conversion: ``litert_torch.convert`` of the folded tower (the same wrappers as every format) through one
  signature, ``serving_default``, whose input is ``image`` float32 ``[B, 3, R, R]`` (NCHW, RGB in [0, 1],
  as the ONNX / ExecuTorch / OpenVINO bundles; the converter moves the convolutions to NHWC itself) or
  ``tokens`` int32 ``[B, 77]`` and whose output is ``embedding``. The text tower takes int32 tokens: an
  int64 ``tfl.arg_max`` does not legalize. The ``mc2export.*`` metadata is stored in the flatbuffer's
  metadata table (:func:`read_metadata`).
* ``fp32``: float32 weights and compute. ``fp16``: float16 weights, dequantized to float32 at load by the CPU
  (what LiteRT's GPU accelerator wants: it computes in fp16 anyway); half the file.
* ``int8``: ``ai-edge-quantizer`` dynamic range (``dynamic_wi8_afp32``): int8 per-channel weights, activations
  quantized on the fly by the kernels (XNNPACK's qd8 kernels), no calibration. The MCi downsampling layers, final
  conv and head stay float (:func:`keep_float_scopes`, the modules every other format's int8 keeps): on the fidelity
  kit's MobileCLIP2-S4 image tower (min cosine over the probe set) everything quantized gave 0.954, the
  downsampling layers in float 0.990, with the final conv and head too 0.993 (0.994 with the 7x7 depthwise split).
* ``int8-static``: static quantization (``static_wi8_ai8``: int8 weights and activations, activation ranges the
  min / max over a calibration run -- the built-in probe set or ``--calibration DIR``, as ``openvino``) of the
  image tower, keeping float what must stay float to hold the int8 tier: the modules ``int8`` keeps and the MCi
  attention stages, the latter with int8 weights (:func:`static_float_scopes`, :func:`attention_stages`), so the
  RepMixer stages, where an MCi tower spends its time, run full-integer. Fully integer (attention too) holds nowhere
  on the kit's weights (min cosine, min / max ranges: S0 0.988, S2 0.971, MobileCLIP-S0 0.983; with
  ai-edge-quantizer's moving-average ranges S0 0.982); with the attention stage float S0 0.994, S2 0.992,
  MobileCLIP-S0 0.992. Text towers keep int8's dynamic range (``STATIC_TOWERS``).
  Every choice lands in ``config.json`` / ``validation.json`` (``quantization``).

The float conversion (the slow step: ~35-50 s per S0 tower on 2 cores) can be cached across exports of the
same weights at other precisions: ``MC2EXPORT_LITERT_CACHE=DIR`` (:func:`convert_cached`; keyed by the
tower's weights, the graph code and the converter's version).

Nothing heavy is imported at module level: the benchmark harness imports this module to run models.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..errors import UserError

FORMAT = "litert"
PRECISIONS = ("fp32", "fp16", "int8", "int8-static")
PIP_HINT = "pip install 'mc2export[litert]'"
SIGNATURE = "serving_default"
INPUT_NAME = {"image": "image", "text": "tokens"}
OUTPUT_NAME = "embedding"
METADATA_NAME = "mc2export"  # the flatbuffer metadata entry holding the mc2export.* fields (JSON)
CACHE_ENV = "MC2EXPORT_LITERT_CACHE"
# Towers whose int8-static export quantizes activations statically: the image towers, the convolutional part XNNPACK
# runs fastest in int8 on phones. Text towers keep int8's dynamic range there (static text activations -- LayerNorm,
# softmax, attention products over 77 tokens -- were not tried here).
STATIC_TOWERS = ("image",)
DYNAMIC_RECIPE = "dynamic_wi8_afp32"
# ai-edge-quantizer 0.10 fails on some tensors (MCi3/4's stage-4 ConvMlp fc1: "input operand has more dimensions than
# allowed by the axis remapping"): their modules stay float, up to this many
QUANTIZER_RETRIES = 8
_RE_QUANT_FAIL = re.compile(r"Failed to get quantization parameters for tensor: (\S+?)\. Error")
STATIC_RECIPE = "static_wi8_ai8"
_TYPES = {np.float32: "float32", np.float16: "float16", np.int32: "int32", np.int64: "int64", np.int8: "int8",
          np.uint8: "uint8"}


def require() -> None:
    missing = [m for m in ("litert_torch", "ai_edge_litert") if not _importable(m)]
    if missing:
        raise UserError(f"LiteRT export needs {', '.join(missing)}: {PIP_HINT}")


def _require_quantizer() -> None:
    if not _importable("ai_edge_quantizer"):
        raise UserError(f"LiteRT fp16 / int8 / int8-static need ai-edge-quantizer: {PIP_HINT}")


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def versions() -> Dict[str, str]:
    from .bundle import tool_versions

    return tool_versions(("litert-torch", "ai-edge-litert", "ai-edge-quantizer", "litert-converter"))


def file_name(tower: str) -> str:
    return f"{tower}.tflite"


# ------------------------------------------------------------------------------------------ runtime side

def interpreter(path, threads: Optional[int] = 2):
    """The ``.tflite`` in LiteRT's interpreter with its default XNNPACK delegate (CPU), ``threads`` threads."""
    from ai_edge_litert.interpreter import Interpreter

    with _native_stderr_captured():
        it = Interpreter(model_path=str(path), num_threads=int(threads) if threads else None)
        it.allocate_tensors()
    return it


def _desc(name: str, d: dict) -> dict:
    dtype = d["dtype"]
    return {"name": name, "dtype": _TYPES.get(dtype, getattr(dtype, "__name__", str(dtype))),
            "shape": [int(v) for v in d["shape"]]}


def read_io(it) -> dict:
    """``{"inputs": [...], "outputs": [...]}`` of the ``serving_default`` signature (signature names)."""
    sigs = it.get_signature_list()
    if SIGNATURE not in sigs:
        return {"inputs": [], "outputs": [], "signatures": sorted(sigs)}
    r = it.get_signature_runner(SIGNATURE)
    ins, outs = r.get_input_details(), r.get_output_details()
    return {"inputs": [_desc(n, ins[n]) for n in sigs[SIGNATURE]["inputs"]],
            "outputs": [_desc(n, outs[n]) for n in sigs[SIGNATURE]["outputs"]]}


def signature_runner(it, tower: str) -> Callable[[np.ndarray], np.ndarray]:
    """``fn(x) -> embedding`` through the ``serving_default`` signature."""
    r = it.get_signature_runner(SIGNATURE)
    name = INPUT_NAME[tower]
    dtype = np.float32 if tower == "image" else np.int32

    def run(x: np.ndarray) -> np.ndarray:
        return np.array(r(**{name: np.ascontiguousarray(x, dtype=dtype)})[OUTPUT_NAME], dtype=np.float32)

    return run


def runner(folder: Path, tower: str, info: dict, threads: Optional[int] = 2, **_):
    """``(fn, io, how)``: the bundle's ``.tflite`` in LiteRT's interpreter (XNNPACK, ``threads`` threads)."""
    from importlib import metadata

    it = interpreter(Path(folder) / info["files"][0], threads)
    return signature_runner(it, tower), read_io(it), \
        f"ai-edge-litert {metadata.version('ai-edge-litert')} interpreter, XNNPACK, {threads} threads"


def read_metadata(path: Path) -> Dict[str, str]:
    """The ``mc2export.*`` fields (and description, author, license) stored in the flatbuffer's metadata (read
    through the flatbuffer accessors: no copy of the weights)."""
    from ai_edge_litert import schema_py_generated as fb

    data = bytearray(Path(path).read_bytes())
    model = fb.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        m = model.Metadata(i)
        if (m.Name() or b"").decode() == METADATA_NAME:
            buf = model.Buffers(m.Buffer())
            raw = bytes(data[buf.Offset():buf.Offset() + buf.Size()]) if buf.Offset() else bytes(buf.DataAsNumpy())
            return json.loads(raw.decode("utf-8"))
    return {}


def op_histogram(path: Path) -> Dict[str, int]:
    """Op name -> count of the ``.tflite``'s main graph (what the runtime executes, before delegation)."""
    import collections

    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    return dict(collections.Counter(o["op_name"] for o in it._get_ops_details()))


# ------------------------------------------------------------------------------------------- export side

def _signature_module(tower: str, wrapper):
    """The wrapper with named signature I/O: the keyword argument names the input, the dict key the output."""
    import torch

    class ImageSignature(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, image):
            return {OUTPUT_NAME: self.m(image)}

    class TextSignature(ImageSignature):
        def forward(self, tokens):
            return {OUTPUT_NAME: self.m(tokens)}

    return (ImageSignature if tower == "image" else TextSignature)(wrapper).eval()


@contextlib.contextmanager
def _native_stderr_captured():
    """The C++ converter and runtime log to file descriptor 2 (``I0000 ... flatbuffer_export.cc``, ``INFO: Created
    TensorFlow Lite XNNPACK delegate``): captured, and written out only when the block fails."""
    import sys
    import tempfile

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (an embedding host): nothing to capture
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        ok = False
        try:
            yield
            ok = True
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if not ok:
                tmp.seek(0)
                sys.stderr.write(tmp.read()[-4000:].decode("utf-8", "replace"))


@contextlib.contextmanager
def _quiet():
    """litert-torch draws progress lines on stdout and stderr (where our summary table and progress go)."""
    import logging

    names = ["litert_torch", "absl", "jax", "ai_edge_quantizer"]
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with _native_stderr_captured(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for n, lvl in saved.items():
            logging.getLogger(n).setLevel(lvl)


def convert(tower: str, wrapper, example, path: Path) -> None:
    """The float32 ``.tflite`` of ``wrapper`` at ``path``: one ``serving_default`` signature, static shapes."""
    import litert_torch
    import torch

    from .wrappers import SplitDepthwise, swapped_modules

    if tower == "text" and example.dtype != torch.int32:
        raise ValueError("the text tower converts from int32 tokens only (an int64 arg_max does not legalize)")
    # 7x7 depthwise convolutions as three of <= 21 taps (XNNPACK's fast depthwise kernels): S0 image 72 -> 47 ms here
    with torch.no_grad(), _quiet(), swapped_modules(wrapper, SplitDepthwise.replacing):
        model = litert_torch.convert(_signature_module(tower, wrapper), sample_kwargs={INPUT_NAME[tower]: example})
        model.export(str(path))


def cache_key(tower: str, wrapper, example) -> str:
    """What a float conversion depends on: the tower's tensors, the input, the graph code, the toolchain."""
    import torch

    from . import wrappers as W

    h = hashlib.sha256(f"{tower}|{list(example.shape)}|{example.dtype}|".encode())
    for path, m in sorted(wrapper.named_modules()):  # graph switches: normalize, has_scale, flat_stream, ...
        flags = {k: v for k, v in vars(m).items() if isinstance(v, (bool, int, float, str)) and not k.startswith("_")}
        h.update(f"{path}|{type(m).__qualname__}|{sorted(flags.items())}".encode())
    tensors = dict(wrapper.named_parameters())
    tensors.update(dict(wrapper.named_buffers()))  # non-persistent ones too (the input affine)
    for name, v in sorted(tensors.items()):
        t = v.detach().contiguous()
        h.update(name.encode() + str(t.dtype).encode() + str(list(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    import inspect

    pkg = Path(W.__file__).resolve().parents[1]
    for p in sorted(list(pkg.glob("*.py")) + [Path(W.__file__)]):  # the model code and the wrappers
        h.update(p.name.encode() + p.read_bytes())
    for fn in (convert, _signature_module):  # of this module, only what shapes the converted graph
        h.update(inspect.getsource(fn).encode())
    h.update(json.dumps([INPUT_NAME, OUTPUT_NAME]).encode())
    h.update(json.dumps(versions(), sort_keys=True).encode())
    return h.hexdigest()[:32]


def convert_cached(tower: str, wrapper, example, path: Path, log: Callable[[str], None] = lambda s: None) -> bool:
    """:func:`convert`, reusing the file of an earlier identical conversion from ``$MC2EXPORT_LITERT_CACHE``
    when that is set (written there atomically after a conversion). Returns whether the cache served it."""
    import shutil

    root = os.environ.get(CACHE_ENV)
    if not root:
        convert(tower, wrapper, example, path)
        return False
    cached = Path(root) / f"{tower}-{cache_key(tower, wrapper, example)}.tflite"
    if cached.is_file():
        shutil.copyfile(cached, path)
        os.utime(cached)  # last use: what a cache pruner goes by
        log(f"  float conversion reused from {CACHE_ENV} ({cached.name})")
        return True
    convert(tower, wrapper, example, path)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
    shutil.copyfile(path, tmp)
    os.replace(tmp, cached)
    return False


def scope_regex(path: str) -> str:
    """A regex matching the op scopes (output tensor names) of module ``path`` (a ``named_modules`` path of the
    wrapper): litert-torch names tensors ``<Class>_<attr>/<Class>_<attr>/...`` along the module path, each
    segment the qualified class name and the attribute (``Sequential_stages/mc2export.mci.Stage_3``)."""
    parts = [rf"[^/;]*_{re.escape(p)}" for p in path.split(".")]
    return rf"(^|/){'/'.join(parts)}(/|;|$)"


def keep_float_scopes(wrapper) -> List[str]:
    """The module paths int8 and int8-static keep in float: the MCi downsampling layers and the final conv + head
    (none in the other towers)."""
    from .wrappers import precision_sensitive, static_int8_float

    return precision_sensitive(wrapper) + static_int8_float(wrapper)


def static_float_scopes(wrapper) -> List[str]:
    """The module paths int8-static computes in float: :func:`keep_float_scopes` and the MCi attention stages
    (:func:`attention_stages`, whose conv / fully-connected weights are stored int8 all the same)."""
    stages = attention_stages(wrapper)
    return [p for p in keep_float_scopes(wrapper) if not any(p.startswith(s + ".") for s in stages)] + stages


def attention_stages(wrapper) -> List[str]:
    """The MCi stages made of attention blocks: int8-static runs them in float, with int8 weights.

    Static int8 activations are one scale per tensor, fixed at export; the attention stages' activations (norm
    outputs, softmax, the residual stream at the deepest stage) do not survive that in ai-edge-quantizer's recipe.
    Measured on the kit's MobileCLIP2-S0 image tower (min cosine over the probe set, min / max ranges; before the 7x7
    depthwise split, which moved each figure by < 0.002): every stage int8 0.989; one stage float at a time: stage 0
    0.989, 1 0.989, 2 (10 of the 20 blocks) 0.991, stage 3 (attention) 0.995 -- the one that matters, at 1/64 of the
    resolution of stage 0. Its weights int8 with float activations (weight-only) keep 0.995 and make the file smaller
    than dynamic-range int8's (15.0 vs 15.7 MB); its ops under a dynamic-range or weight-only config beside static
    ones elsewhere stayed at 0.989 (their element-wise ops kept static int8 activations)."""
    from ..blocks import AttentionBlock
    from ..mci import Stage

    return [n for n, m in wrapper.named_modules()
            if isinstance(m, Stage) and any(isinstance(b, AttentionBlock) for b in m.blocks)]


def quantize(float_path: Path, out_path: Path, precision: str, *, tower: str, wrapper=None,
             calibration: Optional[Sequence[np.ndarray]] = None, calibration_what: Optional[str] = None,
             log: Callable[[str], None] = lambda s: None) -> dict:
    """Quantize the float ``.tflite`` with ai-edge-quantizer into ``out_path``; returns the record of every
    choice (for config.json / validation.json)."""
    from ai_edge_quantizer import qtyping, quantizer, recipe

    ALL = qtyping.TFLOperationName.ALL_SUPPORTED
    q = quantizer.Quantizer(str(float_path))
    record: dict = {"tool": "ai-edge-quantizer"}
    if precision == "fp16":
        q.add_weight_only_config(regex=".*", operation_name=ALL, num_bits=16,
                                 granularity=qtyping.QuantGranularity.TENSORWISE,
                                 algorithm_key=recipe.AlgorithmName.FLOAT_CASTING)
        record.update(method="weight-only float16 (FLOAT_CASTING): fp16 weights, dequantized at load, fp32 compute "
                             "on the CPU")
    elif precision == "int8" or tower not in STATIC_TOWERS:
        q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
        keep = keep_float_scopes(wrapper) if wrapper is not None else []
        for p in keep:
            q.update_quantization_recipe(regex=scope_regex(p), operation_name=ALL,
                                         algorithm_key=recipe.AlgorithmName.NO_QUANTIZE)
        record.update(method=f"dynamic range ({DYNAMIC_RECIPE}): int8 per-channel weights, activations quantized "
                             "at run time", recipe=DYNAMIC_RECIPE, kept_in_float=keep)
        if precision == "int8-static":
            record["why_not_static"] = (f"int8-static quantizes the image tower's activations only (STATIC_TOWERS); "
                                        f"the {tower} tower keeps int8's dynamic range")
    else:  # int8-static image tower
        q.load_quantization_recipe(recipe.static_wi8_ai8())
        for io_op in (qtyping.TFLOperationName.INPUT, qtyping.TFLOperationName.OUTPUT):  # float32 signature I/O
            q.update_quantization_recipe(regex=".*", operation_name=io_op,
                                         algorithm_key=recipe.AlgorithmName.NO_QUANTIZE)
        keep = static_float_scopes(wrapper) if wrapper is not None else []
        for p in keep:
            q.update_quantization_recipe(regex=scope_regex(p), operation_name=ALL,
                                         algorithm_key=recipe.AlgorithmName.NO_QUANTIZE)
        # the float scopes that are attention stages compute in float from int8 weights (dequantized at load)
        weight_only = [p for p in keep if p in attention_stages(wrapper)] if wrapper is not None else []
        for p in weight_only:
            for op in (qtyping.TFLOperationName.FULLY_CONNECTED, qtyping.TFLOperationName.CONV_2D):
                q.add_weight_only_config(regex=scope_regex(p), operation_name=op, num_bits=8)
        record.update(method=f"static ({STATIC_RECIPE}): int8 weights and activations, min / max "
                             "ranges from the calibration run", recipe=STATIC_RECIPE, kept_in_float=keep,
                      weight_only_int8=weight_only, activation_ranges="min / max over the calibration set",
                      calibration_inputs=len(calibration or []), calibration=calibration_what)
    skipped: List[str] = []
    calibrated = None
    for _ in range(QUANTIZER_RETRIES + 1):
        try:
            with _quiet():
                if q.need_calibration and calibrated is None:
                    data = {SIGNATURE: [{INPUT_NAME[tower]: np.ascontiguousarray(x)} for x in calibration]}
                    log(f"  ai-edge-quantizer: calibrating on {len(calibration)} inputs")
                    calibrated = _calibrate_min_max(q, data)
                result = q.quantize(calibrated) if q.need_calibration else q.quantize()
                result.export_model(str(out_path), overwrite=True)
            break
        except ValueError as e:  # a tensor the quantizer cannot take: its module stays float, and we retry
            m = _RE_QUANT_FAIL.search(str(e))
            if not m or len(skipped) >= QUANTIZER_RETRIES:
                from .validate import ValidationError  # a toolchain defect, not the user's input: exit 3

                raise ValidationError(f"ai-edge-quantizer failed ({precision}, {tower} tower): "
                                      f"{' '.join(str(e).split())[:400]}") from None
            scope = m.group(1).split(";")[0]
            skipped.append(scope)
            log(f"  ai-edge-quantizer cannot quantize {scope.rsplit('/', 1)[-1]}: kept in float, retrying")
            q.update_quantization_recipe(regex=rf"(^|;){re.escape(scope)}(;|/|$)", operation_name=ALL,
                                         algorithm_key=recipe.AlgorithmName.NO_QUANTIZE)
    if skipped:
        record["kept_in_float_quantizer_errors"] = skipped
    record["ops"] = _quantized_ops(out_path)
    return record


def _calibrate_min_max(q, data: dict) -> dict:
    """Activation ranges over the whole calibration set: the running min of the minima and max of the maxima.
    ``Quantizer.calibrate`` keeps a moving average of the per-sample extremes (smoothing 0.95), which cuts the rare
    large activations of the deep MCi stages -- the lesson of OpenVINO's NNCF recipe (MINMAX there too): on the kit's
    S0 image tower min / max ranges took int8-static from cosine 0.982 to 0.989. ``Quantizer.calibrate`` takes no
    update rule, so its calibrator is built here the way it builds it, with the rule ai-edge-quantizer ships."""
    from ai_edge_quantizer import calibrator
    from ai_edge_quantizer.utils import qsv_utils

    cal = calibrator.Calibrator(q._float_model_buffer, num_threads=os.cpu_count() or 1,
                                qsv_update_func=qsv_utils.min_max_update)
    cal.calibrate(data, q._recipe_manager)
    return cal.get_model_qsvs()


def _quantized_ops(path: Path) -> dict:
    """Counts of the ops by the type of their first input (what ran quantized): ``{"int8": n, "float32": m}``
    plus the op histogram."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    by_type: Dict[str, int] = {}
    for o in it._get_ops_details():
        if o["op_name"] in ("QUANTIZE", "DEQUANTIZE") or not len(o["inputs"]):
            continue
        t = tensors.get(int(o["inputs"][0]))
        kind = _TYPES.get(t["dtype"], str(t["dtype"])) if t else "?"
        by_type[kind] = by_type.get(kind, 0) + 1
    return {"first_input_dtype": by_type, "histogram": op_histogram(path)}


def set_metadata(path: Path, metadata: Dict[str, str]) -> None:
    """Store ``metadata`` (JSON) as the flatbuffer's ``mc2export`` metadata entry (replacing an older one)."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(Path(path).read_bytes()))
    for b in model.buffers:  # data read from an offset is a bytearray slice, which Pack() copies byte by byte
        if b.data is not None and not isinstance(b.data, np.ndarray):
            b.data = np.frombuffer(bytes(b.data), dtype=np.uint8)
    model.metadata = [m for m in (model.metadata or [])
                      if (m.name.decode() if isinstance(m.name, bytes) else m.name) != METADATA_NAME]
    buf = fb.BufferT()
    buf.data = np.frombuffer(json.dumps(metadata, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    model.buffers.append(buf)
    entry = fb.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata.append(entry)
    tmp = Path(path).with_name(Path(path).name + ".meta.tmp")
    tmp.write_bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    os.replace(tmp, path)


def export(tower: str, wrapper, example, folder: Path, precision: str, metadata: Dict[str, str], scratch: Path,
           log: Callable[[str], None] = lambda s: None, card: dict = None, calibration_dir: Optional[Path] = None,
           **_) -> dict:
    """Convert (and quantize) one tower into ``folder/<tower>.tflite``; returns the info for config.json."""
    require()
    if precision not in PRECISIONS:
        raise UserError(f"LiteRT precision '{precision}' is not supported: choose one of {', '.join(PRECISIONS)}")
    if precision != "fp32":
        _require_quantizer()
    path = Path(folder) / file_name(tower)
    float_path = path if precision == "fp32" else Path(scratch) / f"{tower}-fp32.tflite"
    log("  litert_torch.convert (float32)")
    cached = convert_cached(tower, wrapper, example, float_path, log)
    info = {"exporter": "litert_torch.convert", "signature": SIGNATURE, "float_conversion_cached": cached,
            "litert": {"signature": SIGNATURE, "inputs": [INPUT_NAME[tower]], "outputs": [OUTPUT_NAME],
                       "delegate": "XNNPACK (the interpreter's default CPU delegate)",
                       "weights": {"fp32": "float32", "fp16": "float16 (dequantized at load on the CPU)",
                                   "int8": "int8 per-channel (dynamic range)",
                                   "int8-static": "int8 (static activations)" if tower in STATIC_TOWERS
                                   else "int8 per-channel (dynamic range)"}[precision]}}
    if precision != "fp32":
        calib, what = None, None
        if precision == "int8-static" and tower in STATIC_TOWERS:
            from .openvino import calibration_inputs

            if card is None:
                from .. import get_card

                card = get_card(metadata["mc2export.variant"])
            calib, what = calibration_inputs(tower, card, int(example.shape[0]), calibration_dir)
        log(f"  ai-edge-quantizer: {precision}")
        info["quantization"] = quantize(float_path, path, precision, tower=tower, wrapper=wrapper, calibration=calib,
                                        calibration_what=what, log=log)
        float_path.unlink()
    set_metadata(path, metadata)
    info["files"] = [path.name]
    return info


__all__ = ["PRECISIONS", "require", "versions", "file_name", "export", "runner", "interpreter", "read_io",
           "read_metadata", "signature_runner", "convert", "convert_cached", "quantize", "scope_regex",
           "keep_float_scopes", "static_float_scopes", "attention_stages", "op_histogram", "set_metadata",
           "STATIC_TOWERS", "SIGNATURE", "CACHE_ENV"]
