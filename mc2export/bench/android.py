"""Android devices through ``adb``: ExecuTorch's ``executor_runner`` (or the sample app's benchmark mode).

Flow of ``mc2export bench BUNDLE --device android --runner PATH`` (every command is built by a function
below and run through :class:`Adb`; the parsing functions are tested with recorded outputs)::

    adb devices -l                                         -> parse_adb_devices / select_device
    adb -s SERIAL shell getprop; cat /proc/cpuinfo, meminfo -> android_device
    adb -s SERIAL shell mkdir -p /data/local/tmp/mc2export/<checksum12>
    adb -s SERIAL push executor_runner  .../executor_runner ; shell chmod 755 (when --runner is given)
    adb -s SERIAL push <bundle>/image.pte .../image.pte     (skipped when sha256sum on the device matches)
    verification vectors (bundle ``verify/``), per batch of rows:
      adb push rows.bin .../verify-image-in0.bin
      adb shell 'cd DIR && ./executor_runner --model_path image.pte --num_executions 1
                 --inputs verify-image-in0.bin --output_file verify-image-out0'  -> writes verify-image-out0-0.bin
      adb pull .../verify-image-out0-0.bin                 -> compared with the expected rows (as mc2export verify)
    adb -s SERIAL shell 'cd DIR && toybox time -v ./executor_runner --model_path image.pte
                          --num_executions N --cpu_threads T'  -> parse_runner_output
    (same for text.pte); results assembled into the common schema (harness.assemble)

Per invocation the runner loads the model once (``Model loaded in X ms``), then runs ``--num_executions``
calls, printing ``Iteration i of N: X ms`` (ExecuTorch >= 1.1; older runners print only the total,
``Model executed successfully N time(s) in X ms``: then each sample is one invocation's mean, flagged
``samples_aggregate``). The first invocation's load is the cold load, later ones the warm load; warm-up
calls are the first calls of an invocation and are dropped. Before a tower is timed, the bundle's verification
vectors run through the same runner on the device (``--inputs`` takes one raw little-endian file per model
input, ``--output_file BASE`` writes each output tensor's raw bytes to ``BASE-<i>.bin``: ExecuTorch's
``executor_runner`` flags since 1.0); outputs outside the precision's tolerance fail the run
(:class:`.verify.OutputsDisagree`, exit 3) before anything is timed. Peak memory: ``toybox time -v``'s
``Max RSS (KiB)`` of the runner process. Logs go to stderr with ExecuTorch's default (posix) PAL; a
runner built with the android PAL logs to logcat, which is read instead (``adb logcat -d -s ExecuTorch``).

The sample app (``--app PACKAGE``, e.g. ``com.mc2export.demo``): the bundle is pushed to the app's external
files folder (``/sdcard/Android/data/PACKAGE/files/bundle``), the app is started with ``am start`` and the
extras ``mc2export.bench.bundle`` / ``.mode`` / ``.threads`` (its benchmark mode); it writes a document in
the same schema to ``files/mc2export-bench.json`` in its private folder, read with ``adb shell run-as PACKAGE
cat files/mc2export-bench.json`` (the sample app is a debuggable build).
"""
from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import UserError
from ..strictjson import loads as strict_loads

REMOTE_ROOT = "/data/local/tmp/mc2export"
RUNNER_NAME = "executor_runner"
APP_ACTIVITY = ".MainActivity"
APP_RESULT = "files/mc2export-bench.json"          # relative to the app's data folder
APP_EXTRA_BUNDLE = "mc2export.bench.bundle"
APP_EXTRA_MODE = "mc2export.bench.mode"
APP_EXTRA_THREADS = "mc2export.bench.threads"
ADB_HINT = ("install Android platform-tools (https://developer.android.com/tools/releases/platform-tools) "
            "and put adb on PATH, or pass --adb PATH")
NO_DEVICE_HINT = ("no Android device found (`adb devices` lists none): connect a phone with USB debugging on "
                  "(Settings > Developer options) and accept the RSA prompt, or start an emulator")

RunFn = Callable[[List[str], Optional[float]], Tuple[int, str, str]]


# ---------------------------------------------------------------------------------------------- parsing

def parse_adb_devices(text: str) -> List[dict]:
    """``adb devices [-l]`` output -> ``[{"serial", "state", "model", "product", "device", "transport_id"}]``."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("List of devices") or line.startswith("*"):
            continue  # header, "* daemon started successfully"
        parts = line.split()
        if len(parts) < 2:
            continue
        d = {"serial": parts[0], "state": parts[1]}
        for p in parts[2:]:
            if ":" in p:
                k, _, v = p.partition(":")
                d[k] = v
        out.append(d)
    return out


def select_device(devices: Sequence[dict], serial: Optional[str] = None) -> dict:
    """The one usable device (``state == device``), or a one-line error naming the fix."""
    if serial:
        match = [d for d in devices if d["serial"] == serial]
        if not match:
            listed = ", ".join(f"{d['serial']} ({d['state']})" for d in devices) or "none"
            raise UserError(f"Android device '{serial}' not found (adb lists: {listed}): check the cable, or pass a "
                            "--serial from `adb devices`")
        devices = match
    ready = [d for d in devices if d["state"] == "device"]
    if ready:
        if len(ready) > 1:
            raise UserError(f"{len(ready)} Android devices connected ({', '.join(d['serial'] for d in ready)}): pass "
                            "--serial SERIAL to pick one")
        return ready[0]
    if not devices:
        raise UserError(NO_DEVICE_HINT)
    d = devices[0]
    if d["state"] == "unauthorized":
        raise UserError(f"Android device {d['serial']} is unauthorized: unlock it and accept the 'Allow USB "
                        "debugging' prompt, then retry")
    if d["state"] == "offline":
        raise UserError(f"Android device {d['serial']} is offline: reconnect it (or `adb kill-server`), then retry")
    raise UserError(f"Android device {d['serial']} is in state '{d['state']}': wait until `adb devices` shows "
                    "'device', then retry")


_NUM = r"([0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"
_RE_ITER = re.compile(r"Iteration (\d+) of (\d+): " + _NUM + r" ms")
_RE_TOTAL = re.compile(r"Model executed successfully(?: (\d+) time\(s\))? in " + _NUM + r" ms")
_RE_LOAD = re.compile(r"Model loaded in " + _NUM + r" ms")
_RE_THREADS = re.compile(r"Resetting threadpool with num threads = (-?\d+)")
_RE_RSS_TOYBOX = re.compile(r"Max RSS \(KiB\):\s*(\d+)")
_RE_RSS_GNU = re.compile(r"Maximum resident set size \(kbytes\):\s*(\d+)")
_RE_FAIL = re.compile(r"(?:^|\] )((?:Execution of method|Loading of method|Program loading failed|"
                      r"In function|Failed to|Could not|ERROR: unknown command line flag)[^\n]*)", re.M)


def parse_runner_output(text: str) -> dict:
    """Everything the harness needs from an ``executor_runner`` run (stdout + stderr, or logcat lines).

    Returns ``{"samples_ms": [...] (per call, may be empty), "iterations": int | None, "total_ms": float | None,
    "load_ms": float | None, "threads": int | None, "max_rss_kb": int | None, "error": str | None}``."""
    samples = [(int(m.group(1)), float(m.group(3))) for m in _RE_ITER.finditer(text)]
    samples.sort()
    total = _RE_TOTAL.search(text)
    load = _RE_LOAD.search(text)
    threads = _RE_THREADS.search(text)
    rss = _RE_RSS_TOYBOX.search(text) or _RE_RSS_GNU.search(text)
    fail = _RE_FAIL.search(text)
    iterations = None
    if total and total.group(1):
        iterations = int(total.group(1))
    elif samples:
        iterations = len(samples)
    err = None
    if not total:
        err = fail.group(1).strip() if fail else "the runner printed no 'Model executed successfully' line"
    return {"samples_ms": [x for _, x in samples], "iterations": iterations,
            "total_ms": float(total.group(2)) if total else None,
            "load_ms": float(load.group(1)) if load else None,
            "threads": int(threads.group(1)) if threads else None,
            "max_rss_kb": int(rss.group(1)) if rss else None, "error": err}


def parse_getprop(text: str) -> Dict[str, str]:
    """``adb shell getprop`` output (``[key]: [value]`` lines) -> dict."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, re.M)}


def device_from_props(props: Dict[str, str], cpuinfo: str = "", meminfo: str = "", serial: str = None) -> dict:
    """The results' ``device`` object of an Android phone."""
    from .device import parse_cpuinfo, parse_meminfo

    cpu = parse_cpuinfo(cpuinfo) if cpuinfo else {}
    soc = " ".join(x for x in (props.get("ro.soc.manufacturer"), props.get("ro.soc.model")) if x) or \
        props.get("ro.board.platform") or props.get("ro.hardware")
    model = " ".join(x for x in (props.get("ro.product.manufacturer"), props.get("ro.product.model")) if x) or None
    abi = props.get("ro.product.cpu.abi") or "arm64-v8a"
    release = props.get("ro.build.version.release")
    sdk = props.get("ro.build.version.sdk")
    dev = {"kind": "android", "model": model, "soc": soc, "cpu": cpu.get("cpu") or soc,
           "arch": "arm64" if "arm64" in abi else abi, "cores_logical": cpu.get("cores_logical"),
           "cores_physical": None, "os": f"Android {release or '?'}" + (f" (API {sdk})" if sdk else ""),
           "memory_gb": parse_meminfo(meminfo) if meminfo else None, "cpu_features": cpu.get("cpu_features", []),
           "load_avg": None, "serial": serial}
    from .device import hardware_class

    dev["class"] = hardware_class(dev)
    return dev


# ---------------------------------------------------------------------------------------------- commands

def runner_command(remote_dir: str, model: str, num_executions: int, threads: Optional[int] = None,
                   runner: str = RUNNER_NAME, measure_rss: bool = True, extra: Sequence[str] = ()) -> str:
    """The shell command (one string for ``adb shell``) running the runner on ``model`` in ``remote_dir``."""
    args = [f"./{runner}", f"--model_path={model}", f"--num_executions={int(num_executions)}"]
    if threads:
        args.append(f"--cpu_threads={int(threads)}")
    args += list(extra)
    cmd = " ".join(shlex.quote(a) for a in args)
    if measure_rss:
        # mksh's `time` is a keyword without -v: use toybox's, when this Android has it
        cmd = f"if toybox time -v true >/dev/null 2>&1; then toybox time -v {cmd}; else {cmd}; fi"
    return f"cd {shlex.quote(remote_dir)} && {cmd}"


def adb_base(adb: str = "adb", serial: Optional[str] = None) -> List[str]:
    return [adb] + (["-s", serial] if serial else [])


def push_command(local, remote: str, adb: str = "adb", serial: Optional[str] = None) -> List[str]:
    return adb_base(adb, serial) + ["push", str(local), remote]


def pull_command(remote: str, local, adb: str = "adb", serial: Optional[str] = None) -> List[str]:
    return adb_base(adb, serial) + ["pull", remote, str(local)]


def shell_command(cmd: str, adb: str = "adb", serial: Optional[str] = None) -> List[str]:
    return adb_base(adb, serial) + ["shell", cmd]


def app_start_command(package: str, bundle_remote: str, mode: str, threads: Optional[int] = None,
                      activity: str = APP_ACTIVITY) -> str:
    """``am start`` asking the sample app for its benchmark mode on a bundle pushed to the device."""
    parts = ["am", "start", "-W", "-S", "-n", f"{package}/{activity}", "--es", APP_EXTRA_BUNDLE, bundle_remote,
             "--es", APP_EXTRA_MODE, mode]
    if threads:
        parts += ["--ei", APP_EXTRA_THREADS, str(int(threads))]
    return " ".join(shlex.quote(p) for p in parts)


def app_bundle_dir(package: str) -> str:
    """Where the sample app looks for a bundle (its external files folder, writable by ``adb push``)."""
    return f"/sdcard/Android/data/{package}/files/bundle"


def app_result_command(package: str) -> str:
    """Print the app's result file (``run-as`` works for debuggable builds, as the sample app is)."""
    return f"run-as {shlex.quote(package)} cat {shlex.quote(APP_RESULT)}"


# ---------------------------------------------------------------------------------------------- adb

def _subprocess_run(args: List[str], timeout: Optional[float]) -> Tuple[int, str, str]:
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


@dataclass
class Adb:
    """A thin ``adb`` wrapper; ``run`` is injectable (tests replay recorded outputs)."""
    adb: str = "adb"
    serial: Optional[str] = None
    run: RunFn = _subprocess_run

    def _call(self, args: List[str], timeout: Optional[float] = 120, check: bool = True,
              stdout_only: bool = False) -> str:
        try:
            rc, out, err = self.run(args, timeout)
        except FileNotFoundError:
            raise UserError(f"adb not found ('{self.adb}'): {ADB_HINT}") from None
        except subprocess.TimeoutExpired:
            raise UserError(f"`{' '.join(args[:6])} ...` timed out after {timeout:.0f}s: check the device "
                            "(screen on, not thermally throttled) or use --mode quick") from None
        if check and rc != 0:
            msg = (err or out).strip().splitlines()
            raise UserError(f"`{' '.join(args[:6])}` failed: {msg[-1] if msg else f'exit code {rc}'}")
        return out if stdout_only else out + (("\n" + err) if err else "")

    def devices(self) -> List[dict]:
        return parse_adb_devices(self._call([self.adb, "devices", "-l"], timeout=30))

    def shell(self, cmd: str, timeout: Optional[float] = 600, check: bool = True, stdout_only: bool = False) -> str:
        return self._call(shell_command(cmd, self.adb, self.serial), timeout, check, stdout_only)

    def push(self, local, remote: str) -> None:
        self._call(push_command(local, remote, self.adb, self.serial), timeout=900)

    def pull(self, remote: str, local) -> None:
        self._call(pull_command(remote, local, self.adb, self.serial), timeout=300)


def connect(adb: str = "adb", serial: Optional[str] = None, run: RunFn = _subprocess_run) -> Adb:
    """An :class:`Adb` bound to the one usable device (or a one-line error)."""
    a = Adb(adb, None, run)
    dev = select_device(a.devices(), serial)
    return Adb(adb, dev["serial"], run)


def android_device(a: Adb) -> dict:
    props = parse_getprop(a.shell("getprop", timeout=30, check=False))
    cpuinfo = a.shell("cat /proc/cpuinfo", timeout=30, check=False)
    meminfo = a.shell("cat /proc/meminfo", timeout=30, check=False)
    return device_from_props(props, cpuinfo, meminfo, a.serial)


def push_if_changed(a: Adb, local: Path, remote: str, sha256: Optional[str]) -> bool:
    """Push unless the device already holds the same bytes (``sha256sum``); returns whether it pushed."""
    if sha256:
        out = a.shell(f"sha256sum {shlex.quote(remote)} 2>/dev/null", timeout=120, check=False)
        if out.split()[:1] == [sha256]:
            return False
    a.push(local, remote)
    return True


def push_runner(a: Adb, remote_dir: str, runner: Optional[str], default_name: str, not_found: str,
                missing: str) -> str:
    """The benchmark binary's name in ``remote_dir``: ``runner`` (a local file) pushed and made executable, or
    ``default_name`` already there from an earlier run; a one-line error naming the fix otherwise."""
    if runner:
        rp = Path(runner).expanduser()
        if not rp.is_file():
            raise UserError(f"--runner '{rp}' not found: {not_found}")
        a.push(rp, f"{remote_dir}/{rp.name}")
        a.shell(f"chmod 755 {shlex.quote(remote_dir + '/' + rp.name)}", timeout=30)
        return rp.name
    have = a.shell(f"ls {shlex.quote(remote_dir + '/' + default_name)} 2>/dev/null", timeout=30, check=False)
    if default_name not in have or "No such file" in have:
        raise UserError(missing)
    return default_name


def open_device(bundle_path, runtime: str, towers, *, adb: str, serial: Optional[str], run: RunFn, verify: bool,
                log: Callable[[str], None], runner: Optional[str], default_name: str, not_found: str, missing: str):
    """The opening of every ``bench --device android`` run: the bundle (checked for ``runtime``), its towers, the
    phone, the bundle's folder on it and the benchmark binary there (:func:`push_runner`).
    Returns ``(bundle, towers, adb, device, remote_dir, runner_name)``."""
    from .bundles import as_bundle, check_runtime
    from .harness import parse_towers

    b = as_bundle(bundle_path, verify)
    check_runtime(b, runtime)
    towers = parse_towers(towers, b.towers)
    a = connect(adb, serial, run)
    dev = android_device(a)
    log(f"  device: {dev['model']} ({dev['soc']}), {dev['os']}, serial {a.serial}")
    remote_dir = f"{REMOTE_ROOT}/{b.checksum[:12]}"
    a.shell(f"mkdir -p {shlex.quote(remote_dir)}", timeout=30)
    runner_name = push_runner(a, remote_dir, runner, default_name, not_found=not_found, missing=missing)
    return b, towers, a, dev, remote_dir, runner_name


# ---------------------------------------------------------------------------------------------- protocol

def _invoke(a: Adb, remote_dir: str, model: str, n: int, threads: Optional[int], runner: str,
            logcat: bool, extra: Sequence[str] = ()) -> dict:
    if logcat:
        a.shell("logcat -c", timeout=30, check=False)
    text = a.shell(runner_command(remote_dir, model, n, threads, runner, extra=extra), timeout=3600, check=False)
    res = parse_runner_output(text)
    if res["error"] and "unknown command line flag 'cpu_threads'" in res["error"] and threads:
        text = a.shell(runner_command(remote_dir, model, n, None, runner, extra=extra), timeout=3600, check=False)
        res = parse_runner_output(text)
        res["threads_flag_unsupported"] = True
    if res["total_ms"] is None and logcat:  # a runner built with the android PAL logs to logcat
        res2 = parse_runner_output(a.shell("logcat -d -v raw -s ExecuTorch:I", timeout=60, check=False) + "\n" + text)
        if res2["total_ms"] is not None:
            res = res2
    if res["total_ms"] is None:
        raise UserError(f"executor_runner failed on {model}: {res['error']} (run `adb shell {remote_dir}/{runner} "
                        f"--model_path={remote_dir}/{model}` to see its log; is it an arm64 build with XNNPACK?)")
    return res


def measure_android_tower(a: Adb, remote_dir: str, model: str, mode, threads: Optional[int],
                          runner: str = RUNNER_NAME, logcat: bool = True, log=lambda s: None) -> dict:
    """One tower on the device under ``mode``; returns the tower object of the schema."""
    from .stats import plan_iterations, round_stats, summarize

    invocations = []
    samples: List[float] = []
    warm: List[float] = []
    sizes: List[int] = []
    aggregate = False

    def take(res, warmup):
        nonlocal aggregate
        if res["samples_ms"]:
            warm.extend(res["samples_ms"][:warmup])
            return res["samples_ms"][warmup:]
        aggregate = True  # an older runner: only the invocation's total (warm-up calls included)
        return [res["total_ms"] / max(1, res["iterations"] or 1)]

    if mode.rounds > 1:
        for r in range(mode.rounds):
            res = _invoke(a, remote_dir, model, mode.warmup + mode.min_iterations, threads, runner, logcat)
            invocations.append(res)
            got = take(res, mode.warmup)
            samples += got
            sizes.append(len(got))
            log(f"    round {r + 1}/{mode.rounds}: mean {sum(got) / len(got):.2f} ms")
    else:
        probe_n = mode.warmup + min(5, mode.min_iterations)
        res = _invoke(a, remote_dir, model, probe_n, threads, runner, logcat)  # cold load + a rough mean
        invocations.append(res)
        probe = res["samples_ms"][mode.warmup:] or [res["total_ms"] / max(1, res["iterations"] or 1)]
        n = plan_iterations(sum(probe) / len(probe), mode)
        res = _invoke(a, remote_dir, model, mode.warmup + n, threads, runner, logcat)
        invocations.append(res)
        samples = take(res, mode.warmup)
    stats = summarize(samples, sizes or None, mode.trim_low, mode.trim_high)
    loads = [r["load_ms"] for r in invocations if r["load_ms"] is not None]
    warm_loads = loads[1:]
    rss = [r["max_rss_kb"] for r in invocations if r["max_rss_kb"] is not None]
    measured = invocations if mode.rounds > 1 else invocations[1:]
    iterations = len(samples) if not aggregate else sum(r["iterations"] or 1 for r in measured)
    out = {
        "tower": model.rsplit(".", 1)[0], "file": model,
        "load_ms": {"cold": loads[0] if loads else None,
                    "warm": sorted(warm_loads)[len(warm_loads) // 2] if warm_loads else None,
                    "first_inference": invocations[0]["samples_ms"][0] if invocations[0]["samples_ms"] else None},
        "warmup_ms": [round(x, 4) for x in warm], "iterations": max(1, iterations), "rounds": max(1, len(sizes)),
        "duration_s": round(sum(r["total_ms"] for r in invocations) / 1000.0, 3),
        "stats": round_stats(stats), "samples_ms": [round(x, 4) for x in samples],
        "memory": {"scope": "device-process", "peak_rss_mb": round(max(rss) / 1024, 1) if rss else None,
                   "method": "toybox time -v (Max RSS of the runner process)" if rss else "unavailable"},
        "runtime_info": {"runner": runner, "invocations": len(invocations),
                         "threadpool_threads": invocations[-1]["threads"],
                         "threads_flag_unsupported": bool(invocations[-1].get("threads_flag_unsupported"))},
    }
    if aggregate:
        out["samples_aggregate"] = True
    return out


def verify_android_tower(a: Adb, bundle, tower: str, remote_dir: str, entry: dict, tol: dict,
                         threads: Optional[int], runner: str = RUNNER_NAME, logcat: bool = True) -> dict:
    """Run one tower's verification vectors (``entry``: a tower of :func:`mc2export.export.vectors.read`) on the
    device with ``executor_runner --inputs/--output_file``; the figures and verdict of
    :func:`.verify.check_outputs`."""
    import tempfile

    import numpy as np

    from ..export import vectors
    from ..export.validate import run_batched
    from .verify import FAILED, check_outputs

    model = bundle.model_entry(tower)["file"]
    calls = []

    with tempfile.TemporaryDirectory(prefix="mc2export-vectors-") as work:
        def on_device(chunk: np.ndarray) -> np.ndarray:
            i = len(calls)
            name, base = f"verify-{tower}-in{i}.bin", f"verify-{tower}-out{i}"
            local = Path(work) / name
            local.write_bytes(np.ascontiguousarray(chunk).astype(chunk.dtype.newbyteorder("<")).tobytes())
            a.push(local, f"{remote_dir}/{name}")
            calls.append(_invoke(a, remote_dir, model, 1, threads, runner, logcat,
                                 extra=[f"--inputs={name}", f"--output_file={base}"]))
            a.pull(f"{remote_dir}/{base}-0.bin", Path(work) / f"{base}-0.bin")
            out = np.fromfile(Path(work) / f"{base}-0.bin", dtype="<f4")
            if out.size % len(chunk):
                raise ValueError(f"the runner wrote {out.size} floats for a batch of {len(chunk)}")
            return out.reshape(len(chunk), -1)

        rows = entry["inputs"]["array"]
        try:
            outputs = run_batched(on_device, vectors.model_input(tower, rows), int(bundle.config.get("batch") or 1))
            result = check_outputs(outputs, entry["expected"]["array"], tol)
        except ValueError as e:
            result = {"rows": int(len(rows)), "violations": [str(e)], "verdict": FAILED}
        a.shell(f"rm -f {shlex.quote(remote_dir)}/verify-{tower}-*", timeout=30, check=False)
    result.update(tolerance=tol, invocations=len(calls), runner=runner)
    return result


def bench_android(bundle_path, *, mode, threads: Optional[int] = None, serial: Optional[str] = None,
                  runner: Optional[str] = None, adb: str = "adb", towers=None, verify: bool = True,
                  vectors: bool = True, run: RunFn = _subprocess_run,
                  log: Callable[[str], None] = lambda s: None) -> dict:
    """Measure an ExecuTorch bundle's ``.pte`` files on a phone with ``executor_runner``; one result.

    With ``vectors`` (default) each tower first runs the bundle's verification vectors on the device; outputs
    outside the tolerance raise :class:`.verify.OutputsDisagree` (nothing is timed). The figures go to the
    result's ``verification`` object."""
    from .harness import assemble

    b, towers, a, dev, remote_dir, runner_name = open_device(
        bundle_path, "executorch", towers, adb=adb, serial=serial, run=run, verify=verify, log=log, runner=runner,
        default_name=RUNNER_NAME,
        not_found="pass an Android arm64 build of ExecuTorch's executor_runner (docs/bench.md shows the cmake line)",
        missing="no executor_runner on the device: pass --runner PATH to an Android arm64 build of ExecuTorch's "
                "executor_runner with XNNPACK (docs/bench.md: 'Android')")
    from ..export import vectors as vectors_mod
    from ..export.validate import tolerance_for

    files = b.config.get("files") or {}
    manifest = _vectors_of(b) if vectors else None
    verification = ({"status": "not-run", "reason": "--no-vectors"} if not vectors else
                    {"status": "not-run", "reason": "the bundle has no verify/ vectors (exported before them)"}
                    if manifest is None else {"status": "passed", "tolerance": tolerance_for(manifest["precision"]),
                                              "towers": {}})
    tower_results = {}
    for t in towers:
        name = b.model_entry(t)["file"]
        pushed = push_if_changed(a, b.path / name, f"{remote_dir}/{name}", (files.get(name) or {}).get("sha256"))
        log(f"  {t}: {'pushed' if pushed else 'already on the device:'} {name}")
        if manifest is not None and t in manifest["towers"]:
            check = verify_android_tower(a, b, t, remote_dir, manifest["towers"][t],  # the tier's, not the file's
                                         vectors_mod.tolerance(manifest, t), threads, runner_name)
            verification["towers"][t] = {k: v for k, v in check.items() if k != "cosine_per_row"}
            log(f"  {t}: verification vectors on the device: cosine min {check.get('cosine_min', float('nan')):.7f}"
                f" ({check['verdict']})")
            if check["verdict"] != "passed":
                from .verify import OutputsDisagree, failures

                raise OutputsDisagree(failures({"runtime": {"name": f"executorch on {dev['model']} ({a.serial})"},
                                                "towers": {t: check}}))
        log(f"  {t}: running {runner_name} ({mode.name} mode)")
        tr = measure_android_tower(a, remote_dir, name, mode, threads, runner_name, log=log)
        tr["tower"] = t
        tower_results[t] = tr
    versions = {"executorch": (b.config.get("versions") or {}).get("executorch")}
    result = assemble(b.summary(), runtime="executorch", runtime_versions={k: v for k, v in versions.items() if v},
                      threads=threads, compute_units=None, mode=mode, device=dev, towers=tower_results,
                      source=f"mc2export bench --device android ({runner_name} over adb)")
    result["runtime"]["runner"] = runner_name
    result["verification"] = verification
    return result


def _vectors_of(bundle) -> Optional[dict]:
    """The bundle's verification vectors, or None for a bundle exported before them."""
    from ..export import vectors

    if not (bundle.path / vectors.MANIFEST).is_file():
        return None
    return vectors.read(bundle.path, bundle.config)


def bench_android_app(bundle_path, *, package: str, mode, threads: Optional[int] = None, serial: Optional[str] = None,
                      adb: str = "adb", run: RunFn = _subprocess_run, verify: bool = True, poll_s: float = 5.0,
                      log: Callable[[str], None] = lambda s: None) -> dict:
    """Push a bundle, start the sample app's benchmark mode, read back its results document."""
    from .bundles import as_bundle

    b = as_bundle(bundle_path, verify)
    a = connect(adb, serial, run)
    remote = app_bundle_dir(package)  # the app's external files folder: apps cannot read /data/local/tmp
    a.shell(f"mkdir -p {shlex.quote(remote)}", timeout=30)
    for name, meta in sorted((b.config.get("files") or {}).items()):
        push_if_changed(a, b.path / name, f"{remote}/{name}", meta.get("sha256"))
    push_if_changed(a, b.path / "config.json", f"{remote}/config.json", None)
    a.shell(f"run-as {shlex.quote(package)} rm -f {shlex.quote(APP_RESULT)}", timeout=30, check=False)
    a.shell(app_start_command(package, remote, mode.name, threads), timeout=60)
    text = ""
    import time as _time

    deadline = _time.time() + (mode.min_seconds * 2 + 600)
    while _time.time() < deadline:
        text = a.shell(app_result_command(package), timeout=60, check=False, stdout_only=True)
        if text.strip().startswith("{"):
            break
        _time.sleep(poll_s)
    return parse_app_result(text, source=f"{package} benchmark mode")


def parse_app_result(text: str, source: str = "app") -> dict:
    """A sample app's benchmark document (same schema as ``--json``); validated."""
    import json

    from .schema import validate

    try:
        doc = strict_loads(text)
    except ValueError:
        raise UserError(f"the {source} wrote no valid JSON result: open the app once, check it is a debuggable "
                        "build with the benchmark mode, and retry") from None
    validate(doc, what=f"the {source}'s results")
    return doc


__all__ = ["parse_adb_devices", "select_device", "parse_runner_output", "parse_getprop", "device_from_props",
           "runner_command", "push_command", "pull_command", "verify_android_tower", "shell_command", "app_start_command", "app_result_command", "app_bundle_dir", "Adb",
           "connect", "android_device", "push_runner", "open_device", "measure_android_tower", "bench_android", "bench_android_app",
           "parse_app_result", "REMOTE_ROOT"]
