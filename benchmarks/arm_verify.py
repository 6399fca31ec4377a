"""ARM evidence from an x86 host: ``mc2export verify`` on the six S0 bundles under emulated arm64 CPUs.

Builds a Debian bookworm arm64 root under user-mode emulation (``qemu-user-static`` through binfmt_misc,
``debootstrap``), installs the aarch64 wheels of torch / onnxruntime / executorch (fetched on the host with
``pip download --platform manylinux_2_28_aarch64 --only-binary=:all:``, installed offline in the root) and
this checkout of mc2export, exports the S0 bundles ONNX and ExecuTorch x fp32/fp16/int8 on the host (from the
fidelity kit's S0 checkpoint, so the vectors carry real-weight statistics), then runs ``mc2export verify`` on
each of them inside the root under every ``--cpus`` entry (``QEMU_CPU``: ``max`` has SVE/i8mm/bf16;
``cortex-a76`` is a phone-class core with native fp16 arithmetic and dot-product).

Slow and out of CI: on the 2-core host of this project the root takes ~1 min (first stage) + ~8 min (second
stage, emulated), the wheel install ~8 min, each S0 tower inference ~25 s emulated; the written results
record the wall time of every step. Resumable: every finished step leaves a marker in the root and is not
redone (``--redo STEP`` forces one); the bundles are reused when present.

Needs root (debootstrap, chroot, mounts) and ``apt-get install qemu-user-static binfmt-support debootstrap``.

    nice -n 15 python benchmarks/arm_verify.py                      # everything, ~1.5-2 h the first time
    nice -n 15 python benchmarks/arm_verify.py --steps env          # only build the root (resumable)
    python benchmarks/arm_verify.py --steps verify --cpus cortex-a76 # rerun the check on a built root

Results: ``benchmarks/results/arm_verify.{md,json}``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PY = "3.11"  # bookworm's python3
WHEELS = ["torch==2.13.0", "onnxruntime==1.32.0", "setuptools>=68", "wheel"]
EXECUTORCH = "executorch==1.4.1"
# executorch requires packages that have no wheel here: coremltools (no Linux aarch64 wheel; only exporting to
# ExecuTorch's Core ML backend uses it) and hydra-core / omegaconf (they need antlr4-python3-runtime, an sdist;
# the LLM export configs use them). The runtime needs neither: executorch goes in with --no-deps, beside the
# rest of its requirements.
NO_ARM_WHEEL = {"coremltools", "hydra-core", "omegaconf"}
# pip (23.x) does not widen an explicit --platform to older glibc tags: list every one a wheel may carry
PLATFORMS = [f"manylinux_2_{v}_aarch64" for v in range(28, 16, -1)] + ["manylinux2014_aarch64", "linux_aarch64"]
ENV_STEPS = ("debootstrap", "second-stage", "wheels", "install", "mc2export")
BUNDLES = [(fmt, prec) for fmt in ("onnx", "executorch") for prec in ("fp32", "fp16", "int8")]
# what runs inside the root: a clean environment (the host's PIP_* / LD_* must not leak in)
CHROOT_ENV = {"PATH": "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "HOME": "/root", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1",
              "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


def log(msg: str) -> None:
    print(f"[arm_verify {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def mc2export_deps() -> list:
    """mc2export's runtime dependencies, read from pyproject.toml (one list, not a second copy here)."""
    import tomllib

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


class Steps:
    """Markers + wall times of the environment steps, kept in the root so a rerun resumes."""

    def __init__(self, root: Path, redo: set):
        self.root, self.redo = root, redo
        self.file = root / ".mc2export-arm" / "steps.json"
        self.data = json.loads(self.file.read_text()) if self.file.exists() else {}

    def done(self, name: str) -> bool:
        return name in self.data and name not in self.redo

    def record(self, name: str, seconds: float, **info) -> None:
        self.data[name] = {"seconds": round(seconds, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        os.replace(tmp, self.file)

    @contextlib.contextmanager
    def step(self, name: str):
        log(f"{name} ...")
        t0 = time.monotonic()
        yield
        dt = time.monotonic() - t0
        self.record(name, dt)
        log(f"{name}: {dt:.0f} s")


def run(cmd, **kw) -> subprocess.CompletedProcess:
    log("$ " + " ".join(map(str, cmd)))
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def qemu_version() -> str:
    out = subprocess.run(["qemu-aarch64-static", "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0].strip() if out else "unknown"


def qemu_cpus() -> list:
    out = subprocess.run(["qemu-aarch64-static", "-cpu", "help"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines()[1:] if line.strip()]


def ensure_binfmt() -> None:
    """arm64 binaries must start through qemu (binfmt_misc, with the F flag so it works inside a chroot)."""
    for tool in ("qemu-aarch64-static", "debootstrap", "chroot"):
        if shutil.which(tool) is None:
            sys.exit(f"arm_verify: {tool} not found: apt-get install qemu-user-static binfmt-support debootstrap")
    bm = Path("/proc/sys/fs/binfmt_misc")
    if not (bm / "status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(bm)], check=False)
    entry = bm / "qemu-aarch64"
    if not entry.exists():
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], check=False)
    if not entry.exists() or "enabled" not in entry.read_text():
        sys.exit("arm_verify: binfmt_misc has no enabled qemu-aarch64 entry (needs a privileged container: "
                 "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; update-binfmts --enable qemu-aarch64)")


@contextlib.contextmanager
def mounted(root: Path):
    """/proc and /dev inside the root while commands run there (python, pip and torch read them)."""
    mounts = []
    try:
        for src, dst, args in (("proc", "proc", ["-t", "proc"]), ("/dev", "dev", ["--bind"])):
            target = root / dst
            target.mkdir(exist_ok=True)
            if subprocess.run(["mountpoint", "-q", str(target)]).returncode != 0:
                run(["mount", *args, src, target])
                mounts.append(target)
        yield
    finally:
        for target in reversed(mounts):
            subprocess.run(["umount", "-l", str(target)], check=False)


def in_root(root: Path, cmd, env=None, **kw) -> subprocess.CompletedProcess:
    e = dict(CHROOT_ENV, **(env or {}))
    return run(["chroot", root, "/usr/bin/env", "-i", *[f"{k}={v}" for k, v in e.items()], *cmd], **kw)


def build_env(root: Path, steps: Steps) -> None:
    ensure_binfmt()
    root.mkdir(parents=True, exist_ok=True)
    if not steps.done("debootstrap"):
        with steps.step("debootstrap"):
            # --foreign + an explicit second stage: the two halves are timed separately (the second one runs
            # every maintainer script under emulation and is the slow one)
            run(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase",
                 "--include=python3,python3-venv,python3-pip,ca-certificates", SUITE, root, MIRROR])
    if not steps.done("second-stage"):
        with steps.step("second-stage"):
            qemu = Path(shutil.which("qemu-aarch64-static"))
            shutil.copy2(qemu, root / "usr/bin" / qemu.name)  # for binfmt entries without the F flag
            run(["chroot", root, "/debootstrap/debootstrap", "--second-stage"])
    wheels = root / "opt" / "wheels"
    if not steps.done("wheels"):
        with steps.step("wheels"):
            wheels.mkdir(parents=True, exist_ok=True)
            download(wheels, [EXECUTORCH], deps=False)
            download(wheels, WHEELS + mc2export_deps() + executorch_requirements(wheels))
    with mounted(root):
        if not steps.done("install"):
            with steps.step("install"):
                in_root(root, ["python3", "-m", "venv", "/opt/venv"])
                local = ["--no-index", "--find-links", "/opt/wheels"]
                in_root(root, ["pip", "install", "--quiet", *local, *WHEELS, *mc2export_deps(),
                               *executorch_requirements(wheels)])
                in_root(root, ["pip", "install", "--quiet", *local, "--no-deps", EXECUTORCH])
        if not steps.done("mc2export"):
            with steps.step("mc2export"):
                install_mc2export(root)


def download(wheels: Path, requirements, deps: bool = True) -> None:
    """aarch64 / cp311 wheels of ``requirements`` (and their dependencies) from PyPI into ``wheels``."""
    plats = [a for p in PLATFORMS for a in ("--platform", p)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}  # no host find-links / mirrors
    run([sys.executable, "-m", "pip", "download", "--quiet", "--isolated", "--only-binary=:all:", *plats,
         "--python-version", PY, "--implementation", "cp", "--abi", "cp311", *([] if deps else ["--no-deps"]),
         "-d", wheels, *requirements], env=env)


def executorch_requirements(wheels: Path) -> list:
    """executorch's Requires-Dist (from its wheel), less the packages without an aarch64 Linux wheel."""
    import zipfile

    whl = next(wheels.glob("executorch-*.whl"))
    with zipfile.ZipFile(whl) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    reqs = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    return [r.split(";")[0].strip() for r in reqs
            if "extra ==" not in r and re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower() not in NO_ARM_WHEEL]


def install_mc2export(root: Path) -> None:
    """This checkout's tracked files (committed or not), copied in and installed (no build isolation: offline)."""
    dst = root / "opt" / "mc2export"
    if dst.exists():
        shutil.rmtree(dst)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    in_root(root, ["pip", "install", "--quiet", "--no-index", "--find-links", "/opt/wheels", "--no-deps",
                   "--no-build-isolation", "/opt/mc2export"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path("/work/arm64"), help="the arm64 root (outside the repo)")
    ap.add_argument("--steps", default="env,bundles,verify", help="env, bundles, verify (comma separated)")
    ap.add_argument("--redo", default="", help=f"environment steps to redo: {', '.join(ENV_STEPS)}")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("arm_verify: needs root (debootstrap, chroot, mount)")
    todo = set(args.steps.split(","))
    root = args.root.resolve()
    steps = Steps(root, set(filter(None, args.redo.split(","))))
    if "env" in todo:
        build_env(root, steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
