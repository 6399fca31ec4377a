"""ONNX export (torch.export-based exporter, opset 18) and its ONNX Runtime runner.

* opset 18: the lowest opset the torch.export-based exporter emits, supported by ONNX Runtime >= 1.14
  and its mobile packages (ORT Mobile's full build; the reduced "ORT format" build needs its op list
  regenerated for these models).
* one self-contained ``.onnx`` file (weights inside) for models under 1.8 GB; bigger ones get their
  weights in ``<name>.onnx.data`` beside the model (protobuf's 2 GB limit), listed in the bundle.
* ``fp16``: weights and compute in float16 with float32 inputs/outputs (``keep_io_types``), via
  ``onnxruntime.transformers.float16``. ONNX Runtime's CPU provider runs many fp16 ops by casting:
  fp16 ONNX is for GPU / NNAPI / CoreML-EP / WebGPU targets, not a CPU speed-up.
* ``int8``: ``onnxruntime.quantization.quantize_dynamic`` (int8 weights, activations quantized at run
  time). Text towers: MatMul and the token-embedding Gather. Image towers: MatMul/Gemm only -- ORT's CPU
  ``ConvInteger`` (what dynamic quantization turns a Conv into) is several times slower than the fp32
  Conv on x86 (MCi0: ~6x on an AVX2 host, 13.6x on an AVX-512 VNNI one), so convolutions stay fp32.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import torch

from ..errors import UserError

FORMAT = "onnx"
OPSET = 18
PRECISIONS = ("fp32", "fp16", "int8")
EXTERNAL_DATA_BYTES = int(1.8 * 1024 ** 3)
INT8_OPS = {"text": ["MatMul", "Gather"], "image": ["MatMul", "Gemm"]}
PIP_HINT = "pip install 'mc2export[export]'"


def require() -> None:
    missing = []
    for mod in ("onnx", "onnxruntime", "onnxscript"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise UserError(f"ONNX export needs {', '.join(missing)}: {PIP_HINT}")


def versions() -> Dict[str, str]:
    from .bundle import tool_versions

    return tool_versions(("onnx", "onnxruntime", "onnxscript"))


def file_name(tower: str) -> str:
    return f"{tower}.onnx"


def _param_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters()) + \
        sum(b.numel() * b.element_size() for b in module.buffers())


@contextlib.contextmanager
def _quiet():
    """The exporter prints progress lines to stdout; keep our own progress readable."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield buf


class _ErfGelu(torch.nn.Module):
    """Exact (erf) GELU written as ``(x * 0.5) * (erf(x / sqrt 2) + 1)``: the node order ONNX Runtime's
    GeluFusion matches (opset 18 has no Gelu op). The exporter's own decomposition of ``aten.gelu``
    (``0.5 * (1 + erf)`` first, then ``* x``) is not fused, and on MCi0 its five element-wise nodes plus
    the NCHWc reorders around them took a third of the run time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * 0.5) * (torch.erf(x / 1.4142135623730951) + 1.0)


class _ConvAttention2d(torch.nn.Module):
    """:class:`mc2export.blocks.Attention2d` without leaving NCHW: qkv and proj as 1x1 convolutions (ORT
    runs them in its NCHWc layout, the residual add fused into proj), heads as channel groups
    ``[B, h, d, N]``, the two transposes absorbed by the matmuls -- no Transpose node (the token form
    left six per block in MCi0's optimized graph). Shares the folded weights (views)."""

    def __init__(self, attn: torch.nn.Module):
        super().__init__()
        self.heads, self.head_dim = attn.num_heads, attn.head_dim
        self.qkv = self._conv(attn.qkv)
        self.proj = self._conv(attn.proj)

    @staticmethod
    def _conv(linear: torch.nn.Linear) -> torch.nn.Conv2d:
        conv = torch.nn.Conv2d(linear.in_features, linear.out_features, 1, bias=linear.bias is not None)
        conv.weight = torch.nn.Parameter(linear.weight.detach()[:, :, None, None], requires_grad=False)
        if linear.bias is not None:
            conv.bias = torch.nn.Parameter(linear.bias.detach(), requires_grad=False)
        return conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        h, d = self.heads, self.head_dim
        q, k, v = self.qkv(x).reshape(B, 3 * h, d, H * W).split(h, dim=1)
        a = torch.matmul((q * d ** -0.5).transpose(-1, -2), k)  # [B, h, N, N]
        out = torch.matmul(v, a.softmax(dim=-1).transpose(-1, -2))  # [B, h, d, N]
        return self.proj(out.reshape(B, C, H, W))


@contextlib.contextmanager
def ort_friendly(module: torch.nn.Module, conv_attention: bool = True):
    """Context: the graph forms ONNX Runtime runs fastest, same function: exact ``nn.GELU`` as
    :class:`_ErfGelu`, MCi attention as :class:`_ConvAttention2d` (unless ``conv_attention=False``: int8
    keeps its projections as MatMuls, the ops dynamic quantization takes), and a text wrapper's residual
    stream 2-D (``TextEncoder.flat_stream`` with :class:`.wrappers.FlatAttention`: fewer Reshape nodes, no
    Split, no key/value projection of every token in the last block)."""
    from ..blocks import Attention2d
    from .wrappers import flat_attention_forms, set_attributes, swapped_modules

    flat = flat_attention_forms(module)

    def form(c):
        if isinstance(c, torch.nn.GELU) and c.approximate == "none":
            return _ErfGelu()
        if conv_attention and isinstance(c, Attention2d):
            return _ConvAttention2d(c)
        return flat.get(id(c))

    with swapped_modules(module, form), set_attributes(module, "flat_stream", True):
        yield module


def _torch_export(wrapper: torch.nn.Module, example: torch.Tensor, path: Path, input_name: str,
                  external: bool, metadata: Dict[str, str], conv_attention: bool = True) -> None:
    """Export, then name the output and set the metadata on the in-memory model before the one save
    (a save + load + save round trip of a 1.3 GB MCi4 model cost 6 s more)."""
    import warnings

    with warnings.catch_warnings(), _quiet():
        warnings.simplefilter("ignore")
        with ort_friendly(wrapper, conv_attention):
            program = torch.onnx.export(wrapper, (example,), dynamo=True, opset_version=OPSET,
                                        input_names=[input_name], output_names=[_TMP_OUT], optimize=True,
                                        verbose=False, external_data=external)
        model = program.model  # onnx_ir: values are objects, renaming one renames every use
        for node in model.graph:
            for value in node.outputs:
                if value.name == "embedding" and value not in model.graph.outputs:
                    value.name = "embedding_internal"
        model.graph.outputs[0].name = "embedding"
        props, model.doc_string, model.producer_name = _metadata_fields(metadata)
        model.metadata_props.clear()
        model.metadata_props.update(props)
        program.save(str(path), external_data=external)


_TMP_OUT = "mc2export_output"


def _metadata_fields(metadata: Dict[str, str]):
    """``(metadata_props, doc_string, producer_name)`` of every model we write (in memory or saved)."""
    return {str(k): str(v) for k, v in metadata.items()}, metadata.get("description", ""), "mc2export"


def _set_metadata(path: Path, metadata: Dict[str, str], external: bool) -> None:
    """Store the metadata in ``metadata_props`` of a saved model (after fp16 / int8 conversion)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    props, model.doc_string, model.producer_name = _metadata_fields(metadata)
    del model.metadata_props[:]
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.save(model, str(path))  # external data (if any) stays where it is: load_external_data=False


def export(tower: str, wrapper: torch.nn.Module, example: torch.Tensor, folder: Path, precision: str,
           metadata: Dict[str, str], scratch: Path, log: Callable[[str], None] = lambda s: None, **_) -> dict:
    """Export one tower into ``folder``; returns ``{"files": [names], "external_data": bool, ...}``."""
    require()
    if precision not in PRECISIONS:
        raise UserError(f"ONNX precision '{precision}' is not supported: choose one of {', '.join(PRECISIONS)}")
    input_name = "image" if tower == "image" else "tokens"
    name = file_name(tower)
    path = Path(folder) / name
    external = _param_bytes(wrapper) >= EXTERNAL_DATA_BYTES
    fp32_path = path if precision == "fp32" else Path(scratch) / f"{tower}-fp32.onnx"
    log(f"  torch.export -> ONNX opset {OPSET}" + (" (external data)" if external else ""))
    _torch_export(wrapper, example, fp32_path, input_name, external, metadata, conv_attention=precision != "int8")
    info = {"opset": OPSET, "exporter": "torch.onnx.export(dynamo=True)", "external_data": external}
    if precision == "fp16":
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        log("  converting weights and compute to float16 (float32 inputs/outputs)")
        model = onnx.load(str(fp32_path))
        model = convert_float_to_float16(model, keep_io_types=True)
        onnx.save(model, str(path), save_as_external_data=external, all_tensors_to_one_file=True,
                  location=name + ".data" if external else None)
        info["fp16"] = "onnxruntime.transformers.float16.convert_float_to_float16(keep_io_types=True)"
    elif precision == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        ops = INT8_OPS[tower]
        log(f"  dynamic int8 quantization of {', '.join(ops)} (onnxruntime.quantization)")
        import logging
        logging.getLogger("root").setLevel(logging.ERROR)
        with _quiet():
            quantize_dynamic(str(fp32_path), str(path), op_types_to_quantize=ops, per_channel=False,
                             weight_type=QuantType.QInt8, use_external_data_format=external,
                             extra_options={"WeightSymmetric": True, "MatMulConstBOnly": True})
        info["int8"] = {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8",
                        "op_types": ops}
    if fp32_path != path:  # the converters may drop or rewrite the metadata: set it again
        _set_metadata(path, metadata, external)
    if fp32_path != path:
        for p in Path(scratch).glob(f"{tower}-fp32.onnx*"):
            p.unlink()
    files = [name] + ([name + ".data"] if (Path(folder) / (name + ".data")).exists() else [])
    info["files"] = files
    info["external_data"] = len(files) > 1
    return info


def session(path: Path, threads: int = 2):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int32)": "int32",
              "tensor(int64)": "int64"}


def read_io(path: Path, sess=None) -> dict:
    sess = sess or session(path)

    def desc(a):
        return {"name": a.name, "dtype": _ORT_TYPES.get(a.type, a.type), "shape": list(a.shape)}

    return {"inputs": [desc(a) for a in sess.get_inputs()], "outputs": [desc(a) for a in sess.get_outputs()]}


def read_metadata(path: Path) -> Dict[str, str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def ort_runner(path: Path, threads: int = 2):
    """``(fn(np.ndarray) -> np.ndarray, io)`` running the model in ONNX Runtime (CPU)."""
    sess = session(path, threads)
    name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run(None, {name: x})[0]

    return run, read_io(path, sess)


def runner(folder: Path, tower: str, info: dict, **_):
    """``(fn, io, how)`` for the validation: the exported file in ONNX Runtime's CPU provider."""
    import onnxruntime as ort

    run, io = ort_runner(Path(folder) / info["files"][0])
    return run, io, f"onnxruntime {ort.__version__} CPUExecutionProvider"


def op_histogram(path: Path) -> Dict[str, int]:
    import collections

    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(collections.Counter(n.op_type for n in model.graph.node))
