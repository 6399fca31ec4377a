"""Export every variant to every format (fp32 + the compressed modes) through the real CLI, and record
wall time, peak RSS, bundle sizes and the validation figures.

Each export runs as its own ``mc2export <format> ...`` process (peak RSS from ``wait4``), into a scratch
folder that is deleted afterwards (``--keep`` keeps it). Results accumulate in
``benchmarks/results/export_all.json`` keyed by ``variant/format/precision``: the script is resumable
(finished entries are skipped unless ``--redo``) and per-variant selectable, because the big towers take
long (ExecuTorch lowering of MCi4 alone took ~6.5 min in a trial).

Weights: the fidelity kit's seed-0 weights written in the official checkpoint layout when the kit has
the variant (validation figures are then meaningful), else ``--random-weights``.

    python benchmarks/export_all.py --variants s0 mobileclip-s0
    python benchmarks/export_all.py --variants s0 s2 b --formats openvino   # fp32, bf16, int8, auto
    python benchmarks/export_all.py --variants s4 --formats onnx --precisions fp32
    python benchmarks/export_all.py --variants s0 s2 b mobileclip-s0 --formats litert --out benchmarks/results/export_all_litert
    python benchmarks/export_all.py                          # everything (hours on 2 cores)
    python benchmarks/export_all.py --precisions fp32 --keep-precisions fp32 \
        --scratch ~/.cache/mc2export/bench-bundles            # fp32 bundles bench_all.py then measures
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
REFERENCE = Path(os.environ.get("MC2EXPORT_REFERENCE", ROOT.parent / "shared" / "reference"))
# the precisions besides fp32 each format's sweep exports by default (OpenVINO: bf16 is a runtime precision,
# auto picks per tower on this CPU: both are part of its sweep)
COMPRESSED = {"onnx": ("int8",), "coreml": ("pal6",), "executorch": ("int8",), "openvino": ("bf16", "int8", "auto"),
              "litert": ("int8",)}
# variant -> fidelity-kit model holding its weights in an official layout
KIT = {"mobileclip2-s0": "open_clip/MobileCLIP2-S0", "mobileclip2-s2": "open_clip/MobileCLIP2-S2",
       "mobileclip2-b": "open_clip/MobileCLIP2-B", "mobileclip2-s3": "open_clip/MobileCLIP2-S3",
       "mobileclip2-s4": "open_clip/MobileCLIP2-S4", "mobileclip2-l14": "open_clip/MobileCLIP2-L-14",
       "mobileclip-s0": "apple_v1/mobileclip_s0", "mobileclip-s1": "open_clip/MobileCLIP-S1",
       "mobileclip-s2": "open_clip/MobileCLIP-S2", "mobileclip-b": "open_clip/MobileCLIP-B"}


def kit_checkpoint(variant: str, folder: Path):
    name = KIT.get(variant)
    if name is None or not (REFERENCE / "detweights.py").is_file():
        return None
    sys.path.insert(0, str(REFERENCE))
    sys.path.insert(0, str(ROOT / "tests"))
    import detweights
    from golden import write_official

    return write_official(REFERENCE, detweights, name, folder)


def run_export(fmt: str, variant: str, precision: str, weights_args, out: Path, timeout: float) -> dict:
    cmd = [sys.executable, "-m", "mc2export.cli", fmt, "--variant", variant, "--precision", precision,
           "--out", str(out), "--force", "-q", *weights_args]
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
        proc = subprocess.Popen(cmd, stdout=so, stderr=se, cwd=ROOT)
        try:
            _, status, usage = _wait(proc, timeout)
        except TimeoutError:
            proc.kill()
            proc.wait()
            return {"ok": False, "error": f"timeout after {timeout:.0f}s", "seconds": time.perf_counter() - t0}
        wall = time.perf_counter() - t0
        so.seek(0)
        se.seek(0)
        stderr = se.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    rec = {"ok": code == 0, "exit_code": code, "seconds": round(wall, 1),
           "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "command": " ".join(cmd[1:])}
    if code != 0:
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip() and "Warning" not in ln]
        rec["error"] = " | ".join(lines[-3:])[-800:]
        return rec
    cfg = json.loads((out / "config.json").read_text())
    val = json.loads((out / "validation.json").read_text())
    rec["sizes_mb"] = {}
    for tower, m in cfg["models"].items():
        rec["sizes_mb"][tower] = round(sum(f["bytes"] for n, f in cfg["files"].items()
                                           if any(n == x or n.startswith(x + "/") for x in m["files"])) / 1e6, 2)
    rec["bundle_mb"] = round(sum(f["bytes"] for f in cfg["files"].values()) / 1e6, 2)
    rec["towers"] = {t: {k: v[k] for k in ("cosine_min", "max_abs_over_std", "export_seconds", "validate_seconds",
                                          "prediction", "precision") if k in v} for t, v in val["towers"].items()}
    rec["zero_shot"] = val.get("zero_shot")
    rec["weights"] = cfg["weights"]["source"]
    return rec


def _wait(proc, timeout):
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return pid, status, usage
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.2)


def write_markdown(results: dict, path: Path) -> None:
    lines = ["# Export of every variant (fp32 + one compressed mode per format)", "",
             f"Machine: {results.get('machine', '?')}. Wall time includes model loading, folding, export and "
             "validation; peak RSS of the export process. cos = min cosine vs the folded PyTorch model over the "
             "probe set; rel = max-abs / std (fp32 tolerance 1e-4).", "",
             "| variant | format | precision | ok | time s | peak RSS MB | image MB | text MB | image cos / rel | "
             "text cos / rel | zero-shot agree | load |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(results["runs"]):
        r = results["runs"][key]
        v, f, p = key.split("/")
        t = r.get("towers", {})

        def fig(tw):
            x = t.get(tw)
            if not x:
                return "–"
            chosen = f" ({x['precision']})" if x.get("precision") not in (None, p) else ""  # OpenVINO auto's choice
            return f"{x['cosine_min']:.6f} / {x['max_abs_over_std']:.1e}{chosen}"

        zs = r.get("zero_shot") or {}
        lines.append(f"| {v} | {f} | {p} | {'yes' if r['ok'] else 'NO: ' + r.get('error', '')[:80]} | "
                     f"{r.get('seconds', '–')} | {r.get('peak_rss_mb', '–')} | {r.get('sizes_mb', {}).get('image', '–')} | "
                     f"{r.get('sizes_mb', {}).get('text', '–')} | {fig('image')} | {fig('text')} | "
                     f"{zs.get('top1_agreement', '–')} | {r.get('loadavg', ['–'])[0]} |")
    lines += ["", "Core ML prediction needs macOS: on Linux its figures come from the weights read back from the "
              ".mlpackage run in PyTorch (see docs/bundle.md).", ""]
    lines += ["## fp32, both towers, every format (one process per format, run one after another)", "",
              "Goal for MobileCLIP2-S4: under 4 minutes and 8 GiB peak.", "",
              "| variant | formats done | total s | peak RSS GiB | all validated |", "|---|---|---|---|---|"]
    for v in sorted({k.split("/")[0] for k in results["runs"]}):
        rs = [r for k, r in results["runs"].items() if k.startswith(v + "/") and k.endswith("/fp32")]
        if not rs:
            continue
        total = sum(r.get("seconds", 0) for r in rs)
        peak = max(r.get("peak_rss_mb", 0) for r in rs) / 1024
        lines.append(f"| {v} | {len(rs)} | {total:.0f} | {peak:.1f} | {'yes' if all(r['ok'] for r in rs) else 'NO'} |")
    lines.append("")
    path.write_text("\n".join(lines))


def main() -> None:
    sys.path.insert(0, str(ROOT))
    import mc2export

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=mc2export.list_variants())
    ap.add_argument("--formats", nargs="+", default=["onnx", "coreml", "executorch", "openvino", "litert"])
    ap.add_argument("--precisions", nargs="+", default=None, help="default: fp32 + the format's compressed mode "
                                                                  "(onnx int8, coreml pal6, executorch int8; "
                                                                  "openvino bf16, int8 and auto; litert int8)")
    ap.add_argument("--compressed", action="store_true", help="only the compressed mode of each format")
    ap.add_argument("--random-weights", action="store_true", help="never use the fidelity kit's weights")
    ap.add_argument("--redo", action="store_true", help="re-run entries already in the results")
    ap.add_argument("--keep", action="store_true", help="keep the bundles (in --scratch)")
    ap.add_argument("--keep-precisions", nargs="+", default=[],
                    help="keep only the bundles of these precisions (e.g. fp32: bench_all.py measures them when "
                         "--scratch is its --bundle-dir)")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "mc2export-export-all")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--out", type=Path, default=RESULTS / "export_all")
    args = ap.parse_args()
    path = args.out.with_suffix(".json")
    results = json.loads(path.read_text()) if path.is_file() else {"benchmark": "export_all", "runs": {}}
    import platform

    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"
    args.scratch.mkdir(parents=True, exist_ok=True)
    # LiteRT: fp32 and int8 of a variant share one float conversion (the slow step), in the scratch folder
    os.environ.setdefault("MC2EXPORT_LITERT_CACHE", str(args.scratch / "litert-conversions"))
    for variant in [mc2export.resolve_variant(v) for v in args.variants]:
        ckpt_dir = Path(tempfile.mkdtemp(dir=args.scratch, prefix="ckpt-"))
        ckpt = None if args.random_weights else kit_checkpoint(variant, ckpt_dir)
        weights = ["--checkpoint", str(ckpt)] if ckpt else ["--random-weights"]
        try:
            for fmt in args.formats:
                precs = list(COMPRESSED[fmt]) if args.compressed else ["fp32", *COMPRESSED[fmt]]
                for prec in args.precisions or precs:
                    key = f"{variant}/{fmt}/{prec}"
                    if key in results["runs"] and results["runs"][key].get("ok") and not args.redo:
                        print(f"{key}: done before, skipped", flush=True)
                        continue
                    out = args.scratch / key.replace("/", "-")
                    load = os.getloadavg()
                    print(f"{key}: exporting ...", flush=True)
                    rec = run_export(fmt, variant, prec, weights, out, args.timeout)
                    rec["loadavg"] = [round(x, 2) for x in load]
                    rec["when"] = time.strftime("%Y-%m-%d %H:%M:%S")
                    results["runs"][key] = rec
                    print(f"{key}: {'ok' if rec['ok'] else 'FAILED'} in {rec.get('seconds')}s, "
                          f"peak RSS {rec.get('peak_rss_mb')} MB, sizes {rec.get('sizes_mb')}, "
                          f"{ {t: round(x['cosine_min'], 6) for t, x in rec.get('towers', {}).items()} }"
                          + (f" {rec.get('error')}" if not rec["ok"] else ""), flush=True)
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps(results, indent=1) + "\n")  # after every run: resumable
                    write_markdown(results, args.out.with_suffix(".md"))
                    if not (args.keep or prec in args.keep_precisions):
                        shutil.rmtree(out, ignore_errors=True)
        finally:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
    write_markdown(results, args.out.with_suffix(".md"))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
