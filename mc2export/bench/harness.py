"""``mc2export bench``: measure bundles on this machine (or a device), as results in one JSON schema.

A *result* is one bundle x runtime x settings (threads / compute units, mode) on one device: both towers
measured separately (each in a fresh process by default) and summed, as the paper reports image + text
latency. A *document* (what ``--json`` writes, what the iOS/Android apps write) holds a list of results
plus the host that produced it. Schema: ``mc2export/bench/schema.json``, prose: ``docs/bench.md``.
"""
from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from ..errors import UserError
from ..outputs import write_atomic
from .stats import Mode, headline, is_standard

SCHEMA_ID = "mc2export-bench"
SCHEMA_VERSION = 1
TOWERS = ("image", "text")


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def parse_towers(towers, available: Sequence[str]) -> List[str]:
    if towers is None:
        return [t for t in TOWERS if t in available]
    if isinstance(towers, str):
        towers = [t.strip() for t in towers.split(",") if t.strip()]
    bad = [t for t in towers if t not in TOWERS]
    if bad or not towers:
        raise UserError(f"--towers must name image and/or text (comma-separated), got {','.join(towers) or 'nothing'}")
    missing = [t for t in towers if t not in available]
    if missing:
        raise UserError(f"the bundle holds no {'/'.join(missing)} model (it has {', '.join(available) or 'none'}): "
                        f"pass --towers {','.join(available)}")
    return [t for t in TOWERS if t in towers]


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_threads(threads: Optional[int]) -> int:
    """The thread count to measure with on this machine: more threads than CPUs measures contention (a
    1000-thread run took 524 s on 2 cores, p50 53 s, in issue 17), so it is refused."""
    cpus = default_threads()
    if threads is None:
        return cpus
    if threads < 1 or threads > cpus:
        raise UserError(f"--threads {threads} is not between 1 and the {cpus} CPU(s) this process may use: "
                        f"pass --threads {cpus} or fewer (or leave it out: all of them)")
    return int(threads)


def check_bundle(bundle, runtime: Optional[str], compute_units: Optional[str] = None) -> str:
    """The runtime a (loaded) bundle will be measured with; a one-line error when it cannot be."""
    from . import runtimes
    from .bundles import DEFAULT_RUNTIME, check_runtime

    runtime = runtime or DEFAULT_RUNTIME.get(bundle.format)
    if runtime is None:
        raise UserError(f"bundle format '{bundle.format}' has no default runtime: pass --runtime")
    runtimes.require(runtime, compute_units)
    check_runtime(bundle, runtime)
    if compute_units is not None and runtime != "coreml":
        raise UserError(f"--compute-units applies to --runtime coreml only (not {runtime}): use --threads")
    return runtime


def bench_bundle(path, runtime: Optional[str] = None, *, threads: Optional[int] = None,
                 compute_units: Optional[str] = None, mode: Mode, towers=None, isolate: bool = True,
                 checkpoint=None, verify: bool = True, log: Callable[[str], None] = lambda s: None) -> dict:
    """Measure a bundle on this machine; returns one result object (schema ``result``)."""
    from . import runtimes
    from .bundles import as_bundle
    from .device import host_device


    b = as_bundle(path, verify)
    runtime = check_bundle(b, runtime, compute_units)
    if runtime == "coreml":
        compute_units = compute_units or "all"
    threads = check_threads(threads)
    towers = parse_towers(towers, b.towers)
    from .worker import measure_tower, request, run_isolated

    dev = host_device()
    tower_results = {}
    for tower in towers:
        log(f"  {b.variant} {tower}: {runtime} ({threads} threads{', ' + compute_units if compute_units else ''}), "
            f"{mode.name} mode{' (isolated process)' if isolate else ''} ...")
        req = request(b.path, runtime, tower, threads, mode, compute_units, checkpoint)
        res = run_isolated(req) if isolate else measure_tower(req, scope="process")
        res["headline_ms"] = round(headline(res["stats"], mode), 4)
        tower_results[tower] = res
        st = res["stats"]
        log(f"    {res['iterations']} iterations in {res['duration_s']:.1f}s: p50 {st['p50']:.2f} ms, "
            f"p90 {st['p90']:.2f} ms, load cold {res['load_ms']['cold']:.0f} ms / warm {res['load_ms']['warm']:.0f} ms")
    dev["load_avg_end"] = _loadavg()
    return assemble(b.summary(), runtime=runtime, runtime_versions=runtimes.versions(runtime),
                    threads=None if runtime == "coreml" else threads, compute_units=compute_units, mode=mode,
                    device=dev, towers=tower_results, source="mc2export bench (host)")


def _loadavg():
    from .device import load_avg

    return load_avg()


def assemble(bundle: dict, *, runtime: str, runtime_versions: dict, threads: Optional[int],
             compute_units: Optional[str], mode: Mode, device: dict, towers: Dict[str, dict], source: str) -> dict:
    """Build a result object from measured towers (shared by the host, Android and app paths)."""
    from .. import get_card
    from .device import hardware_class, verdict

    if not device.get("class"):
        device["class"] = hardware_class(device)
    card = get_card(bundle["variant"])
    names = [t for t in TOWERS if t in towers]
    for t in names:
        if "headline_ms" not in towers[t]:
            towers[t]["headline_ms"] = round(headline(towers[t]["stats"], mode), 4)
    total = round(sum(towers[t]["headline_ms"] for t in names), 4) if names else None
    stat = mode.headline
    paper = card.get("paper", {})
    lat = paper.get("latency_ms") or {}
    target = {"image_ms": lat.get("image"), "text_ms": lat.get("text"),
              "total_ms": (lat["image"] + lat["text"]) if lat.get("image") is not None and lat.get("text") is not None
              else None,
              "hardware": paper.get("latency_hardware"), "source": paper.get("source"),
              "band_ms": [3.0, 15.0]}
    v = verdict(total, towers.get("image", {}).get("headline_ms"), towers.get("text", {}).get("headline_ms"), card,
                device, runtime, threads, compute_units, stat, names)
    peaks = [towers[t]["memory"].get("peak_rss_mb") for t in names if towers[t].get("memory")]
    return {
        "variant": card["id"], "name": card["name"],
        "bundle": bundle,
        "runtime": {"name": runtime, "version": runtime_versions.get(_main_dist(runtime)), "versions": runtime_versions,
                    "threads": threads, "compute_units": compute_units},
        "device": device,
        "mode": {**mode.to_dict(), "standard": is_standard(mode)},
        "towers": towers,
        "total": {"headline_ms": total, "stat": stat, "towers": names,
                  "peak_rss_mb": max(p for p in peaks if p is not None) if any(p is not None for p in peaks) else None,
                  "note": "image and text towers measured separately and summed, as the paper reports"},
        "target": target,
        "verdict": v,
        "source": source,
        "created": now_iso(),
    }


def _main_dist(runtime: str) -> str:
    return {"onnxruntime": "onnxruntime", "executorch": "executorch", "coreml": "coremltools", "openvino": "openvino",
            "litert": "ai-edge-litert", "torch": "torch", "torch-unfolded": "torch"}.get(runtime, runtime)


def document(results: List[dict], command: Optional[str] = None) -> dict:
    """The top-level JSON document: schema id/version, who wrote it, the host, the results."""
    from .. import __version__
    from .device import host_device

    return {"schema": SCHEMA_ID, "schema_version": SCHEMA_VERSION, "created": now_iso(),
            "tool": {"name": "mc2export", "version": __version__, "command": command,
                     "python": sys.version.split()[0]},
            "host": host_device(), "results": results}


# ---------------------------------------------------------------------------------------------- output

CSV_COLUMNS = ["variant", "bundle_format", "precision", "runtime", "runtime_version", "threads", "compute_units",
               "device_kind", "device_class", "device_model", "cpu", "mode", "tower", "iterations", "load_cold_ms",
               "load_warm_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "trimmed_mean_ms", "min_ms", "max_ms",
               "std_ms", "headline_stat", "headline_ms", "peak_rss_mb", "target_ms", "verdict", "ratio_to_target",
               "load_avg_1m", "bundle_checksum", "created"]


def csv_rows(results: List[dict]) -> List[dict]:
    """One row per (result, tower) plus an ``image+text`` row with the summed headline."""
    rows = []
    for r in results:
        dev = r["device"]
        la = dev.get("load_avg") or [None]
        base = {"variant": r["variant"], "bundle_format": r["bundle"].get("format"),
                "precision": r["bundle"].get("precision"), "runtime": r["runtime"]["name"],
                "runtime_version": r["runtime"].get("version"), "threads": r["runtime"].get("threads"),
                "compute_units": r["runtime"].get("compute_units"), "device_kind": dev.get("kind"),
                "device_class": dev.get("class"), "device_model": dev.get("model"), "cpu": dev.get("cpu"),
                "mode": r["mode"]["name"], "headline_stat": r["total"]["stat"], "load_avg_1m": la[0],
                "bundle_checksum": r["bundle"].get("checksum"), "created": r.get("created")}
        for t in TOWERS:
            tr = r["towers"].get(t)
            if not tr:
                continue
            st = tr["stats"]
            target = r["target"].get(f"{t}_ms")
            rows.append({**base, "tower": t, "iterations": tr["iterations"],
                         "load_cold_ms": (tr.get("load_ms") or {}).get("cold"),
                         "load_warm_ms": (tr.get("load_ms") or {}).get("warm"),
                         "p50_ms": st["p50"], "p90_ms": st["p90"], "p99_ms": st["p99"], "mean_ms": st["mean"],
                         "trimmed_mean_ms": st["trimmed_mean"], "min_ms": st["min"], "max_ms": st["max"],
                         "std_ms": st["std"], "headline_ms": tr["headline_ms"],
                         "peak_rss_mb": (tr.get("memory") or {}).get("peak_rss_mb"), "target_ms": target,
                         "verdict": "", "ratio_to_target": round(tr["headline_ms"] / target, 3) if target else None})
        v = r["verdict"]
        rows.append({**base, "tower": "+".join(r["total"]["towers"]),
                     "iterations": sum(r["towers"][t]["iterations"] for t in r["total"]["towers"]),
                     "headline_ms": r["total"]["headline_ms"], "peak_rss_mb": r["total"].get("peak_rss_mb"),
                     "target_ms": v.get("target_ms"), "verdict": v["status"], "ratio_to_target": v.get("ratio")})
    return [{c: ("" if row.get(c) is None else row.get(c)) for c in CSV_COLUMNS} for row in rows]


def write_csv(results: List[dict], path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(csv_rows(results))
    write_atomic(path, buf.getvalue())


def write_json(doc: dict, path) -> None:
    write_atomic(path, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")



def fmt_ms(x) -> str:
    if x is None:
        return "-"
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def table(results: List[dict]) -> str:
    """The console table: one row per result, then each verdict with its note."""
    head = ("variant", "format", "prec", "runtime", "threads/units", "mode", "image ms", "text ms", "total ms",
            "target ms", "peak MB", "load cold/warm ms", "verdict")
    rows = [head]
    notes = []
    for r in results:
        tw = r["towers"]
        loads = " + ".join(f"{_num((tw[t].get('load_ms') or {}).get('cold'))}/"
                           f"{_num((tw[t].get('load_ms') or {}).get('warm'))}" for t in TOWERS if t in tw)
        units = r["runtime"].get("compute_units") or str(r["runtime"].get("threads") or "-")
        v = r["verdict"]
        rows.append((r["variant"], r["bundle"].get("format", "?"), r["bundle"].get("precision", "?"),
                     r["runtime"]["name"], units, f"{r['mode']['name']} ({r['total']['stat']})",
                     fmt_ms(tw.get("image", {}).get("headline_ms")), fmt_ms(tw.get("text", {}).get("headline_ms")),
                     fmt_ms(r["total"]["headline_ms"]), fmt_ms(v.get("target_ms")),
                     f"{r['total']['peak_rss_mb']:.0f}" if r["total"].get("peak_rss_mb") else "-", loads,
                     v["status"].upper() + (f" ({v['ratio']:.1f}x)" if v.get("ratio") else "")))
        notes.append(f"{r['variant']} / {r['runtime']['name']}: {v['label']}. {v['note']}.")
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if results:
        dev = results[0]["device"]
        lines.append(f"device: {dev.get('class')} -- {dev.get('model') or dev.get('cpu')}, "
                     f"{dev.get('cores_logical')} logical cores, {dev.get('memory_gb')} GB, {dev.get('os')}; "
                     f"load average {dev.get('load_avg')} (start) {dev.get('load_avg_end')} (end)")
    return "\n".join(lines + notes)


def _num(x) -> str:
    return "-" if x is None else f"{x:.0f}"


__all__ = ["check_threads", "bench_bundle", "assemble", "document", "table", "write_json", "write_csv", "csv_rows",
           "CSV_COLUMNS", "SCHEMA_ID", "SCHEMA_VERSION", "default_threads", "parse_towers"]
