"""The runtimes a bundle is measured on, on this machine: load a tower, prepare its input, run it once.

=================  =====================================================================================
``onnxruntime``    the bundle's ``.onnx`` in ONNX Runtime's CPUExecutionProvider, ``intra_op_num_threads``
                   = ``--threads``, ``inter_op_num_threads`` = 1, sequential execution.
``executorch``     the bundle's ``.pte`` in ExecuTorch's Python runtime (the same C++ runtime as on a phone,
                   XNNPACK delegate + portable kernels), XNNPACK threadpool reset to ``--threads``.
``coreml``         the bundle's ``.mlpackage`` through ``coremltools`` prediction (macOS only) with
                   ``--compute-units`` all / cpu-ne / cpu-gpu / cpu.
``openvino``       the bundle's IR in OpenVINO's CPU plugin, compiled with the bundle's properties (inference
                   precision hint, one stream, latency hint) and ``INFERENCE_NUM_THREADS`` = ``--threads``; a bf16
                   bundle runs in f32 on a CPU without bf16 (``runtime_info.fallback`` says so).
``litert``         the bundle's ``.tflite`` in ai-edge-litert's interpreter (LiteRT's C++ runtime, the one an
                   Android app links), its default XNNPACK delegate, ``num_threads`` = ``--threads``, run through
                   the ``serving_default`` signature.
``torch``          the PyTorch model of the bundle's variant, folded, in the export wrapper (the graph that
                   was exported), eager, ``torch.set_num_threads(--threads)``, inference mode.
``torch-unfolded`` the same, train-time (unfolded) model: the baseline folding improves on.
=================  =====================================================================================

``load()`` returns a :class:`Loaded` whose ``call()`` runs exactly one inference on a prepared input
(inputs are built once, outside the timed region), and whose ``run(x)`` runs the same loaded model on another
input given as :func:`example_input` builds it (float32 NCHW in [0, 1] / int32 tokens) and returns the
embedding as float32 numpy (``mc2export verify`` runs the bundle's vectors through it). Heavy runtimes are
imported inside ``load()`` only.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

from ..errors import UserError

RUNTIMES = ("onnxruntime", "executorch", "coreml", "openvino", "litert", "torch", "torch-unfolded")
COMPUTE_UNITS = {"all": "ALL", "cpu-ne": "CPU_AND_NE", "cpu-gpu": "CPU_AND_GPU", "cpu": "CPU_ONLY"}
_MODULES = {"onnxruntime": ("onnxruntime",), "executorch": ("executorch",), "coreml": ("coremltools",),
            "openvino": ("openvino",), "litert": ("ai_edge_litert",), "torch": ("torch",),
            "torch-unfolded": ("torch",)}
_DISTS = {"onnxruntime": ("onnxruntime",), "executorch": ("executorch", "torch"),
          "coreml": ("coremltools",), "openvino": ("openvino",), "litert": ("ai-edge-litert",), "torch": ("torch",),
          "torch-unfolded": ("torch",)}
INSTALL = {"onnxruntime": "pip install onnxruntime  (or: pip install 'mc2export[export]')",
           "executorch": "pip install executorch==1.4.1  (or: pip install 'mc2export[export]')",
           "coreml": "pip install coremltools==9.0  (or: pip install 'mc2export[export]')",
           "openvino": "pip install openvino  (or: pip install 'mc2export[openvino]')",
           "litert": "pip install ai-edge-litert  (or: pip install 'mc2export[litert]')",
           "torch": "pip install torch", "torch-unfolded": "pip install torch"}


def _installed(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(runtime: str, compute_units: Optional[str] = None, platform: Optional[str] = None) -> None:
    """Fail with one line naming the fix when ``runtime`` cannot run here (cheap: imports nothing heavy)."""
    if runtime not in RUNTIMES:
        raise UserError(f"unknown --runtime '{runtime}': choose one of {', '.join(RUNTIMES)}")
    platform = platform or sys.platform
    if runtime == "coreml" and platform != "darwin":
        raise UserError("Core ML prediction needs macOS (coremltools cannot run models on Linux/Windows): run "
                        "`mc2export bench BUNDLE --runtime coreml` on a Mac, or use --device ios with the iOS "
                        "sample app's benchmark mode; here, time the onnx/executorch bundles instead")
    if compute_units is not None and compute_units not in COMPUTE_UNITS:
        raise UserError(f"unknown --compute-units '{compute_units}': choose one of {', '.join(COMPUTE_UNITS)}")
    missing = [m for m in _MODULES[runtime] if not _installed(m)]
    if missing:
        raise UserError(f"runtime {runtime} is not installed here (no module {', '.join(missing)}): "
                        f"{INSTALL[runtime]}")


def versions(runtime: str) -> Dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in _DISTS.get(runtime, ()):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def runtime_version(runtime: str) -> Optional[str]:
    v = versions(runtime)
    return v.get(_DISTS[runtime][0]) if runtime in _DISTS else None


@dataclass
class Loaded:
    call: Callable[[], object]
    info: dict = field(default_factory=dict)
    keep: object = None  # whatever must stay alive while ``call`` is used
    run: Optional[Callable[[object], object]] = None  # x (example_input's form) -> float32 embedding
    io: Optional[dict] = None  # {"inputs": [{name, dtype, shape}], "outputs": [...]} where the runtime says


def example_input(tower: str, config: dict):
    """The tower's input as numpy (float32 RGB in [0, 1] / int32 tokens): deterministic, realistic."""
    import numpy as np

    batch = int(config.get("batch") or 1)
    if tower == "image":
        r = int(config.get("resolution") or config["preprocess"]["resolution"])
        rng = np.random.default_rng(0)
        return rng.random((batch, 3, r, r), dtype=np.float32)
    from ..tokenizer import tokenize

    ctx = int(config.get("context_length") or 77)
    return tokenize(["a photo of a dog playing in the snow"] * batch, context_length=ctx).numpy().astype(np.int32)


def load(runtime: str, bundle, tower: str, threads: int, compute_units: Optional[str] = None,
         checkpoint: Optional[str] = None) -> Loaded:
    """Load ``tower`` of ``bundle`` in ``runtime``; ready to time ``Loaded.call()``."""
    if runtime == "onnxruntime":
        return _load_ort(bundle, tower, threads)
    if runtime == "executorch":
        return _load_executorch(bundle, tower, threads)
    if runtime == "coreml":
        return _load_coreml(bundle, tower, compute_units or "all")
    if runtime == "openvino":
        return _load_openvino(bundle, tower, threads)
    if runtime == "litert":
        return _load_litert(bundle, tower, threads)
    if runtime in ("torch", "torch-unfolded"):
        return _load_torch(bundle, tower, threads, folded=runtime == "torch", checkpoint=checkpoint)
    raise UserError(f"unknown --runtime '{runtime}': choose one of {', '.join(RUNTIMES)}")


def _io(fmt: str, handle) -> Optional[dict]:
    """The model's input / output names and shapes as the runtime reports them, to check against config.json
    (None: the runtime names none -- an ExecuTorch program's tensors are unnamed)."""
    try:
        if fmt == "onnx":
            ports = (handle.get_inputs(), handle.get_outputs())
            return {side: [{"name": a.name, "shape": list(a.shape)} for a in ps]
                    for side, ps in zip(("inputs", "outputs"), ports)}
        if fmt == "openvino":
            return {side: [{"name": p.get_any_name(), "shape": [int(d) for d in p.get_shape()]} for p in ps]
                    for side, ps in (("inputs", handle.inputs), ("outputs", handle.outputs))}
        if fmt == "coreml":
            return {"inputs": [{"name": f.name} for f in handle.description.input],
                    "outputs": [{"name": f.name} for f in handle.description.output]}
    except Exception:  # pragma: no cover - a runtime build without the introspection calls
        return None
    return None


def _load_ort(bundle, tower: str, threads: int) -> Loaded:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(bundle.model_file(tower)), sess_options=so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = example_input(tower, bundle.config)
    if "int64" in inp.type:
        x = x.astype("int64")
    feed = {inp.name: x}
    run = sess.run

    def call():
        return run(None, feed)

    def run_on(x):
        return run(None, {inp.name: x.astype("int64") if "int64" in inp.type else x})[0]

    return Loaded(call, {"provider": "CPUExecutionProvider", "intra_op_threads": int(threads),
                         "graph_optimization": "ORT_ENABLE_ALL",
                         "input": {"name": inp.name, "type": inp.type, "shape": list(x.shape)}}, keep=sess,
                  run=run_on, io=_io("onnx", sess))


def _load_openvino(bundle, tower: str, threads: int) -> Loaded:
    import numpy as np

    from ..export.openvino import compile_tower

    entry = bundle.model_entry(tower).get("openvino") or {}
    compiled, info = compile_tower(bundle.model_file(tower), entry.get("properties"), threads)
    req = compiled.create_infer_request()
    x = example_input(tower, bundle.config)
    feed = {0: x}
    infer = req.infer

    def call():
        return infer(feed)

    def run_on(v):
        return np.array(infer({0: np.ascontiguousarray(v)})[0], dtype=np.float32)

    return Loaded(call, {**info, "bundle_precision": entry.get("precision"),
                         "input": {"dtype": str(x.dtype), "shape": list(x.shape)}}, keep=(compiled, req, x),
                  run=run_on, io=_io("openvino", compiled))


def _load_litert(bundle, tower: str, threads: int) -> Loaded:
    from ..export import litert as L

    it = L.interpreter(bundle.model_file(tower), threads)
    run_on = L.signature_runner(it, tower)
    runner = it.get_signature_runner(L.SIGNATURE)
    feed = {L.INPUT_NAME[tower]: example_input(tower, bundle.config)}

    def call():
        return runner(**feed)

    entry = bundle.model_entry(tower)
    return Loaded(call, {"delegate": "XNNPACK (the interpreter's default)", "threads": int(threads),
                         "signature": L.SIGNATURE, "bundle_precision": bundle.precision,
                         "quantization": (entry.get("quantization") or {}).get("method"),
                         "input": {"name": L.INPUT_NAME[tower], "dtype": str(feed[L.INPUT_NAME[tower]].dtype),
                                   "shape": list(feed[L.INPUT_NAME[tower]].shape)}},
                  keep=(it, runner), run=run_on)


def _portable_lib():
    """ExecuTorch's C++ runtime bindings, without importing the exporter (``executorch.exir``: ~10 s)."""
    import torch  # noqa: F401  (loads libtorch, which the extension links against)

    try:
        from executorch.extension.pybindings import _portable_lib as lib
    except ImportError:  # pragma: no cover - other packagings
        from executorch.extension.pybindings import portable_lib as lib
    return lib


def _load_executorch(bundle, tower: str, threads: int) -> Loaded:
    import torch

    lib = _portable_lib()
    try:
        lib._unsafe_reset_threadpool(int(threads))
    except Exception:  # pragma: no cover - a build without the threadpool
        pass
    verification = getattr(lib, "Verification", None)
    kwargs = {"program_verification": verification.Minimal} if verification is not None else {}
    program = lib._load_program(str(bundle.model_file(tower)), **kwargs)
    method = program.load_method("forward")
    x = torch.from_numpy(example_input(tower, bundle.config))
    args = [x]

    def call():
        return method(args)

    def run_on(x):
        return method([torch.from_numpy(x)])[0].numpy()

    try:
        nthreads = int(lib._threadpool_get_thread_count())
    except Exception:  # pragma: no cover
        nthreads = int(threads)
    backends = []
    try:
        backends = list(lib._get_registered_backend_names())
    except Exception:  # pragma: no cover
        pass
    return Loaded(call, {"delegate": "XNNPACK (+ portable kernels)", "threadpool_threads": nthreads,
                         "registered_backends": backends,
                         "input": {"dtype": str(x.dtype).replace("torch.", ""), "shape": list(x.shape)}},
                  keep=(program, method, x), run=run_on)


def _load_coreml(bundle, tower: str, compute_units: str) -> Loaded:
    import coremltools as ct
    import numpy as np

    units = getattr(ct.ComputeUnit, COMPUTE_UNITS[compute_units])
    model = ct.models.MLModel(str(bundle.model_file(tower)), compute_units=units)
    spec = model.get_spec()
    inp = spec.description.input[0]
    image_type = inp.type.WhichOneof("Type") == "imageType"

    def feed(x):
        if image_type:  # one pixel buffer: the bundle's batch is 1 (--batch > 1 has a MultiArray input)
            from PIL import Image

            arr = (np.clip(x[0].transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8)
            return {inp.name: Image.fromarray(arr, "RGB")}
        return {inp.name: x.astype(np.int32) if tower == "text" else x}

    example = feed(example_input(tower, bundle.config))
    predict = model.predict

    def call():
        return predict(example)

    def run_on(x):
        return np.asarray(predict(feed(x))["embedding"], dtype=np.float32)

    return Loaded(call, {"compute_units": compute_units, "coreml_compute_unit": COMPUTE_UNITS[compute_units],
                         "input": {"name": inp.name, "type": inp.type.WhichOneof("Type")}}, keep=model, run=run_on,
                  io=_io("coreml", spec))


def torch_weights(bundle, checkpoint: Optional[str]):
    """(checkpoint path or None, pretrained: bool, note) for the torch baselines, from the bundle's record."""
    w = bundle.config.get("weights") or {}
    src = w.get("source")
    if checkpoint:
        return checkpoint, False, f"weights from --checkpoint {os.path.basename(str(checkpoint))}"
    if src == "pretrained":
        return None, True, f"pretrained weights ({w.get('repo_id')}) from the local Hugging Face cache"
    if src == "checkpoint":
        return None, False, (f"random weights: the bundle was exported from {w.get('file')} (pass --checkpoint to "
                             "use it; latency does not depend on the weight values)")
    return None, False, "random weights (as the bundle)"


def _load_torch(bundle, tower: str, threads: int, folded: bool, checkpoint: Optional[str]) -> Loaded:
    import torch

    from .. import create_model, fold
    from ..export.wrappers import build_wrappers

    torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    ckpt, pretrained, note = torch_weights(bundle, checkpoint)
    model = None
    if pretrained:
        old = os.environ.get("HF_HUB_OFFLINE")
        os.environ["HF_HUB_OFFLINE"] = "1"  # a benchmark never downloads: the cache or random weights
        try:
            model = create_model(bundle.variant, pretrained=True)
        except Exception:
            note = "random weights (the bundle's pretrained weights are not in the local cache)"
        finally:
            if old is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = old
    if model is None:
        model = create_model(bundle.variant, checkpoint=ckpt) if ckpt else create_model(bundle.variant)
    if folded:
        model = fold(model)
    model.eval()
    normalize = bool(bundle.config.get("output_normalized", True))
    wrapper = build_wrappers(model, [tower], normalize)[tower]
    x = torch.from_numpy(example_input(tower, bundle.config))

    def call():
        with torch.inference_mode():
            return wrapper(x)

    def run_on(v):
        with torch.inference_mode():
            return wrapper(torch.from_numpy(v)).numpy()

    return Loaded(call, {"model": "folded" if folded else "unfolded (train-time)", "weights": note,
                         "torch_threads": torch.get_num_threads(), "mode": "eager, inference_mode",
                         "input": {"dtype": str(x.dtype).replace("torch.", ""), "shape": list(x.shape)}},
                  keep=(model, wrapper, x), run=run_on)


__all__ = ["RUNTIMES", "COMPUTE_UNITS", "require", "versions", "runtime_version", "load", "Loaded",
           "example_input", "torch_weights"]
