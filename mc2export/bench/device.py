"""What a measurement ran on: CPU model, cores, OS, memory, load; and how it compares with the paper's
hardware (iPhone 12 Pro Max, A14, Core ML) and with the mission's targets for desktop CPUs.

``host_device()`` describes this machine (Linux, macOS, Windows best effort); Android and iOS devices are
described by :mod:`.android` / :mod:`.apple` in the same dictionary shape::

    {"kind": "host" | "android" | "ios", "class": "x86_64 CPU" | "Apple silicon Mac" | "Android arm64" | "iPhone",
     "model": ..., "cpu": ..., "soc": ..., "cores_logical": int, "cores_physical": int, "os": ...,
     "memory_gb": float, "cpu_features": [...], "load_avg": [1m, 5m, 15m] (host only)}
"""
from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from typing import List, Optional

# The paper's latency hardware: iPhone 12 Pro Max = machine identifier iPhone13,4 (A14 Bionic).
PAPER_DEVICE_IDS = ("iPhone13,4",)
A14_DEVICE_IDS = ("iPhone13,1", "iPhone13,2", "iPhone13,3", "iPhone13,4", "iPad13,1", "iPad13,2")
# The mission's targets are "3-15 ms on mobile and desktop hardware": this machine's CPU classes that are desktop or
# server hardware, held to the card's target directly (MEETS / MISSES).
DESKTOP_CLASSES = ("x86_64 CPU", "arm64 CPU", "Intel Mac", "Apple silicon Mac")
BAND_MS = (3.0, 15.0)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _sysctl(name: str) -> Optional[str]:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def parse_cpuinfo(text: str) -> dict:
    """CPU model, logical/physical cores and notable SIMD features from ``/proc/cpuinfo`` text (x86 or ARM)."""
    model = None
    logical = 0
    cores = set()
    flags: List[str] = []
    hardware = None
    for line in text.splitlines():
        if ":" not in line:
            continue
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "processor" and value.isdigit():
            logical += 1
        elif key == "model name" and model is None:
            model = value
        elif key == "hardware" and hardware is None:
            hardware = value
        elif key in ("flags", "features") and not flags:
            flags = value.split()
        elif key == "core id":
            cores.add(value)
        elif key == "physical id":
            pass
    interesting = ["avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "fma",
                   "neon", "asimd", "asimddp", "asimdhp", "fphp", "i8mm", "bf16", "sve", "sve2"]
    feats = [f for f in interesting if f in flags]
    return {"cpu": model or hardware, "cores_logical": logical or None, "cores_physical": len(cores) or None,
            "cpu_features": feats}


def parse_meminfo(text: str) -> Optional[float]:
    """Total memory in GiB from ``/proc/meminfo`` text."""
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.M)
    return round(int(m.group(1)) / 1024 / 1024, 1) if m else None


def load_avg() -> Optional[List[float]]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def host_device() -> dict:
    """This machine, as the results' ``device`` object."""
    system = platform.system()
    machine = platform.machine()
    info = {"kind": "host", "model": None, "soc": None, "cpu": None, "cores_logical": os.cpu_count(),
            "cores_physical": None, "os": f"{system} {platform.release()}", "arch": machine, "memory_gb": None,
            "cpu_features": [], "load_avg": load_avg()}
    if system == "Linux":
        info.update({k: v for k, v in parse_cpuinfo(_read("/proc/cpuinfo")).items() if v})
        info["memory_gb"] = parse_meminfo(_read("/proc/meminfo"))
        pretty = re.search(r'^PRETTY_NAME="?([^"\n]+)', _read("/etc/os-release"), re.M)
        if pretty:
            info["os"] = f"{pretty.group(1)} (Linux {platform.release()})"
        # the number of CPUs this process may use (containers, taskset)
        try:
            info["cores_usable"] = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            pass
    elif system == "Darwin":
        info["cpu"] = _sysctl("machdep.cpu.brand_string")
        info["model"] = _sysctl("hw.model")
        mem = _sysctl("hw.memsize")
        info["memory_gb"] = round(int(mem) / 1024 ** 3, 1) if mem and mem.isdigit() else None
        phys = _sysctl("hw.physicalcpu")
        info["cores_physical"] = int(phys) if phys and phys.isdigit() else None
        perf = _sysctl("hw.perflevel0.physicalcpu")
        if perf and perf.isdigit():
            info["cores_performance"] = int(perf)
        info["os"] = f"macOS {platform.mac_ver()[0]}"
    else:
        info["cpu"] = platform.processor() or machine
    info["class"] = hardware_class(info)
    return info


def hardware_class(dev: dict) -> str:
    """A short label of the hardware class: what the numbers can be compared with."""
    kind = dev.get("kind", "host")
    arch = (dev.get("arch") or "").lower()
    if kind == "ios":
        return "iPhone" if str(dev.get("model", "")).startswith("iPhone") else "iOS device"
    if kind == "android":
        return "Android " + (dev.get("arch") or "arm64")
    if sys.platform == "darwin" and kind == "host" and arch in ("arm64", "aarch64"):
        return "Apple silicon Mac"
    if sys.platform == "darwin" and kind == "host":
        return "Intel Mac"
    if arch in ("x86_64", "amd64", "i686", "x86"):
        return "x86_64 CPU"
    if arch in ("arm64", "aarch64"):
        return "arm64 CPU"
    return f"{arch or 'unknown'} CPU"


def describe(dev: dict, runtime: str, threads: Optional[int], compute_units: Optional[str]) -> str:
    """``'x86_64 CPU (Intel Xeon ..., 2 threads, onnxruntime)'``."""
    parts = [dev.get("model") or dev.get("cpu") or "unknown CPU"]
    if dev.get("kind") == "android" and dev.get("soc"):
        parts = [f"{dev.get('model')} ({dev.get('soc')})"]
    if runtime == "coreml":
        parts.append(f"compute units {compute_units or 'all'}")
    elif threads:
        parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
    parts.append(runtime)
    return f"{dev.get('class') or hardware_class(dev)} ({', '.join(str(p) for p in parts)})"


def comparability(dev: dict, runtime: str, compute_units: Optional[str]) -> str:
    """``same`` -- the paper's device and runtime (iPhone 12 Pro Max, Core ML, Neural Engine allowed);
    ``similar`` -- another Apple device with a Neural Engine through Core ML (indicative only);
    ``desktop`` -- this machine, a desktop or server CPU (:data:`DESKTOP_CLASSES`), any runtime: the mission
    sets the same targets for desktop hardware, so the result is held to them;
    ``none`` -- anything else (Android phones, iOS devices without the Neural Engine, unknown hardware)."""
    ne = runtime == "coreml" and (compute_units or "all") in ("all", "cpu-ne")
    if dev.get("kind") == "ios" and ne and dev.get("model") in PAPER_DEVICE_IDS:
        return "same"
    if ne and (dev.get("kind") == "ios" or dev.get("class") == "Apple silicon Mac"):
        return "similar"
    if dev.get("kind", "host") == "host" and (dev.get("class") or hardware_class(dev)) in DESKTOP_CLASSES:
        return "desktop"
    return "none"


def band(ms: float) -> str:
    """Where ``ms`` falls against the mission's 3-15 ms band: ``below``, ``within`` or ``above``."""
    return "below" if ms < BAND_MS[0] else "within" if ms <= BAND_MS[1] else "above"


def verdict(total_ms: Optional[float], image_ms: Optional[float], text_ms: Optional[float], card: dict, dev: dict,
            runtime: str, threads: Optional[int], compute_units: Optional[str], stat: str,
            towers: List[str]) -> dict:
    """The measured latency against the card's target (the paper's iPhone 12 Pro Max Core ML figure)."""
    paper = card.get("paper", {})
    lat = paper.get("latency_ms", {}) or {}
    hw = paper.get("latency_hardware", "iPhone 12 Pro Max (A14), Core ML")
    t_img, t_txt = lat.get("image"), lat.get("text")
    parts = {"image": t_img, "text": t_txt}
    target = sum(parts[t] for t in towers if parts.get(t) is not None) if all(parts.get(t) is not None
                                                                             for t in towers) else None
    measured = {"image": image_ms, "text": text_ms}
    got = sum(measured[t] for t in towers if measured.get(t) is not None) if all(measured.get(t) is not None
                                                                               for t in towers) else total_ms
    comp = comparability(dev, runtime, compute_units)
    where = describe(dev, runtime, threads, compute_units)
    scope = "+".join(towers)
    if target is None or got is None:
        return {"status": "no-target", "comparable": comp, "ratio": None, "target_ms": target, "measured_ms": got,
                "towers": towers, "stat": stat, "hardware": hw,
                "label": f"no {scope} latency target in the card for {card.get('name')}",
                "note": f"measured on {where}"}
    ratio = got / target
    meets = got <= target
    if comp == "same":
        status = "meets" if meets else "misses"
        note = f"measured on the paper's hardware class ({where})"
    elif comp == "similar":
        status = "meets" if meets else "misses"
        note = (f"{where}: a different Apple Neural Engine device than the target's {hw}; indicative, "
                f"not the paper's measurement")
    elif comp == "desktop":
        status = "meets" if meets else "misses"
        note = (f"{where}: a desktop/server CPU, held to the card's target (the mission's targets hold for mobile and "
                f"desktop hardware; the figure itself was measured on {hw}); {band(got)} the "
                f"{BAND_MS[0]:g}-{BAND_MS[1]:g} ms band")
    else:
        status = "reference"
        ne = "A14 Neural Engine" if "A14" in hw else "target hardware"
        note = f"{where}: not comparable to the {ne} target ({hw}); shown for reference"
    word = {"meets": "MEETS", "misses": "MISSES", "reference": "REFERENCE ONLY"}[status]
    label = (f"{word}: {scope} {stat} {got:.2f} ms vs target {target:g} ms ({hw}) = {ratio:.1f}x the target")
    return {"status": status, "comparable": comp, "ratio": round(ratio, 3), "target_ms": target,
            "measured_ms": round(got, 4), "towers": towers, "stat": stat, "hardware": hw, "label": label,
            "note": note, "band": band(got)}


__all__ = ["host_device", "hardware_class", "describe", "comparability", "verdict", "band", "parse_cpuinfo",
           "parse_meminfo", "load_avg", "PAPER_DEVICE_IDS", "DESKTOP_CLASSES", "BAND_MS"]
