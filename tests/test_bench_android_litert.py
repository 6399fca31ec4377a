"""``mc2export bench --device android`` for LiteRT bundles: LiteRT's ``benchmark_model`` over adb, tested with
replayed outputs (tests/fixtures/bench: the program's output format, illustrative numbers). Needs no LiteRT."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from mc2export.bench import android_litert as AL
from mc2export.bench import schema, stats
from mc2export.bench.harness import document
from mc2export.errors import UserError
from mc2export.export import vectors
from mc2export.export.reading import BUNDLE_VERSION, write_config
from test_bench_units import phone_reply  # noqa: E402  (the replayed phone's common adb answers)

FIX = Path(__file__).parent / "fixtures" / "bench"


def litert_bundle(folder: Path) -> Path:
    """Stand-in .tflite files (never run) in a bundle whose checksums match."""
    from test_verify import rewrite_checksums

    folder.mkdir(parents=True)
    models = {}
    for t in ("image", "text"):
        (folder / f"{t}.tflite").write_bytes(b"stand-in " + t.encode())
        models[t] = {"file": f"{t}.tflite", "files": [f"{t}.tflite"], "signature": "serving_default"}
    rng = np.random.default_rng(0)
    vectors.write(folder, precision="int8", tolerance={"cosine_min": 0.99}, normalized=True, embed_dim=8,
                  image=(rng.integers(0, 256, (16, 4, 4, 3), dtype=np.uint8), rng.normal(size=(16, 8))),
                  text=(rng.integers(0, 49408, (24, 77), dtype=np.int32), rng.normal(size=(24, 8)),
                        [f"t{i}" for i in range(24)]))
    cfg = {"format": "mc2export-bundle", "bundle_version": BUNDLE_VERSION, "runtime": "litert",
           "variant": "mobileclip2-s0", "precision": "int8", "batch": 1, "resolution": 4, "context_length": 77,
           "embed_dim": 8, "models": models,
           "versions": {"ai-edge-litert": "2.3.0"}, "weights": {"source": "random", "random_weights": True},
           "validation": "validation.json"}
    (folder / "validation.json").write_text("{}")
    write_config(folder, cfg)
    rewrite_checksums(folder)
    return folder


class FakeAdb:
    """Replays a phone: adb devices / getprop / cpuinfo, and benchmark_model printing the fixture's format with
    ``count`` timed runs of 21 ms (first invocation init 98.8 ms, later ones 40 ms)."""

    def __init__(self, fail: bool = False):
        self.calls, self.files, self.fail, self.invocations = [], {}, fail, 0

    def benchmark_output(self, runs: int) -> str:
        if self.fail:
            return (FIX / "benchmark_model_fail.txt").read_text()
        text = (FIX / "benchmark_model_xnnpack.txt").read_text()
        text = text.replace("count=20 first=21200", f"count={runs} first=21200")
        if self.invocations:
            text = text.replace("Init: 98765", "Init: 40000")
        return text

    def __call__(self, args, timeout):
        self.calls.append(args)
        if args[1:] == ["devices", "-l"]:
            return 0, (FIX / "adb_devices_one.txt").read_text(), ""
        reply = phone_reply(args, self.files)
        if reply is not None:
            return reply
        cmd = args[4]
        m = re.search(r"--graph=(\S+) --num_runs=(\d+)", cmd)
        if m:
            out = self.benchmark_output(int(m.group(2)))
            self.invocations += 1
            return (1 if self.fail else 0), out, ""
        return 0, "", ""


def test_parse_benchmark_output():
    r = AL.parse_benchmark_output((FIX / "benchmark_model_xnnpack.txt").read_text())
    assert r["runs"] == 20 and r["avg_ms"] == pytest.approx(21.0) and r["min_ms"] == pytest.approx(20.5)
    assert r["init_ms"] == pytest.approx(98.765) and r["first_inference_ms"] == pytest.approx(52.1)
    assert r["peak_mb"] == pytest.approx(82.4375) and r["threads"] == 4 and r["xnnpack"] and r["error"] is None
    bad = AL.parse_benchmark_output((FIX / "benchmark_model_fail.txt").read_text())
    assert bad["avg_ms"] is None and "Didn't find op for builtin opcode 'GELU'" in bad["error"]


def test_benchmark_command():
    cmd = AL.benchmark_command("/data/local/tmp/mc2export/abc", "image.tflite", 25, 3, threads=4)
    assert cmd.startswith("cd /data/local/tmp/mc2export/abc && ./benchmark_model --graph=image.tflite --num_runs=25 ")
    assert "--min_secs=0" in cmd and "--warmup_runs=3" in cmd and "--use_xnnpack=true" in cmd
    assert cmd.endswith("--num_threads=4")
    assert "--use_gpu=true" in AL.benchmark_command("/d", "t.tflite", 1, 0, gpu=True)


def test_android_litert_flow_replayed(tmp_path):
    b = litert_bundle(tmp_path / "lt")
    runner = tmp_path / "benchmark_model"
    runner.write_bytes(b"\x7fELF stand-in")
    adb = FakeAdb()
    r = AL.bench_android_litert(b, mode=stats.get_mode("quick"), threads=4, runner=str(runner), run=adb)
    assert schema.errors(document([r])) == []
    assert sorted(p.rsplit("/", 1)[1] for p in adb.files) == ["benchmark_model", "image.tflite", "text.tflite"]
    runs = [c[4] for c in adb.calls if len(c) > 4 and "--num_runs" in c[4]]
    assert len(runs) == 2 * (1 + AL.INVOCATIONS)  # per tower: a probe (cold load) + the measured invocations
    assert "--num_runs=5" in runs[0] and "--num_runs=20" in runs[1]  # ceil(ceil(2 s / 21 ms) / 5) = 20
    img = r["towers"]["image"]
    assert img["samples_aggregate"] and len(img["samples_ms"]) == AL.INVOCATIONS and img["iterations"] == 100
    assert img["load_ms"] == {"cold": pytest.approx(98.765), "warm": 40.0, "first_inference": pytest.approx(52.1)}
    assert img["stats"]["p50"] == pytest.approx(21.0) and img["memory"]["peak_rss_mb"] == pytest.approx(82.4375)
    assert r["runtime"]["name"] == "litert" and r["runtime"]["runner"] == "benchmark_model"
    assert r["verification"]["status"] == "not-run" and "--app" in r["verification"]["reason"]
    assert r["device"]["model"] == "Google Pixel 8" and r["verdict"]["status"] == "reference"


def test_android_litert_failure_is_one_line(tmp_path):
    b = litert_bundle(tmp_path / "lt")
    runner = tmp_path / "benchmark_model"
    runner.write_bytes(b"stand-in")
    with pytest.raises(UserError, match="benchmark_model failed on image.tflite: Didn't find op"):
        AL.bench_android_litert(b, mode=stats.get_mode("quick"), runner=str(runner), run=FakeAdb(fail=True))
    with pytest.raises(UserError, match="no benchmark_model on the device"):
        AL.bench_android_litert(b, mode=stats.get_mode("quick"), run=FakeAdb())
