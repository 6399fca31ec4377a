"""OpenVINO export (IR ``.xml`` + ``.bin``) and its runtime settings, for desktop and server x86 CPUs.

* Conversion: ``openvino.convert_model`` (PyTorch frontend) of the folded tower in the graph forms of
  :func:`openvino_friendly`, static input shapes, output named ``embedding``. Against our ONNX export read
  by OpenVINO it ran within noise at f32 and bf16 (``benchmarks/openvino_forms.py``, provisional: loaded
  machine); it keeps module paths in the node names, which NNCF's ignored scope needs.
* Precision is a *runtime property* in OpenVINO, not a file format: the CPU plugin computes in whatever
  ``INFERENCE_PRECISION_HINT`` says -- and its default is bf16 on CPUs with bf16 units (AVX-512 BF16, AMX),
  so an fp32 model compiled without the hint runs in bf16. Every model therefore carries the properties
  to compile it with (``config.json`` ``models.<tower>.openvino.properties``, also in the IR's ``rt_info``),
  and every consumer of ours compiles through :func:`compile_tower`.
* ``fp32``: hint ``f32``, fp32 weights. ``bf16``: hint ``bf16``, weights stored as fp16 (half the file;
  decompressed at load); a CPU without bf16 runs it in f32 and says so. ``int8``: NNCF post-training
  quantization (static int8 activations and weights, :func:`quantize`), the float rest at f32. ``auto``:
  per tower the fastest of those (and int8 with its float rest at bf16) that holds its tolerance on the
  exporting CPU, measured at export (:func:`choose`).

Nothing heavy is imported at module level: the benchmark harness imports this module to compile models.
"""
from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..errors import UserError

FORMAT = "openvino"
PRECISIONS = ("fp32", "bf16", "int8", "auto")
PIP_HINT = "pip install 'mc2export[openvino]'"
# int8 models compute their float remainder (kept layers, softmax, norms) in f32: with the bf16 hint, OpenVINO
# 2026.4.1 ran the SmoothQuant-ed int8 MCi0 tower at cosine 0.26 (f32: 0.994). ``auto`` also tries the bf16 rest
# ("int8-bf16") and keeps it only where it holds the int8 tolerance (the text towers did: 0.9994).
HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32", "int8-bf16": "bf16"}
PRECISION_OF = {"int8-bf16": "int8"}  # auto's candidates -> the tower's precision
# The accuracy order: a less accurate candidate has to be this much faster to be chosen by ``auto``
ACCURACY_ORDER = ("fp32", "bf16", "int8", "int8-bf16")
AUTO_MIN_GAIN = 0.05
AUTO_SECONDS = 3.0  # timing budget per tower for ``auto`` (after one warm-up call per candidate)
SMOOTH_QUANT_CONV_ALPHA = 0.5
CALIBRATION_LIMIT = 300
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
CAPTIONS_FILE = "captions.txt"
CALIBRATION_TEMPLATES = ("a photo of a {}.", "a drawing of a {}.", "a blurry photo of the {}.", "a {} on a wall.")
CALIBRATION_PER_LABEL = 8  # built-in image calibration: 8 labels x 8 = 64 synthetic images (16 under-covered MCi0)
_TYPES = {"f32": "float32", "f16": "float16", "i32": "int32", "i64": "int64", "u8": "uint8"}


def require() -> None:
    try:
        import openvino  # noqa: F401
    except ImportError:
        raise UserError(f"OpenVINO export needs openvino: {PIP_HINT}") from None


def _require_nncf() -> None:
    try:
        import nncf  # noqa: F401
    except ImportError:
        raise UserError(f"OpenVINO int8 / auto needs NNCF (post-training quantization): {PIP_HINT}") from None


def versions() -> Dict[str, str]:
    from .bundle import tool_versions

    return tool_versions(("openvino", "nncf"))


def file_name(tower: str) -> str:
    return f"{tower}.xml"


# ------------------------------------------------------------------------------------------ runtime side

def properties(hint: str) -> Dict[str, object]:
    """The compile properties of a model computing at ``hint`` (``f32`` / ``bf16``), batch-1 latency:
    one stream, OpenVINO's thread count unless the consumer gives its own (``INFERENCE_NUM_THREADS`` 0)."""
    return {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
            "INFERENCE_NUM_THREADS": 0}


def cpu_capabilities(core=None) -> dict:
    """What this CPU offers OpenVINO: ``{"cpu", "capabilities", "bf16", "int8"}``."""
    import openvino as ov

    core = core or ov.Core()
    caps = [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    return {"cpu": str(core.get_property("CPU", "FULL_DEVICE_NAME")), "capabilities": caps, "bf16": "BF16" in caps,
            "int8": "INT8" in caps}


def effective_properties(props: Optional[dict], caps: dict, threads: Optional[int] = None):
    """(properties to compile with, note): the bundle's ``props`` with ``threads`` (when given), and f32
    in place of a bf16 hint on a CPU without bf16 -- said in the note, never silent."""
    out = dict(props or properties("f32"))
    note = None
    if str(out.get("INFERENCE_PRECISION_HINT")) == "bf16" and not caps.get("bf16"):
        out["INFERENCE_PRECISION_HINT"] = "f32"
        note = "bf16 requested, but this CPU has no bf16 support (OPTIMIZATION_CAPABILITIES): ran in f32"
    if threads:
        out["INFERENCE_NUM_THREADS"] = int(threads)
    return out, note


def compile_tower(model, props: Optional[dict] = None, threads: Optional[int] = None, core=None):
    """(compiled model, info): ``model`` (an IR path or an ``ov.Model``) compiled for the CPU with the
    bundle's properties; ``info`` says what runs (the compiled model's own precision, streams, threads)."""
    import openvino as ov

    core = core or ov.Core()
    caps = cpu_capabilities(core)
    eff, note = effective_properties(props, caps, threads)
    compiled = core.compile_model(str(model) if isinstance(model, (str, Path)) else model, "CPU", eff)
    info = {"properties": {k: (v if isinstance(v, (int, float)) else str(v)) for k, v in eff.items()},
            "inference_precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
            "num_streams": int(compiled.get_property("NUM_STREAMS")),
            "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
            "cpu": caps["cpu"], "capabilities": caps["capabilities"], "fallback": note}
    return compiled, info


def read_io(compiled) -> dict:
    def desc(port):
        return {"name": port.get_any_name(), "dtype": _TYPES.get(port.get_element_type().get_type_name(),
                                                                  port.get_element_type().get_type_name()),
                "shape": [int(d) for d in port.get_shape()]}

    return {"inputs": [desc(p) for p in compiled.inputs], "outputs": [desc(p) for p in compiled.outputs]}


def read_metadata(path: Path) -> Dict[str, str]:
    """The ``mc2export.*`` metadata (and description, author, license) stored in the IR's ``rt_info``."""
    import openvino as ov

    rt = ov.Core().read_model(str(path)).get_rt_info()
    return {k: rt[k].astype(str) for k in rt.keys()
            if k.startswith("mc2export.") or k in ("description", "author", "license")}


def runner(folder: Path, tower: str, info: dict, threads: Optional[int] = None, **_):
    """``(fn, io, how)``: the IR compiled with its bundle properties (``info`` is the export's info or the
    config.json model entry), run on this CPU."""
    import openvino as ov

    entry = info.get("openvino") or {}
    compiled, run_info = compile_tower(Path(folder) / info["files"][0], entry.get("properties"), threads)
    req = compiled.create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        return np.array(req.infer({0: np.ascontiguousarray(x)})[0], dtype=np.float32)

    how = (f"openvino {ov.get_version().split('-')[0]} CPU, inference precision {run_info['inference_precision']}"
           + (f" ({run_info['fallback']})" if run_info["fallback"] else ""))
    return run, read_io(compiled), how


# ------------------------------------------------------------------------------------------- export side

def openvino_friendly(module):
    """Context: the graph forms converted to OpenVINO. The ONNX forms (:func:`.onnx.ort_friendly`): the
    text tower's 2-D residual stream with q, k, v from three linears and the pooled last block (OpenVINO's
    PyTorch frontend mis-converts the pooled ``gather`` of a sliced projection in the 3-D form), MCi
    attention as 1x1 convolutions -- measured no slower in OpenVINO (``benchmarks/openvino_forms.py``)."""
    from .onnx import ort_friendly

    return ort_friendly(module)


def convert(tower: str, wrapper, example):
    """The tower as an ``ov.Model``: static input shape and type, input ``image`` / ``tokens``, output
    ``embedding``."""
    import openvino as ov
    import torch

    typ = ov.Type.f32 if example.dtype == torch.float32 else ov.Type.i32
    with torch.no_grad(), openvino_friendly(wrapper):
        model = ov.convert_model(wrapper, example_input=(example,), input=[(list(example.shape), typ)])
    model.inputs[0].get_tensor().set_names({"image" if tower == "image" else "tokens"})
    model.outputs[0].get_tensor().set_names({"embedding"})
    return model


def ignored_scope_patterns(paths: Sequence[str]) -> List[str]:
    """NNCF ignored-scope patterns for the nodes of the modules ``paths`` (``named_modules`` paths of the
    wrapper): the PyTorch frontend names nodes ``__module.<path>/aten::op/Op``."""
    return [rf"^__module\.{re.escape(p)}[./].*" for p in paths]


@contextlib.contextmanager
def _quiet_nncf():
    """NNCF logs INFO lines and draws progress bars on stdout (where our summary table goes): silence both."""
    import logging

    from nncf.common.logging.logger import nncf_logger, set_log_level

    from .onnx import _quiet

    level = nncf_logger.level
    set_log_level(logging.ERROR)
    try:
        with _quiet():
            yield
    finally:
        set_log_level(level)


def quantize(model, wrapper, data: Sequence[np.ndarray], log: Callable[[str], None] = lambda s: None):
    """(int8 ``ov.Model``, record): NNCF post-training quantization on ``data`` (model inputs).

    The recipe, chosen on the fidelity kit's towers (min cosine over the probe set): the transformer model
    type (NNCF's rules for attention and element-wise ops; MobileCLIP2-S0 text 0.9971 -> 0.9994, its MCi0
    image tower 0.964 -> 0.990 too), SmoothQuant for the convolutions as well as the matmuls (alpha 0.5:
    MCi0 image 0.990 -> 0.992) and the modules marked ``keep_precision`` (the MCi downsampling layers,
    :func:`.wrappers.precision_sensitive`) left in float (-> 0.994). The deep MCi towers needed two more
    steps (MobileCLIP2-S3 image 0.969, S4 0.899 without them): the final conv and head in float
    (``static_int8_float``: S3 -> 0.993) and activation ranges from the calibration's min / max instead of
    NNCF's default (the mean of per-sample extremes, which cuts the rare large activations of the deep
    stages: S3 -> 0.991 alone); both together: S3 0.9987, S4 0.9974. Both apply to MCi image towers only
    (the towers with ``static_int8_float`` modules). The calibration set's size matters: MobileCLIP-S0's MCi0
    tower (other weights) reached 0.983 calibrated on 16 synthetic images, 0.991 on 64. NNCF's accuracy
    control (revert the costliest quantizers until a held-out set holds 0.995) reverted one quantizer there,
    took 2 more minutes and did not help the probe set (0.9907): not used."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    from .wrappers import precision_sensitive, static_int8_float

    tail = static_int8_float(wrapper)
    keep = precision_sensitive(wrapper) + tail
    scope = nncf.IgnoredScope(patterns=ignored_scope_patterns(keep), validate=False) if keep else None
    alphas = nncf.AdvancedSmoothQuantParameters(convolution=SMOOTH_QUANT_CONV_ALPHA)
    advanced = {"smooth_quant_alphas": alphas}
    if tail:
        advanced["activations_range_estimator_params"] = RangeEstimatorParametersSet.MINMAX
    log(f"  NNCF int8 post-training quantization ({len(data)} calibration inputs"
        + (f"; {len(keep)} modules kept in float" if keep else "") + ")")
    with _quiet_nncf():
        q = nncf.quantize(model, nncf.Dataset(list(data)), subset_size=len(data),
                          model_type=nncf.ModelType.TRANSFORMER, ignored_scope=scope,
                          advanced_parameters=AdvancedQuantizationParameters(**advanced))
    n_fq = sum(1 for op in q.get_ordered_ops() if op.get_type_name() == "FakeQuantize")
    record = {"method": "nncf.quantize (post-training, static int8 activations and weights)",
              "model_type": "TRANSFORMER", "smooth_quant_alpha": {"convolution": SMOOTH_QUANT_CONV_ALPHA,
                                                                 "matmul": alphas.matmul},
              "activation_ranges": "min / max" if tail else "NNCF default (mean of per-sample min / max)",
              "kept_in_float": keep, "fake_quantize_nodes": n_fq, "calibration_inputs": len(data)}
    return q, record


def calibration_inputs(tower: str, card: dict, batch: int, folder: Optional[Path] = None):
    """(model inputs for NNCF, description): ``--calibration DIR`` (its images, sent through the variant's
    resize + center crop; ``captions.txt``, one caption a line, for text) or the built-in probe set (16
    synthetic images drawn with another seed than the validation's; the 8 label prompts in 4 templates
    plus the probe captions)."""
    from ..tokenizer import tokenize
    from . import validate as V

    if folder is None:
        if tower == "image":
            u8, _ = V.probe_images(card, per_label=CALIBRATION_PER_LABEL, seed=1)  # validation: seed 0
            what = f"built-in probe set: {len(u8)} synthetic images (seed 1)"
        else:
            texts = [t.format(label) for t in CALIBRATION_TEMPLATES for label in V.PROBE_LABELS] + list(V.PROBE_CAPTIONS)
            what = f"built-in probe set: {len(texts)} texts (label prompts in {len(CALIBRATION_TEMPLATES)} templates, " \
                   "probe captions)"
    else:
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"--calibration '{folder}' is not a folder: pass a folder of images (and {CAPTIONS_FILE} "
                            "with one caption a line for the text tower)")
        if tower == "image":
            from ..preprocess import build_transform, load_image

            files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not files:
                raise UserError(f"--calibration '{folder}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}): add "
                                "a few hundred photos like the ones the app will see")
            files = files[:CALIBRATION_LIMIT]
            transform = build_transform(card["preprocess"])
            u8 = np.stack([transform.to_uint8(load_image(p)) for p in files])
            what = f"{len(files)} images from {folder}"
        else:
            cap = folder / CAPTIONS_FILE
            if not cap.is_file():
                raise UserError(f"--calibration '{folder}' has no {CAPTIONS_FILE} for the text tower: add one caption "
                                "a line, or pass --towers image")
            texts = read_captions(cap)
            what = f"{len(texts)} captions from {cap}"
    if tower == "image":
        x = u8.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    else:
        x = tokenize(texts, context_length=card["text"]["context_length"]).numpy().astype(np.int32)
    n = -(-len(x) // batch) * batch  # whole batches, the last one padded by repetition
    x = np.concatenate([x, np.repeat(x[-1:], n - len(x), axis=0)])
    return [x[i:i + batch] for i in range(0, n, batch)], what


def read_captions(cap: Path) -> List[str]:
    """The calibration captions (one a line, UTF-8); ``UserError`` for a file that is not UTF-8 or is empty."""
    try:
        data = cap.read_bytes()
        text = data.decode("utf-8")
    except OSError as e:
        raise UserError(f"cannot read '{cap}': {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(f"'{cap}' is not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}): save it as UTF-8") \
            from None
    texts = [ln.strip() for ln in text.splitlines() if ln.strip()][:CALIBRATION_LIMIT]
    if not texts:
        raise UserError(f"'{cap}' is empty: add one caption a line")
    return texts


def check_calibration(folder, towers) -> None:
    """Everything about ``--calibration`` that can be wrong, checked before any slow work (README)."""
    folder = Path(folder)
    if "image" in towers and not any(p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() for p in folder.rglob("*")):
        raise UserError(f"--calibration '{folder}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}): add "
                        "a few hundred photos like the ones the app will see")
    if "text" in towers:
        cap = folder / CAPTIONS_FILE
        if not cap.is_file():
            raise UserError(f"--calibration '{folder}' has no {CAPTIONS_FILE} for the text tower: add one caption "
                            "a line, or pass --towers image")
        read_captions(cap)


def choose(figures: Dict[str, dict], min_gain: float = AUTO_MIN_GAIN):
    """(precision, reason): the fastest candidate that holds its tolerance. ``figures``: precision ->
    ``{"ms", "passed", "cosine_min", ...}`` (``available: false`` or ``ms`` None: not run here). A less
    accurate candidate (fp32 > bf16 > int8 > int8-bf16) is taken only when it is at least ``min_gain`` faster than
    the best more accurate one: within timing noise, accuracy wins."""
    usable = [p for p in ACCURACY_ORDER if p in figures and figures[p].get("available", True)
              and figures[p].get("passed") and figures[p].get("ms") is not None]
    if not usable:
        raise ValueError(f"no candidate precision holds its tolerance: {figures}")
    best = usable[0]
    for p in usable[1:]:
        if figures[p]["ms"] <= figures[best]["ms"] * (1 - min_gain):
            best = p
    parts = []
    for p in ACCURACY_ORDER:
        f = figures.get(p)
        if f is None:
            continue
        if not f.get("available", True):
            parts.append(f"{p}: not available ({f.get('why', 'unsupported here')})")
        elif not f.get("passed"):
            parts.append(f"{p}: misses its tolerance (cosine min {f.get('cosine_min', float('nan')):.5f} < "
                         f"{f.get('tolerance', {}).get('cosine_min')})")
        else:
            parts.append(f"{p}: {f['ms']:.2f} ms, cosine min {f.get('cosine_min', float('nan')):.5f}")
    reason = (f"{best}: the fastest precision holding its tolerance (a less accurate one must be >= "
              f"{min_gain:.0%} faster); " + "; ".join(parts))
    return best, reason


def _time_candidates(compiled: Dict[str, object], x: np.ndarray, seconds: float) -> Dict[str, float]:
    """Median ms per candidate: round-robin single calls (one untimed call after each switch, so that a
    candidate's thread pool is awake), for about ``seconds``."""
    import time

    reqs = {p: c.create_infer_request() for p, c in compiled.items()}
    times = {p: [] for p in reqs}
    for r in reqs.values():
        r.infer({0: x})
    t_end = time.perf_counter() + seconds
    rounds = 0
    while rounds < 3 or (time.perf_counter() < t_end and rounds < 200):
        for p, r in reqs.items():
            r.infer({0: x})
            t = time.perf_counter()
            r.infer({0: x})
            times[p].append(time.perf_counter() - t)
        rounds += 1
    return {p: float(np.median(v) * 1e3) for p, v in times.items()}


def _auto(tower, model, wrapper, probe_x, ref, card, batch, calibration_dir, log):
    """(chosen candidate -- a precision, or ``int8-bf16`` --, ov.Model to save, record) for ``--precision auto``."""
    import openvino as ov

    from . import validate as V

    core = ov.Core()
    caps = cpu_capabilities(core)
    candidates = {"fp32": model, "bf16": model}
    figures: Dict[str, dict] = {}
    if not caps["bf16"]:
        for p in ("bf16", "int8-bf16"):
            figures[p] = {"available": False, "why": "this CPU has no bf16 (OPTIMIZATION_CAPABILITIES)"}
        candidates.pop("bf16")
    data, what = calibration_inputs(tower, card, batch, calibration_dir)
    q, qrec = quantize(model, wrapper, data, log)
    candidates["int8"] = q
    if caps["bf16"]:
        candidates["int8-bf16"] = q
    compiled = {}
    for p, m in candidates.items():
        hint = HINT[p]
        compiled[p], _ = compile_tower(m, properties(hint), core=core)
        req = compiled[p].create_infer_request()
        out = V.run_batched(lambda a: np.array(req.infer({0: a})[0]), probe_x, batch)
        tol = V.tolerance_for(PRECISION_OF.get(p, p))
        figs = V.compare(out, ref)
        figures[p] = {"hint": hint, "passed": not V.check(figs, tol), "tolerance": tol,
                      **{k: figs[k] for k in ("cosine_min", "cosine_mean", "max_abs_over_std")}}
    log(f"  auto: timing {', '.join(compiled)} on this CPU (~{AUTO_SECONDS:.0f} s)")
    for p, ms in _time_candidates(compiled, probe_x[:batch], AUTO_SECONDS).items():
        figures[p]["ms"] = round(ms, 3)
    best, reason = choose(figures)
    log(f"  auto: {reason}")
    record = {"chosen": best, "reason": reason, "figures": figures, "cpu": caps["cpu"],
              "capabilities": caps["capabilities"], "threads": int(compiled[best].get_property("INFERENCE_NUM_THREADS")),
              "calibration": what}
    if best.startswith("int8"):
        record["quantization"] = qrec
    return best, candidates[best], record


def _set_metadata(model, metadata: Dict[str, str], props: dict) -> None:
    for k, v in metadata.items():
        model.set_rt_info(str(v), [str(k)])
    model.set_rt_info(json.dumps(props, sort_keys=True), ["mc2export.openvino_properties"])


def export(tower: str, wrapper, example, folder: Path, precision: str, metadata: Dict[str, str], scratch: Path,
           log: Callable[[str], None] = lambda s: None, card: dict = None, calibration: Optional[dict] = None,
           calibration_dir: Optional[Path] = None, **_) -> dict:
    """Convert one tower into ``folder`` (``<tower>.xml`` + ``.bin``); returns the info for config.json."""
    require()
    import openvino as ov
    import torch

    if precision not in PRECISIONS:
        raise UserError(f"OpenVINO precision '{precision}' is not supported: choose one of {', '.join(PRECISIONS)}")
    if precision in ("int8", "auto"):
        _require_nncf()
    if card is None:
        from .. import get_card

        card = get_card(metadata["mc2export.variant"])
    batch = int(example.shape[0])
    log("  openvino.convert_model (PyTorch frontend)")
    model = convert(tower, wrapper, example)
    info = {"exporter": "openvino.convert_model (PyTorch frontend)"}
    chosen = precision
    if precision == "int8":
        data, what = calibration_inputs(tower, card, batch, calibration_dir)
        model, info["quantization"] = quantize(model, wrapper, data, log)
        info["quantization"]["calibration"] = what
    elif precision == "auto":
        if calibration is None:
            from . import validate as V

            calibration = V.probe_inputs(card)
        x = calibration[tower].numpy()
        with torch.no_grad():
            ref = wrapper(calibration[tower]).numpy()
        chosen, model, info["auto"] = _auto(tower, model, wrapper, x, ref, card, batch, calibration_dir, log)
        if "quantization" in info["auto"]:
            info["quantization"] = info["auto"].pop("quantization")
    props = properties(HINT[chosen])  # chosen: the precision, or auto's candidate (int8-bf16: int8 at the bf16 hint)
    chosen = PRECISION_OF.get(chosen, chosen)
    meta = dict(metadata, **{"mc2export.precision": chosen})
    _set_metadata(model, meta, props)
    path = Path(folder) / file_name(tower)
    ov.save_model(model, str(path), compress_to_fp16=chosen == "bf16")
    info.update({"precision": chosen, "files": [path.name, path.with_suffix(".bin").name],
                 "openvino": {"properties": props, "precision": chosen,
                              "weights": "fp16 (decompressed at load)" if chosen == "bf16" else
                              "int8 + fp32" if chosen == "int8" else "fp32",
                              "note": "compile with these properties (INFERENCE_NUM_THREADS 0 = OpenVINO's default; "
                                      "set your thread count); the CPU plugin's default precision is bf16 on CPUs "
                                      "with bf16 units, so an fp32 model needs INFERENCE_PRECISION_HINT f32"}})
    return info


__all__ = ["PRECISIONS", "require", "versions", "file_name", "export", "runner", "properties", "compile_tower",
           "cpu_capabilities", "effective_properties", "choose", "quantize", "calibration_inputs", "read_io",
           "read_metadata", "convert"]
