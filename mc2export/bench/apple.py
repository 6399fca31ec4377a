"""Apple devices: Core ML on a Mac (``--runtime coreml``, see :mod:`.runtimes`) and iPhones / iPads through the
iOS sample app's benchmark mode, driven with ``xcrun devicectl`` (Xcode 15+).

Flow of ``mc2export bench BUNDLE --device ios --app BUNDLE_ID [--udid UDID]`` (macOS only; every command is
built by a function below, the outputs are parsed by functions tested with recorded fixtures)::

    xcrun devicectl list devices --json-output F        -> parse_devicectl_devices / select_ios_device
    xcrun devicectl device copy to --device UDID --domain-type appDataContainer
          --domain-identifier BUNDLE_ID --source BUNDLE --destination Documents/mc2export-bundle
    xcrun devicectl device process launch --device UDID --terminate-existing BUNDLE_ID
          --mc2export-bench Documents/mc2export-bundle --mc2export-bench-mode MODE
    (poll) xcrun devicectl device copy from ... --source Documents/mc2export-bench.json --destination F
                                                       -> parse_app_result (the same schema as --json)

The app measures each tower with ``MLModel.prediction`` under the requested mode (the same warm-up /
iterations / duration rules as :mod:`.stats`), computes the same statistics, fills ``device`` with its
machine identifier (``iPhone13,4`` is the paper's iPhone 12 Pro Max) and writes the document. An XCTest
(``measure`` blocks) can write the same JSON the same way.
"""
from __future__ import annotations

import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from ..errors import UserError

APP_BUNDLE_DIR = "Documents/mc2export-bundle"
APP_RESULT = "Documents/mc2export-bench.json"
ARG_BENCH = "--mc2export-bench"
ARG_MODE = "--mc2export-bench-mode"
MAC_HINT = ("iOS benchmarking needs a Mac with Xcode 15+ (xcrun devicectl) and the iOS sample app installed on the "
            "device; on this machine, run the app's benchmark mode by hand and pass its JSON to `mc2export "
            "bench-report`")

RunFn = Callable[[List[str], Optional[float]], Tuple[int, str, str]]


def require_macos(platform: Optional[str] = None) -> None:
    if (platform or sys.platform) != "darwin":
        raise UserError(MAC_HINT)


def devicectl_list_command(json_out) -> List[str]:
    return ["xcrun", "devicectl", "list", "devices", "--json-output", str(json_out)]


def copy_to_command(udid: str, bundle_id: str, source, destination: str = APP_BUNDLE_DIR) -> List[str]:
    return ["xcrun", "devicectl", "device", "copy", "to", "--device", udid, "--domain-type", "appDataContainer",
            "--domain-identifier", bundle_id, "--source", str(source), "--destination", destination]


def copy_from_command(udid: str, bundle_id: str, destination, source: str = APP_RESULT) -> List[str]:
    return ["xcrun", "devicectl", "device", "copy", "from", "--device", udid, "--domain-type", "appDataContainer",
            "--domain-identifier", bundle_id, "--source", source, "--destination", str(destination)]


def launch_command(udid: str, bundle_id: str, mode: str, bundle_dir: str = APP_BUNDLE_DIR) -> List[str]:
    return ["xcrun", "devicectl", "device", "process", "launch", "--device", udid, "--terminate-existing",
            bundle_id, ARG_BENCH, bundle_dir, ARG_MODE, mode]


def parse_devicectl_devices(doc: dict) -> List[dict]:
    """``devicectl list devices --json-output`` document -> ``[{"udid", "name", "model", "marketing_name",
    "os", "platform", "state"}]``."""
    out = []
    for d in ((doc or {}).get("result") or {}).get("devices") or []:
        hw = d.get("hardwareProperties") or {}
        dp = d.get("deviceProperties") or {}
        cp = d.get("connectionProperties") or {}
        out.append({"udid": d.get("identifier") or hw.get("udid"), "name": dp.get("name"),
                    "model": hw.get("productType"), "marketing_name": hw.get("marketingName"),
                    "os": dp.get("osVersionNumber"), "platform": hw.get("platform"),
                    "state": cp.get("tunnelState") or cp.get("pairingState") or "unknown"})
    return out


def select_ios_device(devices: List[dict], udid: Optional[str] = None) -> dict:
    phones = [d for d in devices if (d.get("platform") or "iOS") in ("iOS", "iPadOS")]
    if udid:
        phones = [d for d in phones if d["udid"] == udid]
        if not phones:
            raise UserError(f"iOS device '{udid}' not found by `xcrun devicectl list devices`: check the cable / "
                            "pairing, or pass a --udid it lists")
    ready = [d for d in phones if d["state"] in ("connected", "paired")]
    if not ready:
        raise UserError("no paired iOS device: connect an iPhone, trust this Mac, enable Developer Mode "
                        "(Settings > Privacy & Security), then retry")
    if len(ready) > 1 and not udid:
        raise UserError(f"{len(ready)} iOS devices found ({', '.join(d['udid'] for d in ready)}): pass --udid")
    return ready[0]


def _run(args: List[str], timeout: Optional[float]) -> Tuple[int, str, str]:
    import subprocess

    try:
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise UserError(f"`{args[0]}` not found: {MAC_HINT}") from None
    return p.returncode, p.stdout, p.stderr


def bench_ios(bundle_path, *, bundle_id: str, mode, udid: Optional[str] = None, run: RunFn = _run,
              platform: Optional[str] = None, verify: bool = True, poll_s: float = 5.0,
              log: Callable[[str], None] = lambda s: None) -> dict:
    """Copy a Core ML bundle into the sample app, run its benchmark mode, return its results document."""
    from .android import parse_app_result
    from .bundles import as_bundle, check_runtime

    require_macos(platform)
    b = as_bundle(bundle_path, verify)
    check_runtime(b, "coreml")

    def call(args, timeout=600.0):
        rc, out, err = run(args, timeout)
        if rc != 0:
            lines = (err or out).strip().splitlines()
            raise UserError(f"`{' '.join(args[:5])}` failed: {lines[-1] if lines else rc}")
        return out

    with tempfile.TemporaryDirectory(prefix="mc2export-ios-") as d:
        listing = Path(d) / "devices.json"
        call(devicectl_list_command(listing), 60)
        dev = select_ios_device(parse_devicectl_devices(json.loads(listing.read_text())), udid)
        log(f"  device: {dev['marketing_name'] or dev['model']} ({dev['model']}), iOS {dev['os']}")
        call(copy_to_command(dev["udid"], bundle_id, b.path), 900)
        call(launch_command(dev["udid"], bundle_id, mode.name), 120)
        out = Path(d) / "result.json"
        deadline = time.time() + mode.min_seconds * 2 + 900
        while time.time() < deadline:
            rc, _, _ = run(copy_from_command(dev["udid"], bundle_id, out), 120)
            if rc == 0 and out.is_file() and out.stat().st_size > 0:
                doc = parse_app_result(out.read_text(encoding="utf-8"), source=f"iOS app {bundle_id}")
                if any(r["bundle"].get("checksum") == b.checksum for r in doc["results"]):
                    return doc
            time.sleep(poll_s)
    raise UserError(f"the iOS app {bundle_id} wrote no result for this bundle in time: open it on the device and "
                    "check its benchmark screen")


def shell_line(args: List[str]) -> str:
    """A command as one copy-pasteable shell line (for docs and logs)."""
    return " ".join(shlex.quote(a) for a in args)


__all__ = ["require_macos", "devicectl_list_command", "copy_to_command", "copy_from_command", "launch_command",
           "parse_devicectl_devices", "select_ios_device", "bench_ios", "shell_line", "APP_RESULT"]
