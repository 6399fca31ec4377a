"""Desktop CPUs: for every variant, the fastest runtime and precision that holds its tolerance, image and text p50
at ``--threads`` threads, batch 1, side by side in one run with our ONNX Runtime fp32 bundle.

Candidates (bundles exported through the CLI with the fidelity kit's seed-0 weights, so that each export's own
validation -- its precision's tolerance -- decides whether it counts; an export that fails validation is
recorded and left out): ONNX Runtime fp32 (the baseline) and int8 (dynamic), OpenVINO fp32, bf16 (on CPUs with
bf16), int8 (NNCF) and auto (per tower the export's own pick, which also tries int8 with its float rest at bf16),
LiteRT fp32 and int8 (dynamic range; ai-edge-litert's interpreter, XNNPACK). Each tower of each bundle is loaded
with the harness's own loaders
(``mc2export.bench.runtimes.load``: the bundle's runtime properties, ``--threads``), and all candidates of a
tower are timed in the same interleaved rounds (``benchmarks/paired.py``): medians, and per-round ratios
against ORT fp32. Per tower the fastest validated candidate wins; the variant's desktop figure is the sum of
the two winners (an app may run each tower in its own runtime), against the card's target and the mission's
3-15 ms band.

Resumable and per variant: results accumulate in ``benchmarks/results/desktop.json`` keyed by variant (done
variants are skipped unless ``--redo``), bundles are kept in ``--bundle-dir`` (outside the repository) and
reused. ``--max-load`` waits for a quiet machine before each variant's timing.

    python benchmarks/desktop.py --variants s0 --rounds 5                 # a check that it runs
    python benchmarks/desktop.py --variants s0 s2 b mobileclip-s0         # one piece of the sweep
    python benchmarks/desktop.py                                          # every variant (hours: S4, L-14)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))
CANDIDATES = {  # name -> (format, precision, runtime)
    "ort-fp32": ("onnx", "fp32", "onnxruntime"),
    "ort-int8": ("onnx", "int8", "onnxruntime"),
    "ov-fp32": ("openvino", "fp32", "openvino"),
    "ov-bf16": ("openvino", "bf16", "openvino"),
    "ov-int8": ("openvino", "int8", "openvino"),
    "ov-auto": ("openvino", "auto", "openvino"),  # per tower, chosen at export: also int8 with a bf16 float rest
    "litert-fp32": ("litert", "fp32", "litert"),  # x86 is not LiteRT's home: recorded for reference beside ORT
    "litert-int8": ("litert", "int8", "litert"),  # dynamic range (XNNPACK qd8)
}
BASELINE = "ort-fp32"


def ensure_bundle(name: str, vid: str, bundle_dir: Path, weights_args, timeout: float) -> dict:
    """``{"path", "ok", "export": record}``: the candidate's bundle, exported once (validated) and reused."""
    from export_all import run_export

    fmt, prec, _ = CANDIDATES[name]
    out = bundle_dir / f"{vid}-{fmt}-{prec}"
    if (out / "config.json").is_file():
        val = json.loads((out / "validation.json").read_text())
        return {"path": out, "ok": bool(val.get("passed")), "export": {"reused": True, "towers": {
            t: {k: v[k] for k in ("cosine_min", "max_abs_over_std", "prediction") if k in v}
            for t, v in val["towers"].items()}}}
    print(f"  {vid}: exporting {name} ...", flush=True)
    rec = run_export(fmt, vid, prec, weights_args, out, timeout)
    if not rec["ok"]:
        print(f"  {vid}: {name} did not export/validate: {rec.get('error')}", flush=True)
    return {"path": out, "ok": rec["ok"], "export": rec}


def time_variant(vid: str, bundles: dict, args) -> dict:
    from mc2export.bench import runtimes
    from mc2export.bench.bundles import load_bundle
    from paired import interleaved, median_ms, paired_ratio

    towers = {}
    for tower in ("image", "text"):
        runners, info = {}, {}
        for name, b in bundles.items():
            if not b["ok"]:
                continue
            loaded = runtimes.load(CANDIDATES[name][2], load_bundle(b["path"], verify=False), tower, args.threads)
            runners[name] = loaded.call
            info[name] = {k: loaded.info.get(k) for k in ("inference_precision", "fallback", "threads",
                                                          "intra_op_threads") if k in loaded.info}
            info[name]["_keep"] = loaded  # alive until the tower is timed
        print(f"  {vid} {tower}: timing {', '.join(runners)} ({args.rounds} rounds) ...", flush=True)
        run = interleaved(runners, args.rounds, args.burst, args.gap, args.warmup)
        t = run["times"]
        for v in info.values():
            v.pop("_keep")
        med = {k: round(median_ms(v), 3) for k, v in t.items()}
        best = min(med, key=med.get)
        towers[tower] = {"median_ms": med, "best": best,
                         "baseline_over": {k: round(paired_ratio(t, BASELINE, k), 3) for k in t if k != BASELINE}
                         if BASELINE in t else {},
                         "runtime_info": info, "loadavg": [run["loadavg_before"][0], run["loadavg_after"][0]]}
        del runners, info
    return towers


def summarize(vid: str, towers: dict) -> dict:
    import mc2export
    from mc2export.bench.device import band

    card = mc2export.get_card(vid)
    lat = card["paper"]["latency_ms"]
    best = {t: towers[t]["best"] for t in towers}
    total = sum(towers[t]["median_ms"][best[t]] for t in towers)
    base = sum(towers[t]["median_ms"].get(BASELINE, float("nan")) for t in towers)
    target = lat["image"] + lat["text"]
    return {"best": best, "total_ms": round(total, 3), "baseline_total_ms": round(base, 3),
            "speedup_vs_baseline": round(base / total, 3) if total else None,
            "paper_iphone_ms": {"image": lat["image"], "text": lat["text"], "total": target},
            "verdict": "meets" if total <= target else "misses", "ratio_to_target": round(total / target, 2),
            "band": band(total)}


def write_markdown(results: dict, path: Path) -> None:
    lines = ["# Desktop CPU latency: the fastest runtime and precision per tower that holds its tolerance", "",
             f"Machine: {results.get('cpu')} ({results.get('cpu_isa')}), {results.get('threads')} threads, batch 1. "
             "Medians of interleaved rounds (`benchmarks/paired.py`); every candidate is a validated bundle "
             "(fidelity-kit weights) measured in the same rounds as our ONNX Runtime fp32 bundle. "
             "Speed-up = ORT fp32 (image + text) / best (image + text). Verdict: against the card's target (the "
             "paper's iPhone 12 Pro Max figure; the mission holds desktop hardware to the same 3–15 ms targets).", "",
             "| variant | image: best (ms) | text: best (ms) | best total ms | ORT fp32 total ms | speed-up | "
             "paper iPhone ms (img + txt) | verdict | band | load | when |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for vid in sorted(results["variants"]):
        r = results["variants"][vid]
        if "summary" not in r:
            lines.append(f"| {vid} | {r.get('error', 'not measured')} | | | | | | | | | |")
            continue
        s, tw = r["summary"], r["towers"]
        cell = {t: f"{s['best'][t]} ({tw[t]['median_ms'][s['best'][t]]:.1f})" for t in tw}
        p = s["paper_iphone_ms"]
        load = "/".join(f"{tw[t]['loadavg'][0]}" for t in tw)
        lines.append(f"| {vid} | {cell['image']} | {cell['text']} | **{s['total_ms']:.1f}** | "
                     f"{s['baseline_total_ms']:.1f} | {s['speedup_vs_baseline']:.2f}× | {p['image']} + {p['text']} | "
                     f"{s['verdict'].upper()} ({s['ratio_to_target']}×) | {s['band']} | {load} | {r.get('when')} |")
    lines += ["", "Per tower, every candidate (median ms; ORT fp32 / candidate, paired):", ""]
    for vid in sorted(results["variants"]):
        r = results["variants"][vid]
        for t, e in (r.get("towers") or {}).items():
            cells = ", ".join(f"{k} {v:.1f}" + (f" ({e['baseline_over'][k]:.2f}×)" if k in e["baseline_over"] else "")
                              for k, v in sorted(e["median_ms"].items(), key=lambda kv: kv[1]))
            lines.append(f"- {vid} {t}: {cells}")
        bad = [k for k, b in (r.get("bundles") or {}).items() if not b["ok"]]
        if bad:
            lines.append(f"- {vid}: left out (export or validation failed): {', '.join(bad)}")
    same = same_architecture(results["variants"])
    if same:
        lines += ["", "Not timed separately: these variants have the image and text architecture (and resolution) of a "
                  "measured one, so the same graphs and the same latency; only the weights differ, and whether a "
                  "compressed form holds its tolerance with *their* weights is what `benchmarks/export_all.py` "
                  "checks, not this table.", ""]
        lines += [f"- {vid}: as {twin}" for vid, twin in sorted(same.items())]
    lines.append("")
    path.write_text("\n".join(lines))


def architecture_key(card: dict) -> str:
    """What the latency depends on: the image and text architecture and the resolution (not the weights)."""
    text = {k: v for k, v in card["text"].items() if k != "vocab"}
    return json.dumps({"image": card["image"], "text": text, "resolution": card["resolution"]}, sort_keys=True)


def same_architecture(measured: dict) -> dict:
    """{unmeasured variant: the measured variant with its architecture}."""
    import mc2export

    done = {architecture_key(mc2export.get_card(v)): v for v, r in sorted(measured.items()) if "summary" in r}
    return {v: done[architecture_key(mc2export.get_card(v))] for v in mc2export.list_variants()
            if v not in measured and architecture_key(mc2export.get_card(v)) in done}


def main() -> None:
    sys.path.insert(0, str(ROOT))
    import mc2export
    from bench_all import wait_quiet
    from export_all import kit_checkpoint
    from paired import add_arguments, cpu_record

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=mc2export.list_variants())
    ap.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    add_arguments(ap)
    ap.add_argument("--redo", action="store_true", help="re-measure variants already in the results")
    ap.add_argument("--bundle-dir", type=Path, default=Path.home() / ".cache" / "mc2export" / "desktop-bundles")
    ap.add_argument("--max-load", type=float, default=0.0, help="wait for the 1-min load average to fall below it "
                                                                 "before timing a variant (0: never wait)")
    ap.add_argument("--max-wait", type=float, default=1800)
    ap.add_argument("--timeout", type=float, default=3600, help="per export")
    ap.add_argument("--out", type=Path, default=RESULTS / "desktop")
    args = ap.parse_args()
    if BASELINE not in args.candidates:
        args.candidates.insert(0, BASELINE)
    path = args.out.with_suffix(".json")
    results = json.loads(path.read_text()) if path.is_file() else {"benchmark": "desktop", "variants": {}}
    results.update({**cpu_record(), "threads": args.threads})
    args.bundle_dir.mkdir(parents=True, exist_ok=True)
    for vid in [mc2export.resolve_variant(v) for v in args.variants]:
        if vid in results["variants"] and "summary" in results["variants"][vid] and not args.redo:
            print(f"{vid}: done before, skipped (--redo to measure again)", flush=True)
            continue
        ckpt_dir = args.bundle_dir / f"ckpt-{vid}"
        ckpt_dir.mkdir(exist_ok=True)
        ckpt = kit_checkpoint(vid, ckpt_dir)
        weights = ["--checkpoint", str(ckpt)] if ckpt else ["--random-weights"]
        bundles = {name: ensure_bundle(name, vid, args.bundle_dir, weights, args.timeout) for name in args.candidates}
        entry = {"bundles": {k: {"ok": b["ok"], "path": str(b["path"]), "export": b["export"]}
                             for k, b in bundles.items()},
                 "weights": "fidelity kit seed 0" if ckpt else "random", "when": time.strftime("%Y-%m-%d %H:%M")}
        if not bundles[BASELINE]["ok"]:
            entry["error"] = "the ORT fp32 baseline did not export"
        else:
            wait_quiet(args.max_load, args.max_wait)
            entry["towers"] = time_variant(vid, bundles, args)
            entry["summary"] = summarize(vid, entry["towers"])
            s = entry["summary"]
            print(f"{vid}: best image {s['best']['image']}, text {s['best']['text']}: {s['total_ms']:.1f} ms vs ORT "
                  f"fp32 {s['baseline_total_ms']:.1f} ms ({s['speedup_vs_baseline']:.2f}x); {s['verdict']} "
                  f"{s['ratio_to_target']}x the card's target, {s['band']} the 3-15 ms band", flush=True)
        results["variants"][vid] = entry
        args.out.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1, default=str) + "\n")  # after every variant: resumable
        write_markdown(results, args.out.with_suffix(".md"))
    write_markdown(results, args.out.with_suffix(".md"))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
