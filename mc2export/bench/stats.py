"""Latency statistics and the three measurement protocols (pure Python, no numpy).

* ``quick``      -- a few warm-up calls, then iterations until *both* >= 20 calls and >= 2 s; headline p50.
* ``modelbench`` -- Apple's ModelBench protocol: 20 rounds x 50 timed calls, 1 warm-up call at the start of
  every round, each round's 10 highest and 10 lowest samples dropped; headline = the mean of the 20
  per-round trimmed means.
* ``mlperf``     -- MLPerf Mobile's single-stream rule: >= 1024 queries and >= 60 s; headline p90.

Percentiles interpolate linearly between order statistics (numpy's default ``linear`` method).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Dict, List, Optional, Sequence

from ..errors import UserError


@dataclass(frozen=True)
class Mode:
    name: str
    warmup: int                 # warm-up calls before timing (per round for modelbench)
    min_iterations: int         # timed calls: at least this many ...
    min_seconds: float          # ... and at least this long (both must hold)
    rounds: int = 1             # modelbench: rounds of exactly ``min_iterations`` calls each
    trim_low: int = 0           # modelbench: samples dropped per round (lowest)
    trim_high: int = 0          # modelbench: samples dropped per round (highest)
    headline: str = "p50"       # the statistic the verdict and the tables use
    max_seconds: Optional[float] = None  # stop early (after min_iterations) once this is spent; None = no cap

    def to_dict(self) -> dict:
        return asdict(self)


MODES: Dict[str, Mode] = {
    "quick": Mode("quick", warmup=3, min_iterations=20, min_seconds=2.0, headline="p50"),
    "modelbench": Mode("modelbench", warmup=1, min_iterations=50, min_seconds=0.0, rounds=20, trim_low=10,
                       trim_high=10, headline="round_trimmed_mean"),
    "mlperf": Mode("mlperf", warmup=10, min_iterations=1024, min_seconds=60.0, headline="p90"),
}
HEADLINES = ("p50", "p90", "p99", "mean", "trimmed_mean", "round_trimmed_mean", "min")


def get_mode(name: str, *, iterations: Optional[int] = None, seconds: Optional[float] = None,
             warmup: Optional[int] = None, rounds: Optional[int] = None) -> Mode:
    """A protocol by name, optionally with overridden counts (recorded as such in the results)."""
    if name not in MODES:
        raise UserError(f"unknown --mode '{name}': choose one of {', '.join(MODES)}")
    m = MODES[name]
    changes = {}
    if iterations is not None:
        if iterations < 1:
            raise UserError(f"--iterations must be >= 1, got {iterations}")
        changes["min_iterations"] = int(iterations)
    if seconds is not None:
        if not (math.isfinite(seconds) and 0 <= seconds <= 86400):  # NaN passes "< 0": it would never stop
            raise UserError(f"--seconds must be a number of seconds in 0..86400, got {seconds}")
        changes["min_seconds"] = float(seconds)
    if warmup is not None:
        if warmup < 0:
            raise UserError(f"--warmup must be >= 0, got {warmup}")
        changes["warmup"] = int(warmup)
    if rounds is not None:
        if rounds < 1:
            raise UserError(f"--rounds must be >= 1, got {rounds}")
        changes["rounds"] = int(rounds)
    m = replace(m, **changes)
    if m.rounds > 1 and m.trim_low + m.trim_high >= m.min_iterations:
        m = replace(m, trim_low=0, trim_high=0)
    return m


def is_standard(mode: Mode) -> bool:
    """True when the protocol runs with its published counts (not overridden)."""
    return MODES.get(mode.name) == mode


def percentile(sorted_xs: Sequence[float], q: float) -> float:
    """``q`` in [0, 100] of already-sorted data, linear interpolation (numpy's default)."""
    n = len(sorted_xs)
    if n == 0:
        return float("nan")
    pos = (n - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return float(sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * frac)


def trimmed_mean(xs: Sequence[float], proportion: float = 0.1, low: Optional[int] = None,
                 high: Optional[int] = None) -> float:
    """Mean after dropping ``proportion`` of the samples at each end (or exactly ``low``/``high`` samples)."""
    s = sorted(xs)
    n = len(s)
    if n == 0:
        return float("nan")
    lo = int(proportion * n) if low is None else low
    hi = int(proportion * n) if high is None else high
    kept = s[lo:n - hi] if n - hi > lo else s
    return sum(kept) / len(kept)


def summarize(samples_ms: Sequence[float], round_sizes: Optional[Sequence[int]] = None, trim_low: int = 0,
              trim_high: int = 0) -> dict:
    """p50/p90/p99, mean, 10%-trimmed mean, min/max, std (sample, n-1) of latencies in ms; with
    ``round_sizes`` also the per-round trimmed means (ModelBench) and their mean."""
    xs = [float(x) for x in samples_ms]
    if not xs:
        raise ValueError("no samples")
    s = sorted(xs)
    n = len(s)
    mean = sum(s) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in s) / (n - 1)) if n > 1 else 0.0
    out = {"count": n, "p50": percentile(s, 50), "p90": percentile(s, 90), "p99": percentile(s, 99), "mean": mean,
           "trimmed_mean": trimmed_mean(s, 0.1), "min": s[0], "max": s[-1], "std": std,
           "cv": std / mean if mean > 0 else 0.0}
    if round_sizes:
        means, i = [], 0
        for k in round_sizes:
            chunk = xs[i:i + k]
            i += k
            means.append(trimmed_mean(chunk, low=trim_low, high=trim_high))
        out["round_trimmed_means"] = means
        out["round_trimmed_mean"] = sum(means) / len(means)
    return out


def headline(stats: dict, mode: Mode) -> float:
    key = mode.headline
    if key == "round_trimmed_mean" and key not in stats:
        key = "trimmed_mean"
    return float(stats[key])


def round_stats(stats: dict, ndigits: int = 4) -> dict:
    out = {}
    for k, v in stats.items():
        if isinstance(v, float):
            out[k] = round(v, ndigits)
        elif isinstance(v, list):
            out[k] = [round(x, ndigits) if isinstance(x, float) else x for x in v]
        else:
            out[k] = v
    return out


def plan_iterations(mean_ms: float, mode: Mode) -> int:
    """Timed calls one invocation needs to satisfy both minimums (for runners that take a fixed count)."""
    if mean_ms <= 0:
        return mode.min_iterations
    return max(mode.min_iterations, int(math.ceil(mode.min_seconds * 1000.0 / mean_ms)))


def run_protocol(call, mode: Mode, clock=None, on_round=None) -> dict:
    """Time ``call()`` under ``mode``; returns ``{"warmup_ms", "samples_ms", "round_sizes", "duration_s"}``.

    Each sample is one call, measured with ``time.perf_counter_ns`` around the call only (inputs are
    prepared by the caller beforehand)."""
    import time

    now = clock or time.perf_counter_ns
    warm: List[float] = []
    samples: List[float] = []
    sizes: List[int] = []
    t_start = now()
    for r in range(mode.rounds):
        for _ in range(mode.warmup):
            t0 = now()
            call()
            warm.append((now() - t0) / 1e6)
        t_round = now()
        k = 0
        while True:
            if mode.rounds > 1:
                if k >= mode.min_iterations:
                    break
            else:
                elapsed = (now() - t_round) / 1e9
                if k >= mode.min_iterations and elapsed >= mode.min_seconds:
                    break
                if mode.max_seconds is not None and k >= mode.min_iterations and elapsed >= mode.max_seconds:
                    break
            t0 = now()
            call()
            samples.append((now() - t0) / 1e6)
            k += 1
        sizes.append(k)
        if on_round is not None:
            on_round(r, k)
    return {"warmup_ms": warm, "samples_ms": samples, "round_sizes": sizes if mode.rounds > 1 else None,
            "duration_s": (now() - t_start) / 1e9}


__all__ = ["Mode", "MODES", "get_mode", "percentile", "trimmed_mean", "summarize", "headline", "run_protocol",
           "plan_iterations", "is_standard", "round_stats"]
