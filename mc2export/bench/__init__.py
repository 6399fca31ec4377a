"""Benchmark harness: exported bundles on every runtime and device, against the paper's latency targets.

* :mod:`.stats`     -- the protocols (quick / modelbench / mlperf) and statistics (pure Python).
* :mod:`.runtimes`  -- onnxruntime, executorch, coreml (macOS), openvino, litert, torch, torch-unfolded on this machine.
* :mod:`.worker`    -- one tower measured in a fresh process (cold / warm load, peak RSS).
* :mod:`.harness`   -- ``bench_bundle`` -> one result; tables, JSON, CSV.
* :mod:`.android`   -- adb + ExecuTorch's executor_runner (or the sample app) on Android phones.
* :mod:`.apple`     -- the iOS sample app's benchmark mode through ``xcrun devicectl``.
* :mod:`.report`    -- ``bench-report``: merge results into markdown + a self-contained SVG plot.
* :mod:`.schema`    -- ``schema.json`` (the one results schema) and a small validator.

Nothing heavy is imported here: runtimes load only inside the functions that use them.
Docs: ``docs/bench.md``.
"""
from __future__ import annotations


def bench_bundle(*args, **kwargs):
    """See :func:`mc2export.bench.harness.bench_bundle`."""
    from .harness import bench_bundle as _b

    return _b(*args, **kwargs)


def get_mode(*args, **kwargs):
    """See :func:`mc2export.bench.stats.get_mode`."""
    from .stats import get_mode as _g

    return _g(*args, **kwargs)


__all__ = ["bench_bundle", "get_mode"]
