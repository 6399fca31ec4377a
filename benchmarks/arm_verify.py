"""ARM evidence from an x86 host: ``mc2export verify`` on the S0 bundles under emulated arm64 CPUs.

Builds a Debian bookworm arm64 root under user-mode emulation (``qemu-user-static`` through binfmt_misc,
``debootstrap``), installs the aarch64 wheels of torch / onnxruntime / executorch (fetched on the host with
``pip download --platform manylinux_2_28_aarch64 --only-binary=:all:``, installed offline in the root) and
this checkout of mc2export, exports the S0 bundles ONNX and ExecuTorch x fp32/fp16/int8 and LiteRT x fp32/int8/int8-static
(``--formats`` selects; LiteRT runs in PyPI's aarch64 wheel of ``ai-edge-litert``, its own environment step) on the host (from the
fidelity kit's S0 checkpoint, so the vectors carry real-weight statistics), then runs ``mc2export verify`` on
each of them inside the root under every ``--cpus`` entry: ``max`` (SVE/SVE2, i8mm, bf16, fp16 arithmetic)
and ``cortex-a76`` (a phone-class core: native fp16 arithmetic and dot-product, no SVE / i8mm).

The emulator (``--qemu``): by default Debian trixie's qemu-user 10.0 (fetched with ``apt-get download`` and
unpacked into the root). Bookworm's qemu-user-static 7.2 (``--qemu system``, binfmt_misc) mis-emulates
SVE code of ONNX Runtime's fused int8 MatMul: under ``max`` one quantized MatMul came out at cosine 0.33
against x86, exact with ``max,sve=off`` and under qemu 10.0 (see ``benchmarks/results/arm_verify_qemu7.md``).
An emulator is a model of the CPU, not the CPU: a disagreement here is a lead to confirm on hardware.

Slow and out of CI. On the 2-core shared host of this project: debootstrap 23 s (first stage) + 407 s
(second stage, emulated), wheel download ~2 min (2.9 GB: PyPI's aarch64 torch needs its CUDA wheels to
import), wheel install 21 min (emulated pip), the six bundles 15 min, then 2-6 min per bundle and CPU (one S0
tower inference takes 10-40 s emulated): ~2.5 h in all the first time, ~1 h for a rerun of the check. The
results record the wall time of every step. Resumable: every finished step leaves a marker in the root and is
not redone (``--redo STEP`` forces one); the root's mc2export and the bundles are redone when the package
sources change; finished verifications are kept per source state and emulator (``--fresh`` reruns them).

Needs root (debootstrap, chroot, mounts) and ``apt-get install qemu-user-static binfmt-support debootstrap``.

    nice -n 15 python benchmarks/arm_verify.py                      # everything, ~2.5 h the first time
    nice -n 15 python benchmarks/arm_verify.py --steps env          # only build the root (resumable)
    python benchmarks/arm_verify.py --steps verify --cpus cortex-a76 # rerun the check on a built root
    python benchmarks/arm_verify.py --steps verify --qemu system --name arm_verify_qemu7   # bookworm's qemu

Results: ``benchmarks/results/arm_verify.{md,json}`` (``--name``).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PY = "3.11"  # bookworm's python3
WHEELS = ["torch==2.13.0", "onnxruntime==1.32.0", "setuptools>=68", "wheel"]
EXECUTORCH = "executorch==1.4.1"
LITERT = "ai-edge-litert==2.3.0"  # the interpreter only (verify needs no converter): aarch64 manylinux wheel
# executorch requires packages that have no wheel here: coremltools (no Linux aarch64 wheel; only exporting to
# ExecuTorch's Core ML backend uses it) and hydra-core / omegaconf (they need antlr4-python3-runtime, an sdist;
# the LLM export configs use them). The runtime needs neither: executorch goes in with --no-deps, beside the
# rest of its requirements.
NO_ARM_WHEEL = {"coremltools", "hydra-core", "omegaconf"}
# pip (23.x) does not widen an explicit --platform to older glibc tags: list every one a wheel may carry
PLATFORMS = [f"manylinux_2_{v}_aarch64" for v in range(28, 16, -1)] + ["manylinux2014_aarch64", "linux_aarch64"]
ENV_STEPS = ("debootstrap", "second-stage", "wheels", "install", "litert", "mc2export")
PRECISIONS = {"onnx": ("fp32", "fp16", "int8"), "executorch": ("fp32", "fp16", "int8"), "litert": ("fp32", "int8", "int8-static")}
BUNDLES = [(fmt, prec) for fmt, precs in PRECISIONS.items() for prec in precs]


def select_bundles(formats) -> list:
    """The (format, precision) pairs of ``formats`` (``--formats``: names of :data:`PRECISIONS`), in that order."""
    formats = [f for f in dict.fromkeys(formats) if f]
    bad = [f for f in formats if f not in PRECISIONS]
    if bad or not formats:
        raise SystemExit(f"arm_verify: --formats takes {', '.join(PRECISIONS)}, got {', '.join(bad) or 'nothing'}")
    return [(fmt, prec) for fmt in formats for prec in PRECISIONS[fmt]]
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
        if self.file.exists():  # another run of this script may have recorded a step meanwhile
            self.data = dict(json.loads(self.file.read_text()), **{k: v for k, v in self.data.items()})
        self.data[name] = {"seconds": round(seconds, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        os.replace(tmp, self.file)

    @contextlib.contextmanager
    def step(self, name: str, **info):
        log(f"{name} ...")
        t0 = time.monotonic()
        yield
        dt = time.monotonic() - t0
        self.record(name, dt, **info)
        log(f"{name}: {dt:.0f} s")


def run(cmd, check: bool = True, **kw) -> subprocess.CompletedProcess:
    log("$ " + " ".join(map(str, cmd)))
    return subprocess.run([str(c) for c in cmd], check=check, **kw)


def qemu_version(qemu: str = "qemu-aarch64-static") -> str:
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
    return out.splitlines()[0].strip() if out else "unknown"


def qemu_cpus(qemu: str = "qemu-aarch64-static") -> list:
    out = subprocess.run([qemu, "-cpu", "help"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines()[1:] if line.strip()]


# The emulator that runs the check. "system": the binfmt_misc one (bookworm's qemu-user-static 7.2). It
# mis-emulates an SVE instruction sequence of ONNX Runtime's fused int8 path (DynamicQuantizeMatMul): under
# QEMU_CPU=max a single quantized MatMul comes out at cosine 0.33 against x86, exact with max,sve=off and
# with qemu 10.0 (found by this script; benchmarks/results/arm_verify_qemu7.md). "trixie" (the default):
# qemu-user 10.0 from Debian trixie, fetched with apt-get download and unpacked into the root.
QEMU_SUITE = "trixie"


def trixie_qemu(root: Path) -> Path:
    """qemu-aarch64 of Debian trixie's qemu-user (a static binary), unpacked into ROOT/usr/local/bin."""
    dest = root / "usr" / "local" / "bin" / f"qemu-aarch64-{QEMU_SUITE}"
    if dest.is_file():
        return dest
    with tempfile.TemporaryDirectory(prefix="mc2export-qemu-") as d:
        d = Path(d)
        (d / "parts").mkdir()
        (d / "parts" / f"{QEMU_SUITE}.sources").write_text(
            f"Types: deb\nURIs: {MIRROR}\nSuites: {QEMU_SUITE}\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n")
        opts = ["-o", "Dir::Etc::sourcelist=/dev/null", "-o", f"Dir::Etc::sourceparts={d / 'parts'}",
                "-o", f"Dir::State::Lists={d / 'lists'}", "-o", f"Dir::Cache={d / 'cache'}"]
        for sub in ("lists/partial", "cache/archives/partial"):
            (d / sub).mkdir(parents=True)
        run(["apt-get", *opts, "update", "-qq"])
        run(["apt-get", *opts, "download", "qemu-user"], cwd=d)
        deb = next(d.glob("qemu-user_*.deb"))
        run(["dpkg-deb", "-x", deb, d / "x"])
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(d / "x" / "usr" / "bin" / "qemu-aarch64", dest)
    return dest


def resolve_qemu(root: Path, choice: str) -> Optional[Path]:
    """None for the system (binfmt) emulator, else the path of the emulator inside the root."""
    if choice == "system":
        return None
    if choice == QEMU_SUITE:
        return trixie_qemu(root)
    path = Path(choice).resolve()
    dest = root / "usr" / "local" / "bin" / path.name
    if not dest.is_file() or dest.read_bytes() != path.read_bytes():
        shutil.copy2(path, dest)
    return dest


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


def cpu_sysfs(root: Path) -> None:
    """A minimal /sys/devices/system/cpu in the root (possible / present / online, one folder per CPU).

    cpuinfo (inside ONNX Runtime, XNNPACK, PyTorch) needs it to initialize; without it ORT warns of
    "undetected CPU features" and picks its kernels blind. The host's own /sys cannot be bound in: with it
    (and the x86 /proc/cpuinfo that qemu-user 7.2 shows an arm64 process) cpuinfo crashes the process
    (SIGSEGV on `import onnxruntime`). The ISA features come from the auxiliary vector (AT_HWCAP), which qemu
    sets for the emulated CPU; there is no MIDR, so cpuinfo knows the features but not the core's name."""
    cpu = root / "sys" / "devices" / "system" / "cpu"
    n = len(re.findall(r"^processor\s*:", Path("/proc/cpuinfo").read_text(), re.M)) or os.cpu_count() or 1
    for i in range(n):
        (cpu / f"cpu{i}").mkdir(parents=True, exist_ok=True)
    for name in ("possible", "present", "online"):
        (cpu / name).write_text(f"0-{n - 1}\n" if n > 1 else "0\n")


@contextlib.contextmanager
def mounted(root: Path):
    """/proc and /dev inside the root while commands run there (python, pip and the runtimes read them)."""
    cpu_sysfs(root)
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


def in_root(root: Path, cmd, env=None, qemu: Optional[Path] = None, cpu: Optional[str] = None,
            **kw) -> subprocess.CompletedProcess:
    """``cmd`` inside the root, with a clean environment. Through binfmt_misc (``QEMU_CPU`` selects the CPU),
    or, with ``qemu`` (a static x86 binary inside the root), started by that emulator directly: then ``cmd[0]``
    must be the absolute path of an arm64 binary (its own exec calls would go back to binfmt_misc)."""
    e = dict(CHROOT_ENV, **(env or {}))
    if qemu is None:
        e.update({"QEMU_CPU": cpu} if cpu else {})
        return run(["chroot", root, "/usr/bin/env", "-i", *[f"{k}={v}" for k, v in e.items()], *cmd], **kw)
    inside = "/" + qemu.relative_to(root).as_posix()
    return run(["chroot", root, inside, *(["-cpu", cpu] if cpu else []), *cmd], env=e, **kw)


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
        if not steps.done("litert"):  # a step of its own: roots built before LiteRT bundles gain it
            with steps.step("litert"):
                download(wheels, [LITERT])
                in_root(root, ["pip", "install", "--quiet", "--no-index", "--find-links", "/opt/wheels", LITERT])
        stamp = source_stamp()
        if not steps.done("mc2export") or steps.data["mc2export"].get("source") != stamp:
            with steps.step("mc2export", source=stamp):
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


def checkout_files(*under: str) -> list:
    """This checkout's files (tracked, or new and not ignored), relative paths."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", *under], cwd=REPO,
                         capture_output=True, check=True).stdout.decode().split("\0")
    return sorted(rel for rel in out if rel and (REPO / rel).is_file())


def source_stamp() -> str:
    """A hash of the package sources, model cards and pyproject: bundles and the root's install are redone when
    it changes (this script is a check of the *current* export code)."""
    h = hashlib.sha256()
    for rel in checkout_files("mc2export", "models", "pyproject.toml"):
        h.update(rel.encode() + b"\0" + (REPO / rel).read_bytes())
    return h.hexdigest()[:16]


def install_mc2export(root: Path) -> None:
    """This checkout's files copied in and installed (no build isolation: the root is offline)."""
    dst = root / "opt" / "mc2export"
    if dst.exists():
        shutil.rmtree(dst)
    for rel in checkout_files():
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst / rel)
    in_root(root, ["pip", "install", "--quiet", "--no-index", "--find-links", "/opt/wheels", "--no-deps",
                   "--no-build-isolation", "/opt/mc2export"])


# -- the bundles (exported on the host) and the check (inside the root) ------------------------------------

def bundle_name(fmt: str, precision: str) -> str:
    return f"mobileclip2-s0-{fmt}-{precision}"


def export_bundles(root: Path, steps: Steps, bundles=BUNDLES) -> Path:
    """The S0 bundles, exported on the host from the fidelity kit's S0 weights into ROOT/opt/bundles
    (reused while the sources are unchanged)."""
    out = root / "opt" / "bundles"
    stamp = source_stamp()
    names = [bundle_name(f, p) for f, p in bundles]
    record = Steps(out, set())  # kept beside the bundles (the environment's steps are the root's)
    record.file = out / "bundles.json"
    record.data = json.loads(record.file.read_text()) if record.file.exists() else {}
    if (record.done("bundles") and record.data["bundles"].get("source") == stamp
            and all((out / n / "config.json").is_file() for n in names)):
        steps.data["bundles"] = record.data["bundles"]
        return out
    sys.path.insert(0, str(REPO / "benchmarks"))
    from export_all import kit_checkpoint

    try:
        import mc2export  # noqa: F401
    except ImportError:
        sys.exit("arm_verify: run this script with the Python that has mc2export installed (. .venv/bin/activate)")
    out.mkdir(parents=True, exist_ok=True)
    ckpt = kit_checkpoint("mobileclip2-s0", out)
    weights = ["--checkpoint", str(ckpt)] if ckpt else ["--random-weights"]
    each = {}
    # LiteRT's fp32 and int8 share one float conversion (the slow step)
    os.environ.setdefault("MC2EXPORT_LITERT_CACHE", str(root / "opt" / "litert-conversions"))
    with record.step("bundles", source=stamp, seconds_each=each,
                    weights="fidelity kit MobileCLIP2-S0 (seed 0)" if ckpt else "random"):
        for fmt, prec in bundles:
            t0 = time.monotonic()
            run([sys.executable, "-m", "mc2export.cli", fmt, "--variant", "s0", "--precision", prec, *weights,
                 "--out", out / bundle_name(fmt, prec), "--force", "-q"], stdout=subprocess.DEVNULL)
            each[bundle_name(fmt, prec)] = round(time.monotonic() - t0, 1)
    if ckpt:
        Path(ckpt).unlink()
    steps.data["bundles"] = record.data["bundles"]
    return out


def verify_in_root(root: Path, name: str, cpu: str, threads: int, results: Path, qemu: Optional[Path]) -> dict:
    """``mc2export verify`` on one bundle inside the root on the emulated ``cpu``; the report plus wall time."""
    dest = results / cpu / f"{name}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    inside = "/" + dest.relative_to(root).as_posix()
    t0 = time.monotonic()
    proc = in_root(root, ["/opt/venv/bin/python3", "-m", "mc2export.cli", "verify", f"/opt/bundles/{name}",
                          "--threads", str(threads), "--json", inside, "-q"], qemu=qemu, cpu=cpu, check=False,
                   capture_output=True, text=True)
    seconds = round(time.monotonic() - t0, 1)
    report = json.loads(dest.read_text()) if dest.is_file() else {}
    sys.stderr.write(proc.stdout + proc.stderr)
    return {"exit_code": proc.returncode, "wall_seconds": seconds, "report": report,
            "stderr_tail": proc.stderr.strip().splitlines()[-3:]}


def verify_on_host(bundles: Path, name: str) -> dict:
    """The same check on this x86 host: the side-by-side reference."""
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.run([sys.executable, "-m", "mc2export.cli", "verify", str(bundles / name), "--json",
                               f"{d}/v.json", "-q"], capture_output=True, text=True)
        report = json.loads(Path(d, "v.json").read_text()) if Path(d, "v.json").is_file() else {}
    return {"exit_code": proc.returncode, "report": report}


def run_checks(root: Path, steps: Steps, cpus, threads: int, fresh: bool, qemu: Optional[Path],
               selected=BUNDLES) -> dict:
    bundles = export_bundles(root, steps, selected)
    stamp = source_stamp()
    emulator = qemu_version(str(qemu) if qemu else "qemu-aarch64-static")
    results = root / "opt" / "results" / stamp / re.sub(r"[^0-9A-Za-z.]+", "-", emulator.split("(")[0].strip())
    if fresh and results.exists():
        shutil.rmtree(results)
    runs = {}
    with mounted(root):
        for cpu in cpus:
            for fmt, prec in selected:
                name = bundle_name(fmt, prec)
                done = results / cpu / f"{name}.run.json"  # resumable: a finished run is kept
                if done.is_file():
                    runs[cpu, name] = json.loads(done.read_text())
                    continue
                log(f"verify {name} on the emulated {cpu} ...")
                r = verify_in_root(root, name, cpu, threads, results, qemu)
                log(f"verify {name} on the emulated {cpu}: exit {r['exit_code']} in {r['wall_seconds']:.0f} s")
                if r["exit_code"] in (0, 3, 4):  # a crash (a signal) is not kept: the next run retries it
                    done.write_text(json.dumps(r))
                runs[cpu, name] = r
    host = {name: verify_on_host(bundles, name) for name in (bundle_name(f, p) for f, p in selected)}
    return {"runs": runs, "host": host, "source": stamp, "qemu": emulator,
            "started_by": "binfmt_misc" if qemu is None else "the emulator run directly inside the chroot"}


def write_results(out_dir: Path, cpus, checks: dict, steps: Steps, threads: int, stem: str = "arm_verify",
                  selected=BUNDLES) -> None:
    qemu = checks["qemu"]
    rows, doc_runs = [], []
    for cpu in cpus:
        for fmt, prec in selected:
            name = bundle_name(fmt, prec)
            r = checks["runs"][cpu, name]
            rep = r["report"]
            host = checks["host"][name]["report"]
            for tower in ("image", "text"):
                t = (rep.get("towers") or {}).get(tower, {})
                h = (host.get("towers") or {}).get(tower, {})
                rows.append((cpu, fmt, prec, tower, t.get("cosine_min"), t.get("max_abs_over_std"),
                             h.get("cosine_min"), (rep.get("tolerance") or {}).get("cosine_min"),
                             t.get("verdict") or rep.get("status") or f"exit {r['exit_code']}",
                             (t.get("seconds") or {}).get("run")))
            doc_runs.append({"cpu": cpu, "bundle": name, "format": fmt, "precision": prec,
                             "exit_code": r["exit_code"], "wall_seconds": r["wall_seconds"],
                             "status": rep.get("status"), "tolerance": rep.get("tolerance"),
                             "cpu_features_detected": (rep.get("device") or {}).get("cpu_features_detected"),
                             "arch": (rep.get("device") or {}).get("arch"), "runtime": rep.get("runtime"),
                             "towers": rep.get("towers") or {},
                             "host_x86": {k: {f: v.get(f) for f in ("cosine_min", "max_abs_over_std")}
                                          for k, v in (host.get("towers") or {}).items()}})
    features = {cpu: next((d["cpu_features_detected"] for d in doc_runs
                           if d["cpu"] == cpu and d["cpu_features_detected"]), None) for cpu in cpus}
    doc = {"script": "benchmarks/arm_verify.py", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "qemu": qemu, "cpus": list(cpus), "threads": threads, "host": {"machine": platform.machine(),
                                                                           "cpu": _host_cpu()},
           "suite": f"Debian {SUITE} arm64", "source": checks["source"], "commit": _commit(), "steps": steps.data,
           "cpu_features_detected": features, "runs": doc_runs,
           "all_hold": all(d["exit_code"] == 0 for d in doc_runs)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")
    f = lambda x, n=7: "-" if x is None else f"{x:.{n}f}"  # noqa: E731
    lines = ["# ARM check: `mc2export verify` on MobileCLIP2-S0 bundles under emulated arm64 CPUs", "",
             f"`benchmarks/arm_verify.py`, {doc['created']}: Debian {SUITE} arm64 root under {qemu} "
             f"(user mode, {checks.get('started_by', 'binfmt_misc')}), aarch64 wheels of torch / onnxruntime / "
             f"executorch / ai-edge-litert from PyPI; bundles exported on the x86 host ({doc['host']['cpu']}) from the fidelity kit's "
             f"S0 weights; {threads} threads; package sources {doc['source']} (commit {doc['commit']}). "
             "`cosine min (x86)`: `mc2export verify` of the same bundle on the host.",
             "", "CPU features the emulated CPUs expose (numpy's runtime detection, from the auxiliary vector; numpy "
             "names no SVE2 / i8mm / bf16, which `max` also has):", ""]
    lines += [f"- `{cpu}`: {', '.join(feats or ['?'])}" for cpu, feats in features.items()]
    lines += ["", "| CPU | format | precision | tower | cosine min (ARM) | max-abs / std (ARM) | cosine min (x86) | "
              "tolerance (cos ≥) | verdict | run s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for cpu, fmt, prec, tower, cos, mas, hcos, tol, verdict, secs in rows:
        lines.append(f"| {cpu} | {fmt} | {prec} | {tower} | {f(cos)} | {'-' if mas is None else f'{mas:.1e}'} | "
                     f"{f(hcos)} | {tol} | {verdict} | {'-' if secs is None else f'{secs:.0f}'} |")
    lines += ["", "Wall time of each step (seconds; a step reused from an earlier run keeps the time it took then):",
              "", "| step | seconds | finished |", "|---|---|---|"]
    lines += [f"| {k} | {v['seconds']:.0f} | {v.get('finished', '')} |" for k, v in steps.data.items()]
    lines += ["", "| CPU | bundle | exit | wall s (incl. start-up under emulation) |", "|---|---|---|---|"]
    lines += [f"| {d['cpu']} | {d['bundle']} | {d['exit_code']} | {d['wall_seconds']:.0f} |" for d in doc_runs]
    lines += ["", "All hold." if doc["all_hold"] else "NOT all hold: see the rows above.", ""]
    (out_dir / f"{stem}.md").write_text("\n".join(lines))
    log(f"wrote {out_dir / stem}.md and {stem}.json")


def _commit() -> str:
    """HEAD of this checkout (the results' ``source`` hash says which package sources ran)."""
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def _host_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path("/work/arm64"), help="the arm64 root (outside the repo)")
    ap.add_argument("--steps", default="env,bundles,verify", help="env, bundles, verify (comma separated)")
    ap.add_argument("--redo", default="", help=f"environment steps to redo: {', '.join(ENV_STEPS)}")
    ap.add_argument("--formats", default=",".join(PRECISIONS), help="bundle formats to check: "
                    + ", ".join(f"{k} ({'/'.join(v)})" for k, v in PRECISIONS.items()))
    ap.add_argument("--cpus", default="max,cortex-a76", help="QEMU_CPU values (qemu-aarch64-static -cpu help)")
    ap.add_argument("--threads", type=int, default=2, help="threads of the runtimes inside the root")
    ap.add_argument("--fresh", action="store_true", help="rerun every verification (default: keep finished ones)")
    ap.add_argument("--qemu", default=QEMU_SUITE, help=f"the emulator: {QEMU_SUITE} (Debian {QEMU_SUITE}'s qemu-user, "
                    "fetched into the root), system (binfmt_misc: bookworm's qemu-user-static) or a path to a static "
                    "qemu-aarch64")
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--name", default="arm_verify", help="results file names: NAME.md, NAME.json")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("arm_verify: needs root (debootstrap, chroot, mount)")
    todo = set(args.steps.split(","))
    selected = select_bundles(args.formats.split(","))
    root = args.root.resolve()
    steps = Steps(root, set(filter(None, args.redo.split(","))))
    cpus = [c for c in args.cpus.split(";" if ";" in args.cpus else ",") if c]  # ';' when a CPU has properties
    if "env" in todo:
        build_env(root, steps)
    if "verify" in todo or "bundles" in todo:
        if "verify" not in todo:
            export_bundles(root, steps, selected)
            return 0
        qemu = resolve_qemu(root, args.qemu)
        offered = qemu_cpus(str(qemu) if qemu else "qemu-aarch64-static")
        bad = [c for c in cpus if c.split(",")[0] not in offered]
        if bad:
            sys.exit(f"arm_verify: this qemu offers no CPU {', '.join(bad)}: choose from {', '.join(offered)}")
        checks = run_checks(root, steps, cpus, args.threads, args.fresh, qemu, selected)
        write_results(args.results, cpus, checks, steps, args.threads, args.name, selected)
        return 0 if all(r["exit_code"] == 0 for r in checks["runs"].values()) else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
