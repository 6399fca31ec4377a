"""ExecuTorch export (``.pte`` with the XNNPACK delegate) and its validation in ExecuTorch's Python runtime.

* ``torch.export`` -> ``to_edge_transform_and_lower(partitioner=[XnnpackPartitioner()])`` ->
  ``to_executorch()``. Ops XNNPACK does not take (embedding, argmax, gather, LayerNorm, some
  reshapes) run on ExecuTorch's portable kernels: a runner needs the portable (or optimized) kernel
  library linked in, as ExecuTorch's standard Android/iOS packages do.
* Inputs: ``image`` float32 ``[B,3,R,R]`` RGB in [0, 1] (normalized inside, as the ONNX model) and
  ``tokens`` int32 ``[B, 77]``; output ``embedding`` float32 ``[B, D]``.
* ``fp16``: the graph in float16 (weights and activations; XNNPACK runs fp16 kernels on ARM with
  fp16 arithmetic), float32 inputs/outputs through casts inside the model.
* ``int8``: PT2E quantization with the ``XNNPACKQuantizer`` (torchao ``prepare_pt2e`` / ``convert_pt2e``),
  dynamic: per-channel symmetric int8 weights of every convolution and linear layer, activations quantized
  per call from their actual range (XNNPACK's QD8 kernels). No calibration, and it holds the 0.99 cosine
  floor where static int8 does not: on the fidelity kit's MCi1 image tower dynamic int8 keeps 0.9976
  (min over the probe set; 0.9996 with the downsampling layers kept, below) where static int8 reaches
  0.975-0.981, and no block is the culprit (keeping any one of stage 1's 12 blocks in fp32 moves it by
  < 0.005; the error is spread over the depth).
  The token embedding stays fp32 (XNNPACK has no quantized embedding), so int8 text ``.pte`` files
  stay large. The image towers' first convolution and the MCi downsampling layers stay fp32 (see
  :func:`_quant_filter`).
* ``int8-static``: image towers fully static int8 (activations calibrated on 16 synthetic images drawn
  with another seed than the validation probe set) -- int8 from layer to layer, the fastest form on
  phones, but close to or under the 0.99 floor for the MCi towers on the fidelity kit's weights (MCi0
  0.990-0.991, MCi1 0.975, MCi2 0.980; keeping stem / final conv / head in fp32 did not help), so it
  can fail validation (exit 3) for some weights. Text towers as ``int8``.
* Metadata: a constant method ``get_metadata`` returns the bundle metadata as a JSON string.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Callable, Dict

import numpy as np
import torch

from ..errors import UserError

FORMAT = "executorch"
PRECISIONS = ("fp32", "fp16", "int8", "int8-static")
DELEGATES = ("xnnpack", "coreml")
PIP_HINT = "pip install 'mc2export[export]'"


def require() -> None:
    try:
        import executorch.exir  # noqa: F401
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner  # noqa: F401
    except ImportError as e:
        raise UserError(f"ExecuTorch export needs executorch ({e}): {PIP_HINT}") from None


def versions() -> Dict[str, str]:
    from .bundle import tool_versions

    return tool_versions(("executorch", "torchao"))


def file_name(tower: str) -> str:
    return f"{tower}.pte"


class _DelegableLayerNorm(torch.nn.Module):
    """LayerNorm written with ops the XNNPACK delegate takes (it takes no ``layer_norm``, and every
    LayerNorm left to the portable kernels cuts the graph into more delegate partitions: slower to lower
    and to run). The channel mean and variance are a linear (last-dim layout) or a 1x1 convolution (NCHW,
    :class:`~mc2export.blocks.LayerNorm2d`) with weights ``1/C``, then ``d * rsqrt(var + eps)``: the
    two-pass formula of ``layer_norm`` itself, so fp32 results agree to rounding.

    ``fp32``: compute in float32 inside an fp16 graph (ExecuTorch 1.4.1's portable fp16 layer_norm
    returned wrong values -- max error 85 on outputs of magnitude 4 -- and fp32 statistics are the
    standard guard against fp16 variance overflow).
    """

    def __init__(self, ln: torch.nn.LayerNorm, channels_first: bool, fp32: bool = False):
        super().__init__()
        if len(ln.normalized_shape) != 1:
            raise ValueError(f"only 1-D normalized shapes are rewritten, got {tuple(ln.normalized_shape)}")
        c = ln.normalized_shape[0]
        self.eps, self.channels_first, self.fp32 = ln.eps, channels_first, fp32
        shape = (1, c, 1, 1) if channels_first else (1, c)
        self.register_buffer("avg", torch.full(shape, 1.0 / c), persistent=False)
        view = (1, c, 1, 1) if channels_first else (c,)
        for name in ("weight", "bias"):
            p = getattr(ln, name)
            p = None if p is None else p.detach().float().reshape(view) if fp32 else p.detach().reshape(view)
            self.register_buffer(name, p, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        if self.fp32:
            x = x.float()
        reduce = torch.nn.functional.conv2d if self.channels_first else torch.nn.functional.linear
        d = x - reduce(x, self.avg)
        y = d * torch.rsqrt(reduce(d * d, self.avg) + self.eps)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y.to(dtype) if self.fp32 else y


@contextlib.contextmanager
def xnnpack_friendly(module: torch.nn.Module, layer_norms: bool = True, fp32_layer_norms: bool = False):
    """Within the block, ``module`` computes the same function with ops the XNNPACK delegate takes
    and runs fast: attention written out (``fused_attn = False``), 7x7 depthwise convolutions as
    :class:`.wrappers.SplitDepthwise` and, unless ``layer_norms=False``, LayerNorms as :class:`_DelegableLayerNorm`.
    Restored on exit (the folded model is shared with the reference)."""
    from ..blocks import LayerNorm2d
    from .wrappers import SplitDepthwise, set_attributes, swapped_modules

    def replace(child):
        if layer_norms and isinstance(child, torch.nn.LayerNorm):
            return _DelegableLayerNorm(child, isinstance(child, LayerNorm2d), fp32_layer_norms)
        return SplitDepthwise.replacing(child)

    with swapped_modules(module, replace), set_attributes(module, "fused_attn", False):
        yield module


class _Half(torch.nn.Module):
    """Run ``inner`` in float16 with float32 inputs/outputs (LayerNorms in float32)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_floating_point():
            x = x.half()
        return self.inner(x).float()


def _quant_filter(gm: torch.fx.GraphModule, keep, image: bool):
    """Quantizer filter for ``gm``: ops inside the modules ``keep`` (:func:`.wrappers.precision_sensitive`)
    stay fp32, and in an image tower so does the first convolution -- the one that reads the image (MCi
    stem, ViT patch embedding): XNNPACK's int8 convolution failed to set up there at run time ("Propagating
    input shapes failed", every call) in the MobileCLIP2-S3/S4 and L-14 image towers (those normalize
    mean/std inside the same delegate). One layer: < 1% of the tower's work."""
    from .wrappers import under

    first = next((n for n in gm.graph.nodes if n.op == "call_function" and n.target in (
        torch.ops.aten.conv2d.default, torch.ops.aten.convolution.default)), None) if image else None

    def quantize(node) -> bool:
        if node is first:
            return False
        return not any(under(path, keep) for path, _ in (node.meta.get("nn_module_stack") or {}).values())

    return quantize


def _quantize(wrapper, example, card: dict, static: bool, image: bool, log) -> torch.nn.Module:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                         get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from .wrappers import SplitDepthwise, precision_sensitive, swapped_modules

    with swapped_modules(wrapper, SplitDepthwise.replacing):
        gm = torch.export.export(wrapper, (example,)).module()
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True,
                                                                               is_dynamic=not static))
    quantizer.set_filter_function(_quant_filter(gm, precision_sensitive(wrapper), image))
    prepared = prepare_pt2e(gm, quantizer)
    with torch.no_grad():
        if not static:
            prepared(example)
        else:
            from .validate import probe_images

            u8, _ = probe_images(card, seed=1)  # calibration set != validation set (seed 0)
            images = torch.from_numpy(u8).permute(0, 3, 1, 2).float().div(255)
            b = example.shape[0]
            log(f"  calibrating activations on {len(images)} synthetic images")
            for i in range(0, len(images) - b + 1, b):
                prepared(images[i:i + b])
    return convert_pt2e(prepared)


def check_delegate(delegate: str, precision: str) -> None:
    if delegate not in DELEGATES:
        raise UserError(f"unknown ExecuTorch delegate '{delegate}': choose one of {', '.join(DELEGATES)}")
    if delegate == "coreml" and precision not in ("fp32", "fp16"):
        raise UserError(f"the Core ML delegate takes fp32 or fp16, not {precision}: use --delegate xnnpack for int8, "
                        "or `mc2export coreml --precision int8|pal6|pal4` for compressed Core ML")


def _coreml_partitioner(precision: str):
    try:
        import coremltools as ct
        from executorch.backends.apple.coreml.compiler import CoreMLBackend
        from executorch.backends.apple.coreml.partition import CoreMLPartitioner
    except ImportError as e:
        raise UserError(f"ExecuTorch's Core ML delegate needs coremltools and executorch's Core ML backend ({e}): "
                        f"{PIP_HINT}") from None
    specs = CoreMLBackend.generate_compile_specs(
        compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
        minimum_deployment_target=ct.target.iOS17)  # as `mc2export coreml`: keeps the Neural Engine
    return CoreMLPartitioner(compile_specs=specs)


def export(tower: str, wrapper, example, folder: Path, precision: str, metadata: Dict[str, str], scratch: Path,
           log: Callable[[str], None] = lambda s: None, card: dict = None, delegate: str = "xnnpack", **_) -> dict:
    require()
    from executorch.exir import to_edge_transform_and_lower

    if precision not in PRECISIONS:
        raise UserError(f"ExecuTorch precision '{precision}' is not supported: choose one of {', '.join(PRECISIONS)}")
    check_delegate(delegate, precision)
    if delegate == "coreml":
        return _export_coreml_delegate(tower, wrapper, example, folder, precision, metadata, log)
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    info = {"delegate": "XNNPACK", "exporter": "executorch.exir.to_edge_transform_and_lower"}
    module = wrapper
    if precision == "fp16":
        import copy

        module = _Half(copy.deepcopy(wrapper)).eval()
    elif precision in ("int8", "int8-static"):
        if card is None:
            from .. import get_card

            card = get_card(metadata["mc2export.variant"])
        from .wrappers import set_attributes

        static = precision == "int8-static" and tower == "image"
        log(f"  PT2E int8 quantization (XNNPACKQuantizer, {'static' if static else 'dynamic'} activations)")
        # XNNPACK's static int8 rejects the class-token slice before a ViT's last block at init ("Failed to
        # create static slice node"): static int8 runs the full last block
        with set_attributes(wrapper, "pool_last_block", False, enabled=static):
            module = _quantize(wrapper, example, card, static, tower == "image", log)
        info["quantization"] = {"method": "PT2E XNNPACKQuantizer", "per_channel": True,
                                "activations": "static (calibrated)" if static else "dynamic"}
    log("  torch.export -> edge -> XNNPACK lowering")
    # int8: the LayerNorm statistics must stay float (the quantizer would take their linears/convs)
    with xnnpack_friendly(module, layer_norms=not precision.startswith("int8"), fp32_layer_norms=precision == "fp16"):
        ep = torch.export.export(module, (example,))
    edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()],
                                       constant_methods={"get_metadata": json.dumps(metadata, sort_keys=True)})
    prog = edge.to_executorch()
    path = Path(folder) / file_name(tower)
    with open(path, "wb") as f:
        prog.write_to_file(f)
    info["delegated_partitions"] = _count_delegates(edge)
    info["files"] = [file_name(tower)]
    return info


def _export_coreml_delegate(tower, wrapper, example, folder, precision, metadata, log) -> dict:
    """The whole tower lowered to ExecuTorch's Core ML backend (one ML program inside the ``.pte``;
    Core ML computes in fp16 itself for ``fp16``). Runs on iOS / macOS only."""
    from executorch.exir import to_edge_transform_and_lower

    log(f"  torch.export -> edge -> Core ML delegate (iOS17, compute {precision})")
    ep = torch.export.export(wrapper, (example,))
    edge = to_edge_transform_and_lower(ep, partitioner=[_coreml_partitioner(precision)],
                                       constant_methods={"get_metadata": json.dumps(metadata, sort_keys=True)})
    prog = edge.to_executorch()
    with open(Path(folder) / file_name(tower), "wb") as f:
        prog.write_to_file(f)
    return {"delegate": "CoreML", "exporter": "executorch.exir.to_edge_transform_and_lower",
            "compute_precision": "float32" if precision == "fp32" else "float16", "deployment_target": "iOS17 / macOS14",
            "delegated_partitions": _count_delegates(edge), "files": [file_name(tower)]}


def _count_delegates(edge) -> int:
    try:
        gm = edge.exported_program().graph_module
        return sum(1 for n in gm.graph.nodes if n.op == "call_function" and "executorch_call_delegate" in str(n.target))
    except Exception:  # informational only
        return -1


def _runtime():
    from executorch.runtime import Runtime

    return Runtime.get()


_DTYPES = {6: "float32", 5: "float16", 3: "int32", 4: "int64"}  # c10::ScalarType codes


def read_io(method) -> dict:
    """Inputs/outputs of a loaded method, or of a method's ``MethodMeta`` (``program.metadata(name)``)."""
    meta = getattr(method, "metadata", method)
    ins, outs = [], []
    for i in range(meta.num_inputs()):
        t = meta.input_tensor_meta(i)
        ins.append({"name": "image" if t.dtype() in (5, 6) else "tokens",
                    "dtype": _DTYPES.get(t.dtype(), str(t.dtype())), "shape": list(t.sizes())})
    for i in range(meta.num_outputs()):
        t = meta.output_tensor_meta(i)
        outs.append({"name": "embedding", "dtype": _DTYPES.get(t.dtype(), str(t.dtype())), "shape": list(t.sizes())})
    return {"inputs": ins, "outputs": outs}


def read_metadata(path: Path) -> dict:
    prog = _runtime().load_program(str(path))
    out = prog.load_method("get_metadata").execute([])
    return json.loads(out[0])


def runner(folder: Path, tower: str, info: dict, wrapper=None, precision: str = "fp32", **_):
    """``(fn, io, how)``: the ``.pte`` in ExecuTorch's Python runtime (``executorch.runtime``)."""
    import sys
    from importlib import metadata as md

    path = Path(folder) / info["files"][0]
    prog = _runtime().load_program(str(path))
    if info.get("delegate") == "CoreML" and sys.platform != "darwin":
        return _coreml_delegate_off_apple(path, prog, wrapper, precision, info)
    try:
        method = prog.load_method("forward")
    except RuntimeError as e:  # e.g. XNNPACK rejecting a node at init: the .pte is unusable, say so in one line
        from .validate import ValidationError

        raise ValidationError(f"executorch {tower} ({precision}): the exported program does not load in ExecuTorch's "
                              f"runtime ({e}); export another precision (e.g. fp32 or fp16)") from None
    io = read_io(method)
    # ExecuTorch methods have no input names: the names are ours, by position (one input, one output).

    def run(x: np.ndarray) -> np.ndarray:
        try:
            return method.execute([torch.from_numpy(np.ascontiguousarray(x))])[0].numpy()
        except RuntimeError as e:  # a delegate failing at run time: the .pte is unusable, one line
            from .validate import ValidationError

            raise ValidationError(f"executorch {tower} ({precision}): the exported program fails in ExecuTorch's "
                                  f"runtime ({e}); export another precision (e.g. fp32 or fp16)") from None

    return run, io, f"executorch {md.version('executorch')} runtime (XNNPACK + portable kernels)"


def _coreml_delegate_off_apple(path: Path, prog, wrapper, precision: str, info: dict):
    """Off Apple platforms the Core ML backend is not in ExecuTorch's runtime: check the program (its
    inputs/outputs, the metadata method) and run the weights of the delegated Core ML programs, read back
    from the ``.pte``, in PyTorch -- as ``mc2export coreml`` validates on Linux."""
    import contextlib
    import io as _io
    import tempfile

    from . import coreml as C

    try:
        from executorch.examples.apple.coreml.scripts.extract_coreml_models import extract_coreml_models
    except ImportError as e:  # pragma: no cover - shipped in the executorch wheel
        raise UserError(f"cannot read the Core ML programs back from the .pte ({e}): {PIP_HINT}") from None
    io_ = read_io(prog.metadata("forward"))
    json.loads(prog.load_method("get_metadata").execute([])[0])  # the metadata method runs on portable kernels
    with tempfile.TemporaryDirectory(prefix="mc2export-coreml-delegate-") as d:
        with contextlib.redirect_stdout(_io.StringIO()):
            models = extract_coreml_models(Path(path).read_bytes(), d)
        consts = {}
        for m in models:
            for pkg in Path(m).rglob("*.mlpackage"):
                consts.update(C.saved_consts(pkg))
    run, info["emulation"] = C.emulated_runner(consts, wrapper, precision, what="executorch",
                                               source="the Core ML delegate")
    how = ("skipped: ExecuTorch's Core ML delegate runs on iOS/macOS only; checked the .pte (inputs/outputs, metadata "
           f"method, {len(models)} Core ML program(s)) and ran their weights, read back, in PyTorch "
           f"({'fp16' if precision != 'fp32' else 'fp32'} activations)")
    return run, io_, how
