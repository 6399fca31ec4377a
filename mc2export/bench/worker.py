"""Measure one tower of one bundle in one runtime -- by default in a fresh process, so that the cold load is
really the first load in a process and the peak-memory high-water mark belongs to this tower alone.

    python -m mc2export.bench.worker REQUEST.json RESULT.json

Protocol per tower: baseline RSS -> **cold load** (first load of the model in this process, runtime
initialisation included; the OS page cache may already hold the file) -> **warm load** (the same model
loaded again in the same process; this second instance is the one timed) -> warm-up calls -> timed calls
under the mode (:mod:`.stats`) -> peak RSS (``getrusage`` high-water mark).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

from ..errors import UserError, unreadable_model


def rss_mb() -> Optional[float]:
    """Current resident set size in MiB (Linux ``/proc/self/statm``; elsewhere None)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def peak_rss_mb() -> Optional[float]:
    """The process's RSS high-water mark in MiB (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return v / 2 ** 20 if sys.platform == "darwin" else v / 1024


def measure_tower(req: dict, scope: str = "process") -> dict:
    """Run the protocol for ``req`` (see :func:`request`); returns the tower's result object."""
    from . import runtimes
    from .bundles import load_bundle
    from .stats import Mode, round_stats, summarize

    mode = Mode(**req["mode"])
    bundle = load_bundle(req["bundle"], verify=False)  # the parent verified it
    runtime, tower, threads = req["runtime"], req["tower"], int(req["threads"])
    base_peak = peak_rss_mb()
    base_rss = rss_mb()

    t0 = time.perf_counter()
    try:
        first = runtimes.load(runtime, bundle, tower, threads, req.get("compute_units"), req.get("checkpoint"))
    except Exception as e:  # a damaged file (--no-verify skipped the re-hash): each runtime has its own types
        if isinstance(e, UserError) or runtime.startswith("torch"):  # torch rebuilds from weights, not the file
            raise
        raise unreadable_model(bundle.model_file(tower), runtime, e) from None
    cold_ms = (time.perf_counter() - t0) * 1e3
    first_call_ms = _timed(first.call)  # the first inference after a load (lazy init, allocations)
    del first
    t0 = time.perf_counter()
    loaded = runtimes.load(runtime, bundle, tower, threads, req.get("compute_units"), req.get("checkpoint"))
    warm_ms = (time.perf_counter() - t0) * 1e3

    from .stats import run_protocol

    load_before = _loadavg()
    raw = run_protocol(loaded.call, mode)
    load_after = _loadavg()
    stats = summarize(raw["samples_ms"], raw["round_sizes"], mode.trim_low, mode.trim_high)
    peak = peak_rss_mb()
    mem = {"scope": scope, "rss_baseline_mb": _r(base_rss), "peak_rss_before_load_mb": _r(base_peak),
           "peak_rss_mb": _r(peak),
           "peak_rss_delta_mb": _r(peak - base_peak) if (peak is not None and base_peak is not None) else None,
           "method": "getrusage(RUSAGE_SELF).ru_maxrss high-water mark"}
    return {
        "tower": tower, "file": bundle.model_entry(tower).get("file"),
        "load_ms": {"cold": round(cold_ms, 3), "warm": round(warm_ms, 3), "first_inference": round(first_call_ms, 3)},
        "warmup_ms": [round(x, 4) for x in raw["warmup_ms"]],
        "iterations": len(raw["samples_ms"]), "rounds": len(raw["round_sizes"] or [1]),
        "duration_s": round(raw["duration_s"], 3),
        "stats": round_stats(stats),
        "samples_ms": [round(x, 4) for x in raw["samples_ms"]],
        "memory": mem, "runtime_info": loaded.info, "load_avg_before": load_before, "load_avg_after": load_after,
    }


def _timed(call) -> float:
    t0 = time.perf_counter()
    call()
    return (time.perf_counter() - t0) * 1e3


def _r(x, n: int = 1):
    return round(x, n) if x is not None else None


def _loadavg():
    from .device import load_avg

    return load_avg()


def request(bundle_path, runtime: str, tower: str, threads: int, mode, compute_units=None, checkpoint=None) -> dict:
    return {"bundle": str(bundle_path), "runtime": runtime, "tower": tower, "threads": int(threads),
            "mode": mode.to_dict(), "compute_units": compute_units,
            "checkpoint": str(checkpoint) if checkpoint else None}


def run_isolated(req: dict, timeout: Optional[float] = None) -> dict:
    """:func:`measure_tower` in a fresh Python process; worker failures come back as exceptions."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mc2export-bench-") as d:
        rq, rs = Path(d) / "request.json", Path(d) / "result.json"
        rq.write_text(json.dumps(req), encoding="utf-8")
        env = dict(os.environ)
        env.setdefault("PYTHONWARNINGS", "ignore")
        proc = subprocess.run([sys.executable, "-m", "mc2export.bench.worker", str(rq), str(rs)],
                              capture_output=True, text=True, timeout=timeout, env=env)
        if rs.is_file():
            out = json.loads(rs.read_text(encoding="utf-8"))
            if "error" in out:
                if out.get("user_error"):
                    raise UserError(out["error"])
                raise RuntimeError(f"benchmark worker failed ({req['runtime']}, {req['tower']}): {out['error']}")
            return out
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-15:])
        raise RuntimeError(f"benchmark worker for {req['runtime']} / {req['tower']} exited with code "
                           f"{proc.returncode} and no result:\n{tail}")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m mc2export.bench.worker REQUEST.json RESULT.json", file=sys.stderr)
        return 2
    req = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    out = Path(argv[1])
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    try:
        res = measure_tower(req, scope="subprocess")
    except UserError as e:
        res = {"error": str(e), "user_error": True}
    except Exception as e:  # reported by the parent, with the type
        res = {"error": f"{type(e).__name__}: {e}", "user_error": False}
    out.write_text(json.dumps(res), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
