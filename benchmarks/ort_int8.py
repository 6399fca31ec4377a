"""ONNX Runtime's int8 on this CPU: do its integer kernels use the CPU's dot-product units (AVX-512 VNNI / AVX-VNNI;
AMX on Xeons that have it), and does a static QDQ image tower pay?

1. Kernel probe: a ``[M, K] x [K, N]`` product as fp32 ``MatMul`` and as ``MatMulInteger`` (u8 activations x s8
   weights, ORT's x86 fast path) and ``DynamicQuantizeLinear + MatMulInteger`` (what dynamic quantization runs),
   timed side by side: effective GOPS and the int8 / fp32 speed ratio. Per cycle and core, int8 dot products
   with VNNI (``vpdpbusd``) do 4x the multiply-adds of an fp32 FMA of the same width; without VNNI, u8 x s8 goes
   through ``vpmaddubsw + vpmaddwd + vpaddd`` (about 4/3x fp32 at best). A ratio well above 2 therefore means
   the VNNI kernels run; near 1 means they do not. ORT does not report the kernel it picked; the CPU flags
   are recorded beside the figures.
2. The image tower: our fp32 ONNX export, our int8 export (dynamic, MatMul/Gemm only: ORT's ConvInteger is slow
   on x86) and a static QDQ model (``quantize_static``: u8 activations, s8 per-channel weights, MinMax
   calibration on 16 synthetic probe images drawn with another seed than the validation set), ORT fp32
   text vs our int8 text for comparison. Accuracy: min cosine against the fp32 export over the 16 validation
   probe images; latency: the paired, interleaved protocol of ``benchmarks/paired.py``.

    python benchmarks/ort_int8.py --variant s0 --rounds 30
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))
from paired import add_arguments  # noqa: E402


def gemm_models(folder: Path, m: int, k: int, n: int):
    """fp32 MatMul, u8 x s8 MatMulInteger, and DynamicQuantizeLinear + MatMulInteger (dynamic int8) models."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((k, n)).astype(np.float32)
    paths = {}

    def save(name, nodes, inputs, inits, out_type):
        g = helper.make_graph(nodes, name, inputs, [helper.make_tensor_value_info("y", out_type, [m, n])], inits)
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
        paths[name] = folder / f"{name}.onnx"
        onnx.save(model, str(paths[name]))

    save("fp32", [helper.make_node("MatMul", ["x", "w"], ["y"])],
         [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])], [numpy_helper.from_array(w, "w")],
         TensorProto.FLOAT)
    wq = np.clip(np.round(w / np.abs(w).max() * 127), -127, 127).astype(np.int8)
    save("u8s8", [helper.make_node("MatMulInteger", ["x", "w"], ["y"])],
         [helper.make_tensor_value_info("x", TensorProto.UINT8, [m, k])], [numpy_helper.from_array(wq, "w")],
         TensorProto.INT32)
    save("dynamic", [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "s", "z"]),
                     helper.make_node("MatMulInteger", ["xq", "w", "z"], ["y"])],
         [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])], [numpy_helper.from_array(wq, "w")],
         TensorProto.INT32)
    feeds = {"fp32": rng.standard_normal((m, k)).astype(np.float32),
             "u8s8": rng.integers(0, 255, (m, k), dtype=np.uint8),
             "dynamic": rng.standard_normal((m, k)).astype(np.float32)}
    return paths, feeds


class _Images:
    """onnxruntime.quantization calibration reader over a list of image batches."""

    def __init__(self, name, batches):
        self.name, self.it = name, iter(batches)

    def get_next(self):
        x = next(self.it, None)
        return None if x is None else {self.name: x}


def main() -> None:
    sys.path.insert(0, str(ROOT))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="s0")
    add_arguments(ap)
    ap.add_argument("--gemm-rounds", type=int, default=20)
    ap.add_argument("--gemm", default="256,1024,1024", help="M,K,N of the kernel probe")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    import mc2export
    import mc2export.export as E
    from export_all import kit_checkpoint
    from mc2export.export import validate as V
    from mc2export.export.onnx import session
    from paired import cpu_record, interleaved, median_ms, paired_ratio, save

    vid = mc2export.resolve_variant(args.variant)
    card = mc2export.get_card(vid)
    work = Path(tempfile.mkdtemp(prefix="mc2export-ortint8-"))
    res = {"benchmark": "ort_int8", "variant": vid, "threads": args.threads, "rounds": args.rounds,
           "when": time.strftime("%Y-%m-%d %H:%M:%S"), **cpu_record(), "onnxruntime": ort.__version__}

    # 1. kernel probe
    m, k, n = (int(v) for v in args.gemm.split(","))
    paths, feeds = gemm_models(work, m, k, n)
    sess = {name: session(p, args.threads) for name, p in paths.items()}
    runners = {name: (lambda s=s, f=feeds[name]: s.run(None, {s.get_inputs()[0].name: f})) for name, s in sess.items()}
    print(f"kernel probe: [{m},{k}] x [{k},{n}], {args.gemm_rounds} rounds ...", flush=True)
    run = interleaved(runners, args.gemm_rounds, args.burst, args.gap, args.warmup)
    ops = 2.0 * m * k * n
    g = {name: {"median_ms": round(median_ms(t), 3), "gops": round(ops / (median_ms(t) / 1e3) / 1e9, 1)}
         for name, t in run["times"].items()}
    res["gemm"] = {"shape": [m, k, n], **g, "int8_over_fp32_speed": {
        "u8s8": round(paired_ratio(run["times"], "fp32", "u8s8"), 3),
        "dynamic": round(paired_ratio(run["times"], "fp32", "dynamic"), 3)},
        "loadavg": [run["loadavg_before"][0], run["loadavg_after"][0]]}

    # 2. towers
    ckpt = kit_checkpoint(vid, work)
    weights = {"checkpoint": ckpt} if ckpt else {"random_weights": True}
    print(f"{vid}: exporting ONNX fp32 and int8 (weights: {'fidelity kit seed 0' if ckpt else 'random'}) ...",
          flush=True)
    for prec in ("fp32", "int8"):
        E.export_bundle("onnx", vid, out=work / prec, precision=prec, **weights)
    u8, _ = V.probe_images(card, seed=1)
    calib = [u8[i:i + 1].transpose(0, 3, 1, 2).astype(np.float32) / 255 for i in range(len(u8))]
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = work / "image-pre.onnx"
    quant_pre_process(str(work / "fp32" / "image.onnx"), str(pre), skip_symbolic_shape=True)  # static shapes
    t0 = time.perf_counter()
    quantize_static(str(pre), str(work / "image-qdq.onnx"), _Images("image", calib), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    res["qdq_quantize_seconds"] = round(time.perf_counter() - t0, 1)
    models = {("image", "fp32"): work / "fp32" / "image.onnx", ("image", "int8-dynamic"): work / "int8" / "image.onnx",
              ("image", "int8-static-qdq"): work / "image-qdq.onnx", ("text", "fp32"): work / "fp32" / "text.onnx",
              ("text", "int8-dynamic"): work / "int8" / "text.onnx"}
    probe = V.probe_inputs(card)
    res["towers"] = {}
    for tower in ("image", "text"):
        x_all = probe[tower].numpy()
        runners, cos = {}, {}
        ref = None
        for (tw, name), p in models.items():
            if tw != tower:
                continue
            s = session(p, args.threads)
            iname = s.get_inputs()[0].name
            out = np.concatenate([s.run(None, {iname: x_all[i:i + 1]})[0] for i in range(len(x_all))])
            ref = out if name == "fp32" else ref
            cos[name] = float(V.compare(out, ref)["cosine_min"])
            runners[name] = (lambda s=s, iname=iname, x=x_all[:1]: s.run(None, {iname: x}))
        print(f"{tower}: timing {', '.join(runners)}, {args.rounds} rounds ...", flush=True)
        run = interleaved(runners, args.rounds, args.burst, args.gap, args.warmup, log=print)
        res["towers"][tower] = {
            "median_ms": {k_: round(median_ms(t), 3) for k_, t in run["times"].items()},
            "fp32_over": {k_: round(paired_ratio(run["times"], "fp32", k_), 3) for k_ in runners if k_ != "fp32"},
            "cosine_min_vs_fp32": cos, "loadavg": [run["loadavg_before"][0], run["loadavg_after"][0]]}
    gm = res["gemm"]
    lines = [f"# ONNX Runtime int8 on this CPU ({res['cpu']}: {res['cpu_isa']}; onnxruntime {ort.__version__}, "
             f"{args.threads} threads, batch 1, weights: {'fidelity kit seed 0' if ckpt else 'random'})", "",
             f"Kernel probe, [{m},{k}] x [{k},{n}] (load {gm['loadavg'][0]} → {gm['loadavg'][1]}):", "",
             "| kernel | median ms | GOPS | speed vs fp32 (paired) |", "|---|---|---|---|",
             f"| fp32 MatMul | {gm['fp32']['median_ms']:.2f} | {gm['fp32']['gops']} | 1 |",
             f"| u8 x s8 MatMulInteger | {gm['u8s8']['median_ms']:.2f} | {gm['u8s8']['gops']} | "
             f"{gm['int8_over_fp32_speed']['u8s8']:.2f}× |",
             f"| DynamicQuantizeLinear + MatMulInteger | {gm['dynamic']['median_ms']:.2f} | {gm['dynamic']['gops']} | "
             f"{gm['int8_over_fp32_speed']['dynamic']:.2f}× |", "",
             f"Towers ({vid}; static QDQ: u8 activations, s8 per-channel weights, MinMax on 16 synthetic images; "
             f"quantized in {res['qdq_quantize_seconds']} s):", "",
             "| tower | model | median ms | fp32 / it (paired) | min cosine vs fp32 | load |", "|---|---|---|---|---|---|"]
    for tower, e in res["towers"].items():
        for name, ms in e["median_ms"].items():
            r = e["fp32_over"].get(name)
            lines.append(f"| {tower} | {name} | {ms:.2f} | {'1' if r is None else f'{r:.2f}×'} | "
                         f"{e['cosine_min_vs_fp32'][name]:.5f} | {e['loadavg'][0]} → {e['loadavg'][1]} |")
    save(args.out or RESULTS / "ort_int8", res, lines)
    import shutil

    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
