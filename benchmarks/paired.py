"""The paired, interleaved timing protocol of the latency benchmarks (``export_speed.py``, ``desktop.py``,
``openvino_forms.py``, ``ort_int8.py``): every model is timed in the same rounds, so that load from other jobs
hits all of them alike and per-round ratios cancel most of it.

Each round visits every runner once, in a shuffled order; a visit is a pause (``gap``), one untimed call, then
``burst`` timed calls whose median is the round's time. Why the pause: after a call, ONNX Runtime's, XNNPACK's
and OpenVINO's (TBB) worker threads spin for a while waiting for more work; calling another model straight away
makes its threads compete with those spinning ones on 2 cores (the S0 image models timed back to back ran 1.7x
slower and the ratios swung from run to run). The untimed call wakes the visited model's pool, so a burst
measures the steady state an app running one model on a stream of inputs sees.
"""
from __future__ import annotations

import os
import random
import statistics
import time
from typing import Callable, Dict, Hashable, List


def interleaved(runners: Dict[Hashable, Callable[[], object]], rounds: int, burst: int = 3, gap: float = 0.05,
                warmup: int = 5, seed: int = 0, log: Callable[[str], None] = lambda s: None) -> dict:
    """``{"times": {key: [seconds per round]}, "loadavg_before", "loadavg_after"}`` for ``runners``."""
    for fn in runners.values():
        for _ in range(warmup):
            fn()
    times: Dict[Hashable, List[float]] = {k: [] for k in runners}
    order = list(runners)
    rng = random.Random(seed)
    before = os.getloadavg()
    for r in range(rounds):
        rng.shuffle(order)
        for k in order:
            time.sleep(gap)  # let the previous model's spinning worker threads go to sleep
            runners[k]()
            samples = []
            for _ in range(burst):
                t = time.perf_counter()
                runners[k]()
                samples.append(time.perf_counter() - t)
            times[k].append(statistics.median(samples))
        if (r + 1) % 10 == 0:
            log(f"  round {r + 1}/{rounds}")
    return {"times": times, "loadavg_before": [round(x, 2) for x in before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()]}


def add_arguments(ap, rounds: int = 30, warmup: int = 3) -> None:
    """The protocol's command-line options (``--rounds --warmup --burst --gap --threads``)."""
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--warmup", type=int, default=warmup)
    ap.add_argument("--burst", type=int, default=3, help="timed calls per visit (their median counts)")
    ap.add_argument("--gap", type=float, default=0.05, help="seconds of pause before each visit")
    ap.add_argument("--threads", type=int, default=2)


def save(out, res: dict, lines: List[str]) -> None:
    """``<out>.json`` (the figures) and ``<out>.md`` (the table), printed too."""
    import json
    from pathlib import Path

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines + [""]))
    print("\n".join(lines))


def median_ms(times: List[float]) -> float:
    return statistics.median(times) * 1e3


def paired_ratio(times: dict, a: Hashable, b: Hashable) -> float:
    """Median over rounds of ``time(a) / time(b)`` (> 1: ``b`` is faster)."""
    return statistics.median(x / y for x, y in zip(times[a], times[b]))


def cpu_record() -> dict:
    """The CPU and its matrix/vector features: int8 and bf16 pay differently with VNNI, AVX-512 BF16, AMX."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from mc2export.bench.device import host_device

    dev = host_device()
    return {"cpu": dev.get("cpu") or "?", "cpu_isa": " ".join(dev.get("cpu_features") or []) or "?",
            "cores_usable": dev.get("cores_usable")}
