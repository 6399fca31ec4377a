"""Which graph to give OpenVINO: the folded model through ``openvino.convert_model`` (PyTorch frontend), as it
is or in our export forms (``export.openvino.openvino_friendly``), or our ONNX bundle's graph
(``mc2export onnx``: ``export.onnx.ort_friendly``) read by OpenVINO -- and the runtime settings -- timed side by
side in one run at the f32 and bf16 inference precisions, with ONNX Runtime fp32 on our ONNX graph as the
baseline.

Candidates per tower (same weights: the fidelity kit's seed-0 weights when available, else random):
  * ``ov-pt``       -- ``convert_model`` of the folded wrapper as PyTorch runs it (image only: OpenVINO's PyTorch
    frontend mis-converts the text tower's pooled ``gather`` of a sliced projection);
  * ``ov-pt-forms`` -- ``convert_model`` inside ``openvino_friendly`` (what ``mc2export openvino`` exports);
  * ``ov-onnx``     -- our ONNX export read by ``openvino.Core().read_model``;
  * ``ov-pt-forms-nopin`` -- the exported form with ``ENABLE_CPU_PINNING`` off (a shared machine);
  * ``ort``         -- ONNX Runtime fp32 on our ONNX export (the baseline).
each OpenVINO one at hint f32 and bf16, batch 1, ``--threads`` threads, one stream. Timing: the paired,
interleaved protocol of ``benchmarks/paired.py``; medians and paired ratios against ``ov-pt-forms`` at the
same precision. Every candidate's outputs are checked against the PyTorch model first (cosine).

    python benchmarks/openvino_forms.py --variant s0 --rounds 30
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


def main() -> None:
    sys.path.insert(0, str(ROOT))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="s0")
    add_arguments(ap)
    ap.add_argument("--towers", default="image,text")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import openvino as ov
    import torch

    import mc2export
    import mc2export.export as E
    from export_all import kit_checkpoint
    from mc2export.export import openvino as OV
    from mc2export.export.onnx import session
    from mc2export.export.wrappers import build_wrappers, example_input
    from paired import cpu_record, interleaved, median_ms, paired_ratio, save

    torch.set_num_threads(args.threads)
    towers = [t for t in args.towers.split(",") if t]
    vid = mc2export.resolve_variant(args.variant)
    card = mc2export.get_card(vid)
    work = Path(tempfile.mkdtemp(prefix="mc2export-ovforms-"))
    ckpt = kit_checkpoint(vid, work)
    weights = {"checkpoint": ckpt} if ckpt else {"random_weights": True}
    print(f"{vid}: exporting our ONNX graph (weights: {'fidelity kit seed 0' if ckpt else 'random'}) ...", flush=True)
    E.export_bundle("onnx", vid, out=work / "onnx", towers=towers, **weights)
    model = mc2export.create_model(vid, checkpoint=ckpt, fold=True) if ckpt else mc2export.create_model(vid, fold=True)
    core = ov.Core()
    caps = OV.cpu_capabilities(core)
    hints = ["f32"] + (["bf16"] if caps["bf16"] else [])
    res = {"benchmark": "openvino_forms", "variant": vid, "threads": args.threads, "rounds": args.rounds,
           "burst": args.burst, "gap_s": args.gap, "weights": "fidelity kit seed 0" if ckpt else "random",
           "when": time.strftime("%Y-%m-%d %H:%M:%S"), **cpu_record(), "openvino_capabilities": caps["capabilities"],
           "versions": OV.versions(), "towers": {}}
    for tower in towers:
        w = build_wrappers(model, [tower], True)[tower]
        ex = example_input(tower, card)
        x = ex.numpy()
        with torch.no_grad():
            ref = w(ex).numpy()
        graphs = {"ov-pt-forms": OV.convert(tower, w, ex), "ov-onnx": core.read_model(str(work / "onnx" / f"{tower}.onnx"))}
        if tower == "image":
            graphs["ov-pt"] = ov.convert_model(w, example_input=(ex,), input=[(list(ex.shape), ov.Type.f32)])
        runners, cosines = {}, {}
        for name, g in graphs.items():
            for hint in hints:
                for pin in ((True, False) if name == "ov-pt-forms" else (True,)):
                    props = dict(OV.properties(hint), ENABLE_CPU_PINNING=pin)
                    compiled, _ = OV.compile_tower(g, props, args.threads, core)
                    req = compiled.create_infer_request()
                    key = f"{name}{'' if pin else '-nopin'}/{hint}"
                    runners[key] = (lambda r=req: r.infer({0: x}))
                    out = np.asarray(req.infer({0: x})[0], np.float64)[0]
                    cosines[key] = float(out @ ref[0] / np.linalg.norm(out) / np.linalg.norm(ref[0]))
        sess = session(work / "onnx" / f"{tower}.onnx", args.threads)
        runners["ort/fp32"] = (lambda s=sess: s.run(None, {s.get_inputs()[0].name: x}))
        bad = {k: c for k, c in cosines.items() if c < (0.99999 if k.endswith("f32") else 0.999)}
        assert not bad, f"{tower}: candidates disagree with PyTorch: {bad}"
        print(f"{tower}: timing {len(runners)} candidates, {args.rounds} rounds ...", flush=True)
        run = interleaved(runners, args.rounds, args.burst, args.gap, args.warmup, log=print)
        t = run["times"]
        entry = {"median_ms": {k: round(median_ms(v), 3) for k, v in t.items()},
                 "min_ms": {k: round(min(v) * 1e3, 3) for k, v in t.items()}, "cosine": cosines,
                 "paired_ratio_vs_ov-pt-forms": {k: round(paired_ratio(t, k, f"ov-pt-forms/{k.split('/')[1]}"), 4)
                                                 for k in t if k.startswith("ov-") and not k.startswith("ov-pt-forms/")},
                 "ort_fp32_over": {k: round(paired_ratio(t, "ort/fp32", k), 4) for k in t if k != "ort/fp32"},
                 "loadavg_before": run["loadavg_before"], "loadavg_after": run["loadavg_after"]}
        res["towers"][tower] = entry
    lines = [f"# OpenVINO graph forms, {vid} ({res['cpu']}: {res['cpu_isa']}; OpenVINO capabilities "
             f"{', '.join(caps['capabilities'])}; {args.threads} threads, batch 1, {args.rounds} interleaved rounds of "
             f"{args.burst}-call bursts; weights: {res['weights']})", "",
             "| tower | candidate / hint | median ms | min ms | vs ov-pt-forms (paired, > 1: slower) | ORT fp32 / it "
             "(paired) | cosine vs PyTorch |", "|---|---|---|---|---|---|---|"]
    for tower, e in res["towers"].items():
        for k in sorted(e["median_ms"]):
            r = e["paired_ratio_vs_ov-pt-forms"].get(k)
            o = e["ort_fp32_over"].get(k)
            lines.append(f"| {tower} | {k} | {e['median_ms'][k]:.2f} | {e['min_ms'][k]:.2f} | "
                         f"{'–' if r is None else f'{r:.3f}'} | {'–' if o is None else f'{o:.2f}×'} | "
                         f"{e['cosine'].get(k, 1.0):.6f} |")
        lines.append(f"| {tower} | load average before → after | {e['loadavg_before'][0]} → {e['loadavg_after'][0]} "
                     "| | | | |")
    save(args.out or RESULTS / f"openvino_forms_{vid}", res, lines)
    import shutil

    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
