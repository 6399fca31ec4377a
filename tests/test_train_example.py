"""The tiny end-to-end experiment runs (slow: several minutes; the recorded run is in benchmarks/results)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from test_train_support import REPO


@pytest.mark.slow
def test_train_tiny_quick_pipeline(tmp_path):
    r = subprocess.run([sys.executable, str(REPO / "examples" / "train_tiny" / "run.py"), "--quick", "--out",
                        str(tmp_path)], capture_output=True, text=True, timeout=1800,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-3000:] + r.stdout[-2000:]
    record = json.loads(r.stdout[r.stdout.index("\n{\n") + 1:])  # the record printed last
    assert set(record["zeroshot_top1"]) == {"student_distilled", "student_clip_only", "student_clip_syn"}
    for run in ("teacher", "student_distilled", "student_clip_only", "student_clip_syn"):
        assert (tmp_path / run / "model.safetensors").is_file() and (tmp_path / run / "stage.json").is_file()
    manifest = json.loads((tmp_path / "dr" / "dataset.json").read_text())
    assert manifest["captioner"] == "shapes:describe" and manifest["num_aug"] == 2
