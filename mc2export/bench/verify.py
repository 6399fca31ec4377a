"""``mc2export verify BUNDLE``: run a bundle's models on its verification vectors where the bundle runs.

The export validated the models on the exporting machine (``validation.json``); ``verify/`` (written by
:mod:`mc2export.export.vectors`, format in ``docs/bundle.md``) carries a few of the probe inputs and the fp32
reference embeddings, so any machine can check the *same files* in *its* runtime: an ARM board's ONNX
Runtime or ExecuTorch (XNNPACK with native fp16 arithmetic), a Mac's Core ML, another ONNX Runtime build.

A runtime here is "load a tower of a bundle and run it on an input": :func:`.runtimes.load` (the loaders
``mc2export bench`` times) and its ``Loaded.run``. Every runtime that runs a bundle's own files
(:data:`.bundles.RUNTIME_FORMATS`) can verify; the torch baselines rebuild the model and cannot.

Exit codes (:data:`EXIT_CODES`): 0 every tower holds its tolerance; 3 a tower does not (or its model fails to
load / run in a runtime that is installed here) -- stderr names the tower and the figures; 4 the bundle cannot
run here (Core ML or ExecuTorch's Core ML delegate off Apple platforms, the runtime not installed): nothing
was checked and nothing is reported as passed; 2 bad input (not a bundle, a file that does not match its
checksum in ``config.json``, no ``verify/`` vectors, a runtime that cannot run the bundle's format).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional

from ..errors import UserError

PASSED, FAILED, CANNOT_RUN = "passed", "failed", "cannot-run"
EXIT_CODES = {PASSED: 0, FAILED: 3, CANNOT_RUN: 4}


class OutputsDisagree(Exception):
    """A bundle's outputs on a device disagree with its vectors (``mc2export bench --device android``: exit 3);
    ``lines``: one per failing tower, with its figures."""

    def __init__(self, lines):
        super().__init__("; ".join(lines))
        self.lines = list(lines)


class _CannotRun(Exception):
    """The runtime is here but cannot run this check (e.g. a loader without ``run``)."""


def verify_runtimes() -> tuple:
    """Runtimes that run a bundle's own model files (not the PyTorch baselines)."""
    from .bundles import RUNTIME_FORMATS

    return tuple(rt for rt, formats in RUNTIME_FORMATS.items() if formats)


def _pick_runtime(bundle, runtime: Optional[str]) -> str:
    from .bundles import DEFAULT_RUNTIME, check_runtime

    choices = verify_runtimes()
    runtime = runtime or DEFAULT_RUNTIME.get(bundle.format)
    if runtime is None:
        raise UserError(f"bundle format '{bundle.format}' has no runtime to verify it with: pass --runtime "
                        f"({', '.join(choices)})")
    if runtime not in choices:
        raise UserError(f"--runtime {runtime} cannot verify a bundle (it does not run the bundle's files): choose "
                        f"one of {', '.join(choices)}")
    check_runtime(bundle, runtime)
    return runtime


def _cannot_run_reason(bundle, runtime: str) -> Optional[str]:
    """Why ``runtime`` cannot run ``bundle`` on this machine (None: it can), without loading anything heavy."""
    from .runtimes import require

    try:
        require(runtime)
    except UserError as e:
        return str(e)
    if sys.platform != "darwin" and any(bundle.model_entry(t).get("delegate") == "CoreML" for t in bundle.towers):
        return ("the .pte files hold ExecuTorch's Core ML delegate, which runs on iOS/macOS only: verify this "
                "bundle on a Mac (`mc2export verify BUNDLE`) or in the iOS sample app")
    return None


def tolerance_text(tol: dict) -> str:
    text = f"cos >= {tol['cosine_min']}"
    if "max_abs_over_std" in tol:
        text += f", max-abs <= {tol['max_abs_over_std']:.0e} x std"
    return text


def check_outputs(outputs, expected, tol: dict) -> dict:
    """Figures (``validate.compare``, plus the per-row cosines) and the verdict of one tower's outputs."""
    import numpy as np

    from ..export import validate as V

    ours, ref = np.asarray(outputs, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if ours.shape != ref.shape:
        return {"rows": int(len(ref)), "violations": [f"output shape {list(ours.shape)} != expected "
                                                      f"{list(ref.shape)}"], "verdict": FAILED}
    figures = V.compare(ours, ref)
    den = np.maximum(np.linalg.norm(ours, axis=-1) * np.linalg.norm(ref, axis=-1), 1e-30)
    figures["cosine_per_row"] = [float(c) for c in (ours * ref).sum(-1) / den]
    bad = V.check(figures, tol)
    return {**figures, "violations": bad, "verdict": FAILED if bad else PASSED}


def verify_bundle(path, runtime: Optional[str] = None, *, threads: Optional[int] = None,
                  log: Callable[[str], None] = lambda s: None) -> dict:
    """Run every tower of the bundle at ``path`` on its vectors; returns the report (``status``: passed /
    failed / cannot-run, ``exit_code``, per-tower figures). Bad input raises ``UserError``."""
    from ..export import vectors
    from ..export.bundle import verify_bundle as check_files
    from .bundles import load_bundle
    from .device import host_device
    from .harness import default_threads, now_iso
    from .runtimes import runtime_version
    from ..export.validate import tolerance_for

    b = load_bundle(path, verify=False)
    try:  # re-hash every file: the vectors and the models must be the exported ones
        check_files(b.path)
    except UserError as e:
        raise UserError(f"{e}: the bundle was changed after its export; re-export it") from None
    b.verified = True
    rt = _pick_runtime(b, runtime)
    manifest = vectors.read(b.path, b.config)  # every tower with a model has vectors (else: refused)
    tol = tolerance_for(manifest["precision"])  # from the precision's tier in our code, never from the file
    threads = int(threads or default_threads())
    towers = list(b.towers)
    report = {"tool": "mc2export verify", "created": now_iso(), "bundle": b.summary(),
              "runtime": {"name": rt, "version": runtime_version(rt), "threads": threads},
              "device": dict(host_device(), cpu_features_detected=_detected_cpu_features()),
              "precision": manifest["precision"], "tier": vectors.tier(manifest["precision"]), "tolerance": tol,
              "towers": {}}
    reason = _cannot_run_reason(b, rt)
    if reason:
        return _finish(report, CANNOT_RUN, reason=reason)
    try:
        for tower in towers:
            report["towers"][tower] = _verify_tower(b, rt, tower, manifest["towers"][tower],
                                                    vectors.tolerance(manifest, tower), threads, log)
    except _CannotRun as e:
        report["towers"] = {}
        return _finish(report, CANNOT_RUN, reason=str(e))
    status = FAILED if any(t["verdict"] != PASSED for t in report["towers"].values()) else PASSED
    return _finish(report, status)


def _verify_tower(b, rt: str, tower: str, entry: dict, tol: dict, threads: int, log) -> dict:
    from ..export import vectors
    from ..export.validate import run_batched
    from .runtimes import load

    rows = entry["inputs"]["array"]
    log(f"  {tower}: {len(rows)} vector rows in {rt}")
    t0 = time.perf_counter()
    try:
        loaded = load(rt, b, tower, threads)
        if loaded.run is None:  # a loader that can only time its own example input
            raise _CannotRun(f"the {rt} loader (mc2export.bench.runtimes) has no run(x): it cannot run the vectors")
        t1 = time.perf_counter()
        outputs = run_batched(loaded.run, vectors.model_input(tower, rows), int(b.config.get("batch") or 1))
    except (UserError, _CannotRun):
        raise
    except Exception as e:  # the runtime is installed but the model does not load / run: the bundle fails here
        msg = " ".join(str(e).split())[:500] or e.__class__.__name__
        return {"rows": int(len(rows)), "verdict": FAILED, "tolerance": tol,
                "violations": [f"the model does not run in {rt}: {e.__class__.__name__}: {msg}"]}
    _check_io(b, tower, loaded.io)
    out = check_outputs(outputs, entry["expected"]["array"], tol)
    out.update(tolerance=tol, seconds={"load": round(t1 - t0, 3), "run": round(time.perf_counter() - t1, 3)})
    return out


def _check_io(b, tower: str, io: Optional[dict]) -> None:
    """The model's input / output names (and shapes) must be config.json's: the apps feed by name (R6)."""
    if io is None:
        return
    cfg = b.model_entry(tower)
    bad = []
    for side in ("inputs", "outputs"):
        want = cfg.get(side)
        if want is None:
            continue
        got = io.get(side) or []
        if [w.get("name") for w in want] != [g.get("name") for g in got]:
            bad.append(f"{side} {[g.get('name') for g in got]} but config.json says {[w.get('name') for w in want]}")
        else:
            for w, g in zip(want, got):
                if "shape" in g and "shape" in w and [d if isinstance(d, int) else None for d in g["shape"]] != \
                        [d if isinstance(d, int) else None for d in w["shape"]]:
                    bad.append(f"{side[:-1]} {w['name']} shape {g['shape']} but config.json says {w['shape']}")
    if bad:
        raise UserError(f"bundle '{b.path}' is refused: the {tower} model's {'; '.join(bad)}: re-export it")


def _finish(report: dict, status: str, reason: Optional[str] = None) -> dict:
    report["status"] = status
    report["passed"] = status == PASSED
    report["exit_code"] = EXIT_CODES[status]
    if reason:
        report["reason"] = reason
    return report


def _detected_cpu_features() -> list:
    """The SIMD features numpy's runtime dispatch found on this CPU (from the auxiliary vector on ARM: what an
    emulated ``QEMU_CPU`` offers, where ``/proc/cpuinfo`` may still describe the host)."""
    try:
        import numpy as np

        core = getattr(np, "_core", None) or np.core
        feats = core._multiarray_umath.__cpu_features__
        return sorted(k for k, v in feats.items() if v)
    except Exception:  # pragma: no cover - informational
        return []


def table(report: dict) -> str:
    """The per-tower table (stdout)."""
    rows = [("tower", "runtime", "rows", "cosine min", "max-abs/std", "tolerance", "verdict")]
    rt = report["runtime"]["name"]
    for tower, t in report["towers"].items():
        rows.append((tower, rt, str(t.get("rows", "-")),
                     f"{t['cosine_min']:.7f}" if "cosine_min" in t else "-",
                     f"{t['max_abs_over_std']:.1e}" if "max_abs_over_std" in t else "-",
                     tolerance_text(t["tolerance"]), "pass" if t["verdict"] == PASSED else "FAIL"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    b = report["bundle"]
    lines.append(f"{b['variant']} {b['format']} {b['precision']} ({report['tier']} tier), {rt} "
                 f"{report['runtime'].get('version') or ''} on {report['device'].get('arch')}: "
                 + ("all towers hold" if report["status"] == PASSED else "FAILED"))
    return "\n".join(lines)


def failures(report: dict) -> list:
    """One line per failing tower, naming it and its figures (stderr)."""
    out = []
    for tower, t in report["towers"].items():
        if t["verdict"] == PASSED:
            continue
        figs = (f" [cosine min {t['cosine_min']:.7f}, mean {t['cosine_mean']:.7f}, max-abs {t['max_abs']:.3e} = "
                f"{t['max_abs_over_std']:.2e} x std, {t['rows']} rows]" if "cosine_min" in t else "")
        out.append(f"verify FAILED: {tower} tower in {report['runtime']['name']}: {'; '.join(t['violations'])}"
                   f"{figs} (tolerance {tolerance_text(t['tolerance'])})")
    return out


__all__ = ["verify_bundle", "OutputsDisagree", "check_outputs", "table", "failures", "tolerance_text", "verify_runtimes",
           "EXIT_CODES", "PASSED", "FAILED", "CANNOT_RUN"]
