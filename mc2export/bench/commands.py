"""CLI: ``mc2export bench``, ``mc2export verify`` and ``mc2export bench-report`` (registered by ``mc2export/cli.py``)."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import UserError

DEVICES = ("host", "android", "ios")
ThreadsOpt = typer.Option(None, "--threads", "-t", min=1, help="CPU threads (default: all CPUs this process may use).")


def register(app: typer.Typer, command) -> None:
    @command("bench")
    def bench(bundles: List[Path] = typer.Argument(..., help="Bundle folders written by `mc2export onnx|executorch|"
                                                   "coreml --out DIR`."),
              runtime: Optional[List[str]] = typer.Option(None, "--runtime", "-r", help="onnxruntime, executorch, "
                                                          "coreml (macOS), openvino, litert, torch, torch-unfolded; repeatable. "
                                                          "Default: the bundle's own format's runtime."),
              threads: Optional[int] = ThreadsOpt,
              compute_units: Optional[str] = typer.Option(None, "--compute-units", help="Core ML: all, cpu-ne, "
                                                          "cpu-gpu, cpu (default all)."),
              mode: str = typer.Option("quick", "--mode", "-m", help="quick (>=20 calls and >=2 s, p50), modelbench "
                                       "(20 rounds x 50, 1 warm-up each, trim 10/10), mlperf (>=1024 calls and "
                                       ">=60 s, p90)."),
              iterations: Optional[int] = typer.Option(None, help="Override the mode's minimum timed calls (per round "
                                                       "for modelbench); the result is marked non-standard."),
              seconds: Optional[float] = typer.Option(None, help="Override the mode's minimum duration (s)."),
              warmup: Optional[int] = typer.Option(None, help="Override the mode's warm-up calls."),
              rounds: Optional[int] = typer.Option(None, help="Override modelbench's rounds."),
              towers: Optional[str] = typer.Option(None, help="image, text or image,text (default: what the bundle "
                                                   "holds)."),
              device: str = typer.Option("host", "--device", "-d", help="host (this machine), android (adb + "
                                         "executor_runner, or --app), ios (xcrun devicectl + the sample app)."),
              serial: Optional[str] = typer.Option(None, help="Android: adb serial (when several are connected)."),
              runner: Optional[Path] = typer.Option(None, help="Android: local arm64 build of ExecuTorch's "
                                                    "executor_runner (LiteRT bundles: LiteRT's benchmark_model) to "
                                                    "push."),
              adb: str = typer.Option("adb", help="Android: the adb executable."),
              app: Optional[str] = typer.Option(None, help="Android package / iOS bundle id of the sample app: run its "
                                                "benchmark mode instead of executor_runner."),
              udid: Optional[str] = typer.Option(None, help="iOS: device UDID (when several are paired)."),
              checkpoint: Optional[Path] = typer.Option(None, help="torch / torch-unfolded: weights to rebuild the "
                                                        "model from (default: the bundle's record, else random)."),
              isolate: bool = typer.Option(True, help="Measure each tower in a fresh process (true cold load, "
                                           "per-tower peak memory)."),
              verify: bool = typer.Option(True, help="Re-hash the bundle's files against config.json first."),
              vectors: bool = typer.Option(True, help="Android: run the bundle's verification vectors (verify/) on the "
                                           "device first; outputs outside the tolerance fail the run (exit 3)."),
              json_out: Optional[Path] = typer.Option(None, "--json", help="Write the results (schema: "
                                                      "mc2export/bench/schema.json)."),
              csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write the results as CSV (one row per "
                                                     "tower + one summed row)."),
              quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines.")):
        """Latency of exported bundles (load, warm-up, p50/p90/p99, memory) against the paper's targets."""
        from .. import signals
        from ..outputs import output_file, outside
        from .harness import bench_bundle, check_threads, document, table, write_csv, write_json
        from .schema import validate
        from .stats import get_mode

        m = get_mode(mode, iterations=iterations, seconds=seconds, warmup=warmup, rounds=rounds)
        if device not in DEVICES:
            raise UserError(f"unknown --device '{device}': choose one of {', '.join(DEVICES)}")
        json_out = output_file(json_out, "--json") if json_out is not None else None
        csv_out = output_file(csv_out, "--csv") if csv_out is not None else None
        for path, option in ((json_out, "--json"), (csv_out, "--csv")):
            if path is not None:
                outside(path, bundles, option)
        if device == "host":
            check_threads(threads)  # before the bundles are hashed

        def log(msg: str) -> None:
            signals.check()
            if not quiet:
                typer.echo(msg, err=True)

        results = []
        runtimes_ = list(runtime or [None])
        from .bundles import load_bundle

        if device == "host":
            from .harness import check_bundle
            from .runtimes import require

            for rt in runtimes_:  # fail early, before anything is measured
                if rt is not None:
                    require(rt, compute_units)
            loaded = [load_bundle(b, verify=verify) for b in bundles]
            plan = [(b, check_bundle(b, rt, compute_units)) for b in loaded for rt in runtimes_]
            for b, rt in plan:
                log(f"[mc2export] bench {b.path} ({rt})")
                results.append(bench_bundle(b, rt, threads=threads, compute_units=compute_units, mode=m,
                                                towers=towers, isolate=isolate, checkpoint=checkpoint,
                                                verify=verify, log=log))
        elif device == "android":
            from .android import bench_android, bench_android_app

            loaded = [load_bundle(b, verify=verify) for b in bundles]
            on_device = {"litert": "litert"}  # bundle format -> its runtime over adb (else ExecuTorch's runner)
            if any(rt not in (None, "executorch", "litert") for rt in runtimes_) and not app:
                raise UserError("--device android runs ExecuTorch bundles with executor_runner and LiteRT bundles with "
                                "benchmark_model: drop --runtime (other runtimes: the sample app, --app PACKAGE)")
            from .android import connect

            serial = connect(adb, serial).serial  # fail early: no adb, no device, several devices
            for b in loaded:
                log(f"[mc2export] bench {b.path} on Android ({serial})")
                if app:
                    results += bench_android_app(b, package=app, mode=m, threads=threads, serial=serial, adb=adb,
                                                 verify=verify, log=log)["results"]
                else:
                    from .verify import OutputsDisagree

                    try:
                        if on_device.get(b.format) == "litert":
                            from .android_litert import bench_android_litert

                            results.append(bench_android_litert(b, mode=m, threads=threads, serial=serial,
                                                                runner=str(runner) if runner else None, adb=adb,
                                                                towers=towers, verify=verify, log=log))
                            continue
                        results.append(bench_android(b, mode=m, threads=threads, serial=serial,
                                                     runner=str(runner) if runner else None, adb=adb, towers=towers,
                                                     verify=verify, vectors=vectors, log=log))
                    except OutputsDisagree as e:
                        for line in e.lines:
                            typer.echo(line, err=True)
                        typer.echo(f"bench stopped: {b.path} computes wrong outputs on the device (nothing was "
                                   "timed)", err=True)
                        raise typer.Exit(3)
        else:
            from .apple import bench_ios, require_macos

            require_macos()
            if not app:
                raise UserError("--device ios needs --app BUNDLE_ID: the iOS sample app's bundle identifier")
            loaded = [load_bundle(b, verify=verify) for b in bundles]
            for b in loaded:
                log(f"[mc2export] bench {b.path} on iOS")
                results += bench_ios(b, bundle_id=app, mode=m, udid=udid, verify=verify, log=log)["results"]
        doc = document(results, command="mc2export " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
        validate(doc, what="the results just measured")
        typer.echo(table(results))
        if json_out is not None:
            write_json(doc, json_out)
            typer.echo(f"wrote {json_out}")
        if csv_out is not None:
            write_csv(results, csv_out)
            typer.echo(f"wrote {csv_out}")

    @command("verify")
    def verify(bundle: Path = typer.Argument(..., help="Bundle folder written by `mc2export onnx|executorch|coreml|"
                                             "openvino --out DIR`."),
               runtime: Optional[str] = typer.Option(None, "--runtime", "-r", help="onnxruntime, executorch, openvino, "
                                                     "litert, coreml (macOS): a runtime that runs the bundle's files. "
                                                     "Default: the bundle's own format's runtime."),
               threads: Optional[int] = ThreadsOpt,
               json_out: Optional[Path] = typer.Option(None, "--json", help="Write the report (figures per tower and "
                                                       "row, runtime, device) to this file."),
               quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines.")):
        """Check a bundle's models on its verification vectors (verify/) in this machine's runtime.

        Exit codes: 0 every tower holds its precision's tolerance; 3 one does not (stderr names the tower and
        the figures); 4 the bundle cannot run here (e.g. Core ML off macOS, runtime not installed): nothing
        was checked; 2 bad input (not a bundle, checksums do not match config.json, no verify/ vectors)."""
        from ..outputs import output_file, outside
        from .harness import write_json
        from .verify import CANNOT_RUN, failures, table, verify_bundle

        json_out = output_file(json_out, "--json") if json_out is not None else None
        if json_out is not None:
            outside(json_out, [bundle], "--json")
        log = (lambda s: None) if quiet else (lambda s: typer.echo(s, err=True))
        log(f"[mc2export] verify {bundle}")
        report = verify_bundle(bundle, runtime, threads=threads, log=log)
        if json_out is not None:
            write_json(report, json_out)
        if report["status"] == CANNOT_RUN:
            typer.echo(f"cannot run here (nothing was verified): {report['reason']}", err=True)
        else:
            typer.echo(table(report))
            for line in failures(report):
                typer.echo(line, err=True)
        if json_out is not None:
            typer.echo(f"wrote {json_out}", err=True)
        raise typer.Exit(report["exit_code"])

    @command("bench-report")
    def bench_report(results: List[Path] = typer.Argument(..., help="Results files (`mc2export bench --json`, "
                                                          "or a sample app's benchmark JSON)."),
                     out: Path = typer.Option(..., "--out", "-o", help="Folder for report.md, latency.svg, "
                                              "merged.json, merged.csv."),
                     keep_all: bool = typer.Option(False, help="Keep every result (default: the newest of each "
                                                   "variant x runtime x settings x device)."),
                     title: str = typer.Option("mc2export latency", help="Report title.")):
        """Merge benchmark results into a markdown table and an SVG plot (target band shaded)."""
        from .report import write_report

        info = write_report(results, out, keep_all=keep_all, title=title)
        typer.echo(info["markdown"])
        typer.echo(f"merged {info['results']} result(s) into " + ", ".join(info["files"]))


__all__ = ["register"]
