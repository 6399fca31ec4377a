"""LiteRT bundles on Android devices through ``adb`` and LiteRT's own ``benchmark_model`` binary.

Flow of ``mc2export bench BUNDLE --device android --runner PATH/benchmark_model`` for a ``litert`` bundle (the
adb plumbing is :mod:`.android`'s; every command built here is tested with recorded outputs)::

    adb devices -l; getprop; /proc/cpuinfo, meminfo         (as for ExecuTorch bundles)
    adb push benchmark_model .../benchmark_model; chmod 755 (when --runner is given)
    adb push <bundle>/image.tflite .../image.tflite          (skipped when sha256sum on the device matches)
    adb shell 'cd DIR && ./benchmark_model --graph=image.tflite --num_threads=T --use_xnnpack=true
               --warmup_runs=W --warmup_min_secs=0 --num_runs=N --min_secs=0 --max_secs=3600
               --report_peak_memory_footprint=true'      -> parse_benchmark_output
    (same for text.tflite); results assembled into the common schema (harness.assemble)

``benchmark_model`` prints aggregates only (``count= first= curr= min= max= avg= std=`` in microseconds, the
init time, the peak memory), not each call: every invocation gives one sample, its mean (``samples_aggregate``),
and an invocation reloads the model, so the first invocation's ``Init`` is the cold load, later ones the warm
load. quick / mlperf: one probe invocation, then ``INVOCATIONS`` invocations sharing the planned call count;
modelbench: one invocation per round. The verification vectors are not run here: ``benchmark_model`` feeds
random inputs and writes no outputs (``verification.status`` says so) -- run ``mc2export verify`` on an ARM
board, or the sample app's benchmark mode (``--app``), which checks the vectors first.
"""
from __future__ import annotations

import re
import shlex
from typing import Callable, List, Optional

from ..errors import UserError
from .android import Adb, RunFn, _subprocess_run, open_device, push_if_changed

RUNNER_NAME = "benchmark_model"
INVOCATIONS = 5  # quick / mlperf: samples (invocation means) after the probe
RUNNER_HINT = ("pass --runner PATH to LiteRT's Android arm64 benchmark_model (the prebuilt "
               "'android_aarch64_benchmark_model' of LiteRT's releases, or `bazel build -c opt --config=android_arm64 "
               "//tflite/tools/benchmark:benchmark_model`)")

_NUM = r"([0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"
_RE_COUNT = re.compile(r"count=(\d+) first=" + _NUM + r" curr=" + _NUM + r" min=" + _NUM + r" max=" + _NUM
                       + r" avg=" + _NUM + r" std=" + _NUM)
_RE_TIMINGS = re.compile(r"Inference timings in us: Init: " + _NUM + r", First inference: " + _NUM
                         + r", Warmup \(avg\): " + _NUM + r", Inference \(avg\): " + _NUM)
_RE_PEAK = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring: " + _NUM)
_RE_DELTA = re.compile(r"Memory footprint delta from the start of the tool \(MB\): init=" + _NUM + r" overall="
                       + _NUM)
_RE_THREADS = re.compile(r"#?\s*[Nn]um(?:ber of)? threads: \[?(\d+)\]?")
_RE_XNNPACK = re.compile(r"Created TensorFlow Lite XNNPACK delegate|XNNPACK delegate created|"
                         r"Explicitly applied XNNPACK delegate")
_RE_FAIL = re.compile(r"^(?:ERROR: |E\S* )?((?:Failed to|Could not|Error|Didn't find|Unknown flag|"
                      r"Model file doesn't exist)[^\n]*)", re.M)


def parse_benchmark_output(text: str) -> dict:
    """Everything the harness needs from one ``benchmark_model`` run (stdout + stderr).

    Returns ``{"runs": int | None, "avg_ms", "min_ms", "max_ms", "std_ms", "first_ms", "init_ms", "warmup_avg_ms"
    (floats or None), "peak_mb": float | None, "threads": int | None, "xnnpack": bool, "error": str | None}``;
    the timed runs are the *last* ``count=`` line (the one before is the warm-up's)."""
    counts = list(_RE_COUNT.finditer(text))
    timed = counts[-1] if counts else None
    t = _RE_TIMINGS.search(text)
    peak = _RE_PEAK.search(text) or None
    delta = _RE_DELTA.search(text)
    threads = _RE_THREADS.search(text)
    fail = _RE_FAIL.search(text)

    def ms(x):
        return float(x) / 1000.0

    return {"runs": int(timed.group(1)) if timed else None,
            "first_ms": ms(timed.group(2)) if timed else None,
            "min_ms": ms(timed.group(4)) if timed else None, "max_ms": ms(timed.group(5)) if timed else None,
            "avg_ms": ms(timed.group(6)) if timed else (ms(t.group(4)) if t else None),
            "std_ms": ms(timed.group(7)) if timed else None,
            "init_ms": ms(t.group(1)) if t else None, "warmup_avg_ms": ms(t.group(3)) if t else None,
            "first_inference_ms": ms(t.group(2)) if t else None,
            "peak_mb": float(peak.group(1)) if peak else (float(delta.group(2)) if delta else None),
            "threads": int(threads.group(1)) if threads else None, "xnnpack": bool(_RE_XNNPACK.search(text)),
            "error": fail.group(1).strip() if fail and not timed else None}


def benchmark_command(remote_dir: str, model: str, runs: int, warmup: int, threads: Optional[int] = None,
                      runner: str = RUNNER_NAME, gpu: bool = False) -> str:
    """The shell command (one string for ``adb shell``) running ``benchmark_model`` on ``model``: exactly ``runs``
    timed calls after ``warmup`` (``min_secs`` 0: no extra calls to fill a minimum duration)."""
    args = [f"./{runner}", f"--graph={model}", f"--num_runs={int(runs)}", "--min_secs=0", "--max_secs=3600",
            f"--warmup_runs={int(warmup)}", "--warmup_min_secs=0", "--report_peak_memory_footprint=true",
            "--use_gpu=true" if gpu else "--use_xnnpack=true"]
    if threads:
        args.append(f"--num_threads={int(threads)}")
    return f"cd {shlex.quote(remote_dir)} && " + " ".join(shlex.quote(a) for a in args)


def _invoke(a: Adb, remote_dir: str, model: str, runs: int, warmup: int, threads: Optional[int], runner: str) -> dict:
    text = a.shell(benchmark_command(remote_dir, model, runs, warmup, threads, runner), timeout=3600, check=False)
    res = parse_benchmark_output(text)
    if res["avg_ms"] is None:
        raise UserError(f"{runner} failed on {model}: {res['error'] or 'no timings in its output'} (run `adb shell "
                        f"{remote_dir}/{runner} --graph={remote_dir}/{model}` to see its log; is it an arm64 build?)")
    return res


def measure_tower(a: Adb, remote_dir: str, model: str, mode, threads: Optional[int], runner: str = RUNNER_NAME,
                  log=lambda s: None) -> dict:
    """One tower on the device under ``mode``; returns the tower object of the schema."""
    from .stats import plan_iterations, round_stats, summarize

    invocations: List[dict] = []
    if mode.rounds > 1:
        plan = [mode.min_iterations] * mode.rounds
    else:
        probe = _invoke(a, remote_dir, model, min(5, mode.min_iterations), mode.warmup, threads, runner)
        invocations.append(probe)  # cold load + a rough mean
        n = plan_iterations(probe["avg_ms"], mode)
        plan = [max(1, -(-n // INVOCATIONS))] * INVOCATIONS
    measured = []
    for i, runs in enumerate(plan):
        res = _invoke(a, remote_dir, model, runs, mode.warmup, threads, runner)
        measured.append(res)
        log(f"    invocation {i + 1}/{len(plan)}: {res['runs']} calls, mean {res['avg_ms']:.2f} ms")
    invocations += measured
    samples = [r["avg_ms"] for r in measured]
    stats = summarize(samples, [1] * len(samples) if mode.rounds > 1 else None, mode.trim_low, mode.trim_high)
    loads = [r["init_ms"] for r in invocations if r["init_ms"] is not None]
    warm_loads = sorted(loads[1:])
    peaks = [r["peak_mb"] for r in invocations if r["peak_mb"] is not None]
    return {
        "tower": model.rsplit(".", 1)[0], "file": model,
        "load_ms": {"cold": loads[0] if loads else None,
                    "warm": warm_loads[len(warm_loads) // 2] if warm_loads else None,
                    "first_inference": invocations[0]["first_inference_ms"]},
        "warmup_ms": [], "iterations": max(1, sum(r["runs"] or 1 for r in measured)), "rounds": len(measured),
        "duration_s": round(sum((r["avg_ms"] or 0) * (r["runs"] or 1) for r in invocations) / 1000.0, 3),
        "stats": round_stats(stats), "samples_ms": [round(x, 4) for x in samples], "samples_aggregate": True,
        "memory": {"scope": "device-process", "peak_rss_mb": max(peaks) if peaks else None,
                   "method": "benchmark_model --report_peak_memory_footprint" if peaks else "unavailable"},
        "runtime_info": {"runner": runner, "invocations": len(invocations), "threads": invocations[-1]["threads"],
                         "xnnpack": invocations[-1]["xnnpack"],
                         "min_ms": min(r["min_ms"] for r in measured if r["min_ms"] is not None)
                         if any(r["min_ms"] is not None for r in measured) else None},
    }


def bench_android_litert(bundle_path, *, mode, threads: Optional[int] = None, serial: Optional[str] = None,
                         runner: Optional[str] = None, adb: str = "adb", towers=None, verify: bool = True,
                         run: RunFn = _subprocess_run, log: Callable[[str], None] = lambda s: None) -> dict:
    """Measure a LiteRT bundle's ``.tflite`` files on a phone with ``benchmark_model``; one result."""
    from .harness import assemble

    b, towers, a, dev, remote_dir, runner_name = open_device(
        bundle_path, "litert", towers, adb=adb, serial=serial, run=run, verify=verify, log=log, runner=runner,
        default_name=RUNNER_NAME, not_found=RUNNER_HINT, missing=f"no benchmark_model on the device: {RUNNER_HINT}")
    files = b.config.get("files") or {}
    tower_results = {}
    for t in towers:
        name = b.model_entry(t)["file"]
        pushed = push_if_changed(a, b.path / name, f"{remote_dir}/{name}", (files.get(name) or {}).get("sha256"))
        log(f"  {t}: {'pushed' if pushed else 'already on the device:'} {name}; running {runner_name} "
            f"({mode.name} mode)")
        tr = measure_tower(a, remote_dir, name, mode, threads, runner_name, log=log)
        tr["tower"] = t
        tower_results[t] = tr
    version = (b.config.get("versions") or {}).get("ai-edge-litert")
    result = assemble(b.summary(), runtime="litert", runtime_versions={"ai-edge-litert": version} if version else {},
                      threads=threads, compute_units=None, mode=mode, device=dev, towers=tower_results,
                      source=f"mc2export bench --device android ({runner_name} over adb)")
    result["runtime"]["runner"] = runner_name
    result["verification"] = {"status": "not-run",
                              "reason": "benchmark_model feeds random inputs and writes no outputs: check the vectors "
                                        "with the sample app (--app) or `mc2export verify` on an ARM board"}
    return result


__all__ = ["parse_benchmark_output", "benchmark_command", "measure_tower", "bench_android_litert", "RUNNER_NAME"]
