"""A short run of every fuzz harness (benchmarks/fuzz, atheris): the committed seeds plus a fixed number of
mutations; any exception other than the target's documented error type fails (libFuzzer exits non-zero).
The long campaigns and their figures: benchmarks/results/fuzz.md."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNS = {"bundle": 150, "checkpoint": 400, "tokenizer": 400, "image": 300, "tar": 400, "results": 300}


def test_atheris_is_installed():
    import atheris  # noqa: F401  (the test extra installs it: a wheel on Linux x86-64 / arm64, CPython 3.8-3.12)


def test_every_fuzz_target_short_run(tmp_path):
    """One process (the imports once), a fork per target: ``run.py --all DIR target=runs ...``."""
    sys.path.insert(0, str(REPO / "benchmarks" / "fuzz"))
    try:
        from targets import CORPUS, TARGETS
    finally:
        sys.path.pop(0)
    assert set(TARGETS) == set(RUNS) and all(any((CORPUS / t).iterdir()) for t in RUNS)
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fuzz" / "run.py"), "--all", str(tmp_path),
                           *(f"{t}={n}" for t, n in RUNS.items())], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path, env={**os.environ, "MC2EXPORT_FUZZ_WORK": str(tmp_path)})
    tail = proc.stderr[-4000:]
    assert proc.returncode == 0 and "fuzz targets that failed: none" in proc.stderr, tail
    for t, n in RUNS.items():
        assert f"Done {n} runs" in proc.stderr, tail
    assert "pwned" not in proc.stdout  # the checkpoint seed's pickled object was never called


def test_fuzz_finding_damaged_pickle_is_one_line(tmp_path):
    """Campaign finding (benchmarks/results/fuzz.md): torch's weights-only unpickler raised IndexError on a
    5-byte pickle (PROTO 2, TUPLE1 on an empty stack); read_checkpoint let it escape."""
    from mc2export.checkpoint import read_checkpoint
    from mc2export.errors import UserError

    p = tmp_path / "w.pt"
    p.write_bytes(b"\x80\x02\x85.")
    with pytest.raises(UserError, match="truncated or corrupt \\(IndexError"):
        read_checkpoint(p)
