"""Latency of our exports vs a plain ONNX export of the reference-folded model, in ONNX Runtime, and of our
ExecuTorch (XNNPACK) export, per tower.

Models (same weights: the fidelity kit's seed-0 weights when available, else random):
  * ``ort-plain``  -- ``torch.onnx.export`` (default exporter settings, opset 18, one file) of
    ``mc2export.fold(model, reference_only=True)``'s towers as they are (text with int64 tokens);
  * ``ort-ours``   -- ``mc2export onnx`` fp32 (full folding, int32 tokens, pooled-token LayerNorm,
    L2 normalization inside);
  * ``et-ours``    -- ``mc2export executorch`` fp32 (XNNPACK);
  * ``ort-int8`` / ``et-int8`` -- ``mc2export onnx|executorch --precision int8`` (unless ``--no-int8``):
    what int8 pays on this CPU, paired against the fp32 export of the same runtime.
Batch 1, 2 threads for every runtime, interleaved rounds: each round visits every model once, in a
shuffled order; a visit is a pause (``--gap``), one untimed call, then ``--burst`` timed calls whose
median is the round's time (the protocol of ``benchmarks/paired.py``, which says why the pause). Medians
over rounds and paired per-round ratios; the load average is recorded before and after. Run it only when
the machine is otherwise quiet.

    python benchmarks/export_speed.py --variant s0 --rounds 40
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))
from paired import add_arguments  # noqa: E402


def plain_onnx(module, example, path: Path, input_name: str) -> None:
    import contextlib
    import io
    import warnings

    import torch

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=["features"],
                          opset_version=18, dynamo=True, external_data=False)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="s0")
    add_arguments(ap, rounds=40, warmup=5)
    ap.add_argument("--no-executorch", action="store_true")
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 exports")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    import mc2export
    import mc2export.export as E
    from export_all import kit_checkpoint
    from paired import cpu_record, interleaved, paired_ratio
    from mc2export.export.onnx import session

    torch.set_num_threads(args.threads)
    vid = mc2export.resolve_variant(args.variant)
    card = mc2export.get_card(vid)
    work = Path(tempfile.mkdtemp(prefix="mc2export-speed-"))
    ckpt = kit_checkpoint(vid, work)
    weights = {"checkpoint": ckpt} if ckpt else {"random_weights": True}
    print(f"{vid}: exporting (weights: {'fidelity kit seed 0' if ckpt else 'random'}) ...", flush=True)
    t0 = time.perf_counter()
    fmts = ["onnx"] + ([] if args.no_executorch else ["executorch"])
    precs = ["fp32"] + ([] if args.no_int8 else ["int8"])
    for fmt in fmts:
        for prec in precs:
            E.export_bundle(fmt, vid, out=work / f"{fmt}-{prec}", precision=prec, **weights)
    model = mc2export.create_model(vid, checkpoint=ckpt) if ckpt else mc2export.create_model(vid)
    ref = mc2export.fold(model, reference_only=True)
    r = card["resolution"]
    img = torch.rand(1, 3, r, r, generator=torch.Generator().manual_seed(0))
    tok64 = mc2export.tokenize(["a photo of a cat"])
    pre = card["preprocess"]  # the plain export takes the normalized image (ours normalizes inside)
    img_norm = (img - torch.tensor(pre["mean"]).reshape(1, 3, 1, 1)) / torch.tensor(pre["std"]).reshape(1, 3, 1, 1)
    plain_onnx(ref.visual, img_norm, work / "plain-image.onnx", "image")
    plain_onnx(ref.text, tok64, work / "plain-text.onnx", "tokens")
    print(f"exports ready in {time.perf_counter() - t0:.0f}s; timing ...", flush=True)

    inputs = {"image": img.numpy(), "text": tok64.to(torch.int32).numpy()}
    runners = {}
    for tower in ("image", "text"):
        s_plain = session(work / f"plain-{tower}.onnx", args.threads)
        x_plain = img_norm.numpy() if tower == "image" else tok64.numpy()
        runners[tower, "ort-plain"] = (lambda s=s_plain, x=x_plain: s.run(None, {s.get_inputs()[0].name: x}))
        for prec in precs:
            s_ours = session(work / f"onnx-{prec}" / f"{tower}.onnx", args.threads)
            runners[tower, "ort-" + ("ours" if prec == "fp32" else prec)] = (
                lambda s=s_ours, x=inputs[tower]: s.run(None, {s.get_inputs()[0].name: x}))
        if not args.no_executorch:
            from executorch.extension.pybindings import portable_lib
            from executorch.runtime import Runtime

            try:
                portable_lib._unsafe_reset_threadpool(args.threads)
            except Exception:  # older builds
                pass
            for prec in precs:
                meth = Runtime.get().load_program(str(work / f"executorch-{prec}" / f"{tower}.pte")).load_method(
                    "forward")
                xt = torch.from_numpy(inputs[tower])
                runners[tower, "et-" + ("ours" if prec == "fp32" else prec)] = (lambda m=meth, x=xt: m.execute([x]))
    # sanity: our ORT export agrees with the plain one (up to the L2 normalization ours applies)
    for tower in ("image", "text"):
        a = np.asarray(runners[tower, "ort-plain"]()[0], np.float64)[0]
        b = np.asarray(runners[tower, "ort-ours"]()[0], np.float64)[0]
        cos = float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
        assert cos > 0.99999, f"{tower}: plain and ours disagree (cos {cos})"
    run = interleaved(runners, args.rounds, args.burst, args.gap, args.warmup)
    times, load_before, load_after = run["times"], run["loadavg_before"], run["loadavg_after"]

    def ratio(t, a, b):
        return paired_ratio(times, (t, a), (t, b))

    res = {"benchmark": "export_speed", "variant": vid, "batch": 1, "threads": args.threads, "rounds": args.rounds,
           "burst": args.burst, "gap_s": args.gap,
           "weights": "fidelity kit seed 0" if ckpt else "random", "loadavg_before": load_before,
           "loadavg_after": load_after, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
           "versions": E.format_module("onnx").versions(), "towers": {}}
    # int8 pays differently with VNNI / AMX: the CPU's features go with the figures
    res.update({k: v for k, v in cpu_record().items() if k in ("cpu", "cpu_isa")})
    for tower in ("image", "text"):
        names = [k[1] for k in runners if k[0] == tower]
        entry = {"median_ms": {n: statistics.median(times[tower, n]) * 1e3 for n in names},
                 "min_ms": {n: min(times[tower, n]) * 1e3 for n in names},
                 "paired_ratio": {"ort-plain / ort-ours": ratio(tower, "ort-plain", "ort-ours")}}
        if "et-ours" in names:
            entry["paired_ratio"]["et-ours / ort-ours"] = ratio(tower, "et-ours", "ort-ours")
            entry["paired_ratio"]["et-ours / ort-plain"] = ratio(tower, "et-ours", "ort-plain")
        for rt in ("ort", "et"):
            if f"{rt}-int8" in names:
                entry["paired_ratio"][f"{rt}-ours / {rt}-int8"] = ratio(tower, f"{rt}-ours", f"{rt}-int8")
        res["towers"][tower] = entry
    out = args.out or RESULTS / f"export_speed_{vid}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    lines = [f"# Export latency, {vid} ({res['cpu']}: {res['cpu_isa']}; {args.threads} threads, batch 1, {args.rounds} interleaved "
             f"rounds of {args.burst}-call bursts, weights: {res['weights']})", "",
             "| tower | ORT plain export ms | ORT ours ms | ET XNNPACK ours ms | plain/ours (ORT) | ET/ORT ours | "
             "ET/ORT plain | ORT int8 ms | fp32/int8 (ORT) | ET int8 ms | fp32/int8 (ET) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    def ms(m, k):
        return f"{m[k]:.1f}" if k in m else "–"

    def x(p, k):
        return f"{p[k]:.2f}×" if k in p else "–"

    for tower, e in res["towers"].items():
        m, p = e["median_ms"], e["paired_ratio"]
        lines.append(f"| {tower} | {ms(m, 'ort-plain')} | {ms(m, 'ort-ours')} | {ms(m, 'et-ours')} | "
                     f"{x(p, 'ort-plain / ort-ours')} | {x(p, 'et-ours / ort-ours')} | {x(p, 'et-ours / ort-plain')} | "
                     f"{ms(m, 'ort-int8')} | {x(p, 'ort-ours / ort-int8')} | {ms(m, 'et-int8')} | "
                     f"{x(p, 'et-ours / et-int8')} |")
    lines += ["", f"Load average (1 min) before → after: {load_before[0]:.2f} → {load_after[0]:.2f}. Medians; ratios "
              "are medians of per-round paired ratios (> 1: the second is faster).", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    import shutil

    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
