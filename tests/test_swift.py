"""The iOS app's Swift package (examples/ios/MC2Core) compiled and tested on Linux.

``examples/ios/swift_linux.sh`` makes (first use, ~4 min: debootstrap + Debian trixie's ``swiftlang``) or
reuses a trixie root cached in /var/cache/mc2export/swift-trixie, copies the package in and runs
``swift build --build-tests`` + ``swift test`` from a clean build (Swift 6 language mode, complete
concurrency checking). Held here: 0 compiler errors, 0 warnings, every XCTest test run and passed -- the
tokenizer, preprocessing (byte for byte with Pillow, PNGs decoded by the test's own reader), bundle config,
verify/, SHA-256 / CRC-32, and the photo index against the shared vectors (library, torn, corrupt, other
model, Python's writer bytes, a child process SIGKILLed while appending). The counts are printed in the
test session's summary (tests/conftest.py), so CI logs show them under ``pytest -q`` too.
Skipped only when the Debian archive cannot be reached to make the root (the script exits 3).
"""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "ios" / "swift_linux.sh"
TESTS = REPO / "examples" / "ios" / "MC2Core" / "Tests"


def test_swift_package_builds_without_warnings_and_every_test_passes(request):
    t0 = time.monotonic()
    p = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=1500)
    seconds = time.monotonic() - t0
    out = p.stdout + p.stderr
    if p.returncode == 3 and "cannot be reached" in out:
        pytest.skip("the Debian archive cannot be reached: no Swift root can be made here")
    build = out[out.find("] swift build"):] if "] swift build" in out else out
    warnings = sorted({ln.strip() for ln in build.splitlines() if re.search(r"\bwarning: ", ln)})
    errors = sorted({ln.strip() for ln in build.splitlines()
                     if re.search(r"\berror: ", ln) and ".swift:" in ln and "XCTAssert" not in ln and "XCTFail" not in ln})
    totals = re.findall(r"Test Suite 'All tests' (passed|failed) at .*\n\s*(Executed (\d+) tests?, with (\d+) failures?.*)", out)
    declared = sum(len(re.findall(r"^\s*func test\w*\(", f.read_text(), re.M)) for f in TESTS.rglob("*.swift"))
    version = re.search(r"Swift version (\S+)", out)
    summary = request.config.__dict__.setdefault("mc2_summary", [])
    summary.append(f"Swift (MC2Core, swift {version.group(1) if version else '?'}): "
                   f"{totals[-1][1] if totals else 'no test totals'}; {len(warnings)} warnings, {len(errors)} errors; "
                   f"{seconds:.0f} s")
    assert p.returncode == 0, out[-6000:]
    assert not errors, "\n".join(errors)
    assert not warnings, "compiler warnings:\n" + "\n".join(warnings)
    assert totals and totals[-1][0] == "passed", out[-4000:]
    executed, failures = int(totals[-1][2]), int(totals[-1][3])
    assert failures == 0
    assert executed == declared, f"{executed} tests ran, {declared} are declared in {TESTS}"
