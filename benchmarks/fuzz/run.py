#!/usr/bin/env python3
"""Run one fuzz target under atheris (libFuzzer): ``python benchmarks/fuzz/run.py TARGET [flags]``.

Targets and what may escape them: benchmarks/fuzz/targets.py. The committed seed corpus is
benchmarks/fuzz/corpus/TARGET (read-only here: pass a second, writable folder to keep what a campaign finds,
e.g. ``run.py bundle /tmp/c-bundle benchmarks/fuzz/corpus/bundle -max_total_time=3600 -rss_limit_mb=2048
-timeout=10``). A short run, as in CI: ``run.py tar -runs=500``. Campaign figures: benchmarks/results/fuzz.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(include=["mc2export"]):
    import mc2export.bench.report  # noqa: F401
    import mc2export.bench.schema  # noqa: F401
    import mc2export.checkpoint  # noqa: F401
    import mc2export.export.bundle  # noqa: F401
    import mc2export.export.reading  # noqa: F401
    import mc2export.export.vectors  # noqa: F401
    import mc2export.preprocess  # noqa: F401
    import mc2export.tokenizer  # noqa: F401
    import mc2export.train.data  # noqa: F401

from targets import CORPUS, TARGETS  # noqa: E402


def run_all(runs: dict, workdir: str) -> int:
    """Each target for its number of runs (a fork per target, after the imports: what CI runs); 0 if all held."""
    import os

    failed = []
    for name, n in runs.items():
        pid = os.fork()
        if pid == 0:
            folder = os.path.join(workdir, name)
            os.makedirs(folder, exist_ok=True)
            atheris.Setup([sys.argv[0], f"-runs={n}", "-seed=1", "-timeout=10", "-rss_limit_mb=2048", folder,
                           str(CORPUS / name)], TARGETS[name])
            atheris.Fuzz()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            failed.append(name)
    print(f"fuzz targets that failed: {', '.join(failed) or 'none'}", file=sys.stderr, flush=True)
    return 1 if failed else 0


def main(argv) -> None:
    if len(argv) >= 2 and argv[1] == "--all":  # run.py --all WORKDIR [target=runs ...]
        runs = dict((kv.split("=")[0], int(kv.split("=")[1])) for kv in argv[3:]) or {t: 300 for t in TARGETS}
        sys.exit(run_all(runs, argv[2]))
    import os

    if len(argv) >= 2 and argv[1] in TARGETS:
        name, args = argv[1], [argv[0]] + argv[2:]
        os.environ["MC2EXPORT_FUZZ_TARGET"] = name  # libFuzzer's -merge / -jobs children run us without it
    elif os.environ.get("MC2EXPORT_FUZZ_TARGET") in TARGETS:
        name, args = os.environ["MC2EXPORT_FUZZ_TARGET"], list(argv)
    else:
        sys.exit(f"usage: run.py TARGET [libFuzzer flags and corpus folders]; targets: {', '.join(TARGETS)}")
    if not any(not a.startswith("-") for a in args[1:]):
        import tempfile

        # libFuzzer adds what it finds to the first folder: a temporary one, the committed seeds stay as they are
        args += [tempfile.mkdtemp(prefix=f"mc2export-fuzz-{name}-"), str(CORPUS / name)]
    atheris.Setup(args, TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
