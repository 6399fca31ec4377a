"""The benchmark harness without devices or exports: statistics, schema, CSV, report, the Android (adb +
executor_runner) and iOS (devicectl + app) paths replayed from recorded outputs, and the one-line errors."""
from __future__ import annotations

import json
import re
import stat
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from mc2export.bench import android, apple, report, schema, stats
from mc2export.bench.bundles import bundle_checksum, load_bundle
from mc2export.bench.harness import CSV_COLUMNS, assemble, csv_rows, document, table, write_csv
from mc2export.cli import main
from mc2export.errors import UserError
from mc2export.export.reading import write_config

FIX = Path(__file__).parent / "fixtures" / "bench"


def run(capsys, *argv):
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def bench_runtime(capsys, folder, runtime: str, tmp_path: Path) -> dict:
    """``mc2export bench FOLDER --runtime RUNTIME`` at 1 thread, 3 iterations, in this process: its one result
    (exit 0 and the results schema checked)."""
    code, _, err = run(capsys, "bench", folder, "--runtime", runtime, "--threads", 1, "--iterations", 3, "--seconds",
                       0, "--warmup", 1, "--no-isolate", "--quiet", "--json", tmp_path / "r.json")
    assert code == 0, err
    doc = json.loads((tmp_path / "r.json").read_text())
    assert schema.errors(doc) == []
    (r,) = doc["results"]
    return r


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


def phone_reply(args, files: dict):
    """A replayed Pixel 8's answer to the adb calls every ``--device android`` run makes (push, getprop, cpuinfo,
    meminfo; pushed files kept in ``files``), or None for the others."""
    if args[3] == "push":
        files[args[5]] = Path(args[4]).read_bytes()
        return 0, f"{args[4]}: 1 file pushed.", ""
    fixture = {"getprop": "getprop_pixel8.txt", "cat /proc/cpuinfo": "cpuinfo_arm64.txt",
               "cat /proc/meminfo": "meminfo_android.txt"}.get(args[4] if len(args) > 4 else None)
    return (0, (FIX / fixture).read_text(), "") if fixture else None


def fake_bundle(folder: Path, fmt: str = "executorch", variant: str = "mobileclip2-s0", towers=("image", "text")):
    """A bundle folder with the real config layout and tiny stand-in model files (for paths that never run them)."""
    from mc2export.export.bundle import file_table

    folder.mkdir(parents=True, exist_ok=True)
    ext = {"onnx": "onnx", "executorch": "pte", "coreml": "mlpackage"}[fmt]
    models = {}
    for t in towers:
        (folder / f"{t}.{ext}").write_bytes(f"stand-in {t} model".encode())
        models[t] = {"file": f"{t}.{ext}", "files": [f"{t}.{ext}"]}
    (folder / "validation.json").write_text('{"passed": true}\n')
    cfg = {"format": "mc2export-bundle", "bundle_version": 2, "created": "2025-11-20T09:00:00+00:00", "runtime": fmt,
           "variant": variant, "name": "MobileCLIP2-S0", "precision": "fp32", "batch": 1, "resolution": 256,
           "preprocess": {"resolution": 256}, "context_length": 77, "embed_dim": 512, "output_normalized": True,
           "models": models, "weights": {"source": "random", "random_weights": True},
           "versions": {"mc2export": "0.1.0", fmt if fmt != "coreml" else "coremltools": "x"},
           "validation": "validation.json"}
    cfg["files"] = file_table(folder)
    write_config(folder, cfg)
    return folder


# ---------------------------------------------------------------------------------------------- statistics

def test_percentiles_and_trimmed_mean_match_numpy():
    rng = np.random.default_rng(0)
    xs = list(rng.lognormal(3, 0.3, size=137))
    s = stats.summarize(xs)
    for q in (50, 90, 99):
        assert s[f"p{q}"] == pytest.approx(np.percentile(xs, q), rel=1e-12)
    assert s["mean"] == pytest.approx(np.mean(xs)) and s["std"] == pytest.approx(np.std(xs, ddof=1))
    srt = sorted(xs)
    assert s["trimmed_mean"] == pytest.approx(np.mean(srt[13:-13]))
    assert s["min"] == min(xs) and s["max"] == max(xs) and s["count"] == 137


def test_modelbench_protocol_rounds_warmup_and_trim():
    clock = {"t": 0}
    calls = []

    def now():
        return clock["t"]

    def call():  # latency = 1 ms, except every 7th call 5 ms
        calls.append(1)
        clock["t"] += int((5 if len(calls) % 7 == 0 else 1) * 1e6)

    m = stats.get_mode("modelbench")
    raw = stats.run_protocol(call, m, clock=now)
    assert len(calls) == 20 * 51 and len(raw["warmup_ms"]) == 20 and raw["round_sizes"] == [50] * 20
    s = stats.summarize(raw["samples_ms"], raw["round_sizes"], m.trim_low, m.trim_high)
    assert len(s["round_trimmed_means"]) == 20
    assert s["round_trimmed_mean"] == pytest.approx(1.0)  # the 5 ms outliers (<= 8 per round) are trimmed
    assert stats.headline(s, m) == s["round_trimmed_mean"] and s["mean"] > 1.4


def test_quick_and_mlperf_need_both_count_and_duration():
    clock = {"t": 0}

    def call():
        clock["t"] += int(0.5e9)  # 500 ms per call

    raw = stats.run_protocol(call, stats.get_mode("quick"), clock=lambda: clock["t"])
    assert len(raw["samples_ms"]) == 20  # the count binds (10 s > 2 s)
    clock["t"] = 0

    def fast():
        clock["t"] += int(10e6)  # 10 ms per call

    raw = stats.run_protocol(fast, stats.get_mode("mlperf"), clock=lambda: clock["t"])
    assert len(raw["samples_ms"]) == 6000  # the 60 s bind (1024 calls = 10 s)
    assert stats.get_mode("mlperf").headline == "p90"
    assert stats.plan_iterations(10.0, stats.get_mode("mlperf")) == 6000
    assert stats.plan_iterations(500.0, stats.get_mode("mlperf")) == 1024


def test_quick_stops_on_wall_time_not_on_the_sum_of_samples():
    """What tests/test_bench_e2e.py may assert: the round lasts >= 2 s of wall time; the samples (the calls
    alone) can sum to less when the machine is busy between calls."""
    clock = {"t": 0}

    def call():
        clock["t"] += int(90e6)  # 90 ms in the call, 10 ms outside it (the loop, a busy machine)

    def now():
        clock["t"] += int(5e6)
        return clock["t"]

    raw = stats.run_protocol(call, stats.get_mode("quick", warmup=0), clock=now)
    assert raw["duration_s"] >= 2.0 and sum(raw["samples_ms"]) < 2000.0 and len(raw["samples_ms"]) >= 20


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), -1.0, 1e308])
def test_absurd_seconds_are_refused(seconds):
    with pytest.raises(UserError, match="--seconds must be"):
        stats.get_mode("quick", seconds=seconds)


def test_mode_overrides_are_marked_non_standard():
    m = stats.get_mode("quick", iterations=3, seconds=0)
    assert (m.min_iterations, m.min_seconds) == (3, 0.0) and not stats.is_standard(m)
    assert stats.is_standard(stats.get_mode("modelbench"))
    with pytest.raises(UserError, match="unknown --mode 'fast'"):
        stats.get_mode("fast")


# ---------------------------------------------------------------------------------------------- schema + report

def app_docs():
    return [json.loads((FIX / n).read_text()) for n in ("app_ios_result.json", "app_android_result.json")]


def test_app_documents_follow_the_schema_and_violations_are_named():
    for doc in app_docs():
        assert schema.errors(doc) == []
    doc = app_docs()[0]
    doc["results"][0]["towers"]["image"]["stats"].pop("p90")
    doc["results"][0]["verdict"]["status"] = "great"
    doc["schema_version"] = 2
    errs = schema.errors(doc)
    assert any("missing required 'p90'" in e for e in errs)
    assert any("'great' is not one of" in e for e in errs)
    assert any("schema_version" in e for e in errs)
    with pytest.raises(UserError, match="do not follow the mc2export bench schema"):
        schema.validate(doc)


def test_schema_file_is_valid_json_schema_if_jsonschema_is_installed():
    js = pytest.importorskip("jsonschema")  # optional: never a dependency
    js.Draft202012Validator.check_schema(schema.load_schema())
    for doc in app_docs():
        js.Draft202012Validator(schema.load_schema()).validate(doc)


def test_csv_rows_follow_the_schema(tmp_path):
    results = [r for d in app_docs() for r in d["results"]]
    write_csv(results, tmp_path / "r.csv")
    text = (tmp_path / "r.csv").read_text()
    assert schema.csv_errors(text) == []
    rows = csv_rows(results)
    assert [r["tower"] for r in rows] == ["image", "text", "image+text"] * 2
    total = rows[2]
    assert float(total["headline_ms"]) == pytest.approx(float(rows[0]["headline_ms"]) + float(rows[1]["headline_ms"]),
                                                        abs=1e-3)
    assert total["verdict"] == "misses" and rows[5]["verdict"] == "reference"
    assert list(schema.load_schema()["x-csv"]["columns"]) == CSV_COLUMNS
    assert schema.csv_errors(text.replace("image+text", "both")) != []


def test_verdicts_label_the_hardware_class_honestly():
    ios, andr = (d["results"][0] for d in app_docs())
    assert ios["verdict"]["comparable"] == "same" and ios["verdict"]["status"] in ("meets", "misses")
    assert "iPhone 12 Pro Max" in ios["verdict"]["label"]
    assert andr["verdict"]["status"] == "reference" and andr["verdict"]["comparable"] == "none"
    assert "not comparable to the A14 Neural Engine target" in andr["verdict"]["note"]
    assert "shown for reference" in andr["verdict"]["note"]


def _host_result(samples, runtime="onnxruntime", towers=("text",), cls="x86_64 CPU", arch="x86_64", kind="host"):
    from mc2export.bench.device import host_device

    def tower(t):
        return {"tower": t, "load_ms": {"cold": 500.0, "warm": 200.0}, "iterations": len(samples),
                "stats": stats.summarize(samples), "samples_ms": samples,
                "memory": {"scope": "process", "peak_rss_mb": 900.0}}

    dev = host_device()
    dev.update({"kind": kind, "arch": arch, "class": cls, "cpu": "Some Xeon"})
    return assemble({"format": "onnx", "precision": "fp32", "checksum": "0" * 64, "variant": "mobileclip2-s0"},
                    runtime=runtime, runtime_versions={runtime: "1.0"}, threads=2, compute_units=None,
                    mode=stats.get_mode("quick"), device=dev, towers={t: tower(t) for t in towers}, source="test")


def test_desktop_cpu_result_is_held_to_the_target_and_table_prints_verdict():
    """The mission's targets hold for mobile *and desktop* hardware: a host x86 CPU MEETS or MISSES the card's
    target (here the text-only 3.3 ms), with the 3-15 ms band it falls in."""
    r = _host_result([50.0, 52.0, 51.0])
    v = r["verdict"]
    assert v["target_ms"] == 3.3 and v["status"] == "misses" and v["comparable"] == "desktop"
    assert v["band"] == "above" and v["label"].startswith("MISSES: text p50 51.00 ms vs target 3.3 ms")
    assert "x86_64 CPU (Some Xeon, 2 threads, onnxruntime): a desktop/server CPU, held to the card's target" in v["note"]
    assert "above the 3-15 ms band" in v["note"]
    assert schema.errors(document([r])) == []
    out = table([r])
    assert "MISSES (15.5x)" in out and "mobileclip2-s0" in out
    fast = _host_result([3.0, 3.1, 3.2], runtime="openvino")["verdict"]
    assert fast["status"] == "meets" and fast["band"] == "within" and fast["label"].startswith("MEETS")
    for cls in ("arm64 CPU", "Intel Mac"):  # other desktop classes too
        assert _host_result([5.0], cls=cls, arch="arm64")["verdict"]["comparable"] == "desktop"


def test_reference_is_kept_for_comparisons_that_cannot_be_made():
    from mc2export.bench.device import band, comparability

    assert comparability({"kind": "android", "class": "Android arm64"}, "executorch", None) == "none"
    assert comparability({"kind": "ios", "model": "iPhone15,2", "class": "iPhone"}, "coreml", "cpu") == "none"
    assert comparability({"kind": "host", "class": "riscv64 CPU", "arch": "riscv64"}, "onnxruntime", None) == "none"
    assert comparability({"kind": "ios", "model": "iPhone13,4"}, "coreml", "all") == "same"
    assert comparability({"kind": "host", "class": "Apple silicon Mac"}, "coreml", "cpu-ne") == "similar"
    assert comparability({"kind": "host", "class": "Apple silicon Mac"}, "coreml", "cpu") == "desktop"
    r = _host_result([50.0], cls="riscv64 CPU", arch="riscv64")
    assert r["verdict"]["status"] == "reference" and "shown for reference" in r["verdict"]["note"]
    assert (band(2.0), band(3.0), band(15.0), band(15.01)) == ("below", "within", "within", "above")


def test_bench_report_merges_into_markdown_and_svg(tmp_path, capsys):
    files = [FIX / "app_ios_result.json", FIX / "app_android_result.json"]
    code, out, err = run(capsys, "bench-report", *files, "--out", tmp_path / "rep")
    assert code == 0, err
    md = (tmp_path / "rep" / "report.md").read_text()
    assert md.count("| mobileclip2-s0 |") == 2 and "MISSES" in md and "REFERENCE" in md
    svg = ET.parse(tmp_path / "rep" / "latency.svg").getroot()  # well-formed, self-contained
    titles = ["".join(t.itertext()) for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t.startswith("target band 3-15 ms") for t in titles)
    assert any("target 4.8 ms" in t for t in titles)
    merged = json.loads((tmp_path / "rep" / "merged.json").read_text())
    assert schema.errors(merged) == [] and len(merged["results"]) == 2
    assert schema.csv_errors((tmp_path / "rep" / "merged.csv").read_text()) == []
    # the newest result of the same measurement wins
    doc = app_docs()[0]
    doc["results"][0]["created"] = "2030-01-01T00:00:00+00:00"
    doc["results"][0]["total"]["headline_ms"] = 1.0
    assert [r["total"]["headline_ms"] for r in report.merge([app_docs()[0], doc])] == [1.0]


def test_bench_report_bad_input_is_one_line(tmp_path, capsys):
    code, _, err = run(capsys, "bench-report", tmp_path / "nope.json", "--out", tmp_path / "o")
    assert code == 2 and "results file not found" in one_line_error(err)
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "something else"}')
    code, _, err = run(capsys, "bench-report", bad, "--out", tmp_path / "o")
    assert code == 2 and "do not follow the mc2export bench schema" in one_line_error(err)


def test_bench_report_never_replaces_what_it_did_not_write(tmp_path, capsys):
    files = [FIX / "app_ios_result.json"]
    user = tmp_path / "mine"
    user.mkdir()
    (user / "report.md").write_text("my notes\n")
    code, _, err = run(capsys, "bench-report", *files, "--out", user)
    assert code == 2 and "did not write (report.md)" in one_line_error(err)
    assert (user / "report.md").read_text() == "my notes\n"
    (user / "report.md").unlink()
    (user / "photo.jpg").write_bytes(b"x")
    code, _, err = run(capsys, "bench-report", *files, "--out", user)
    assert code == 2 and "photo.jpg" in one_line_error(err)
    code, _, err = run(capsys, "bench-report", *files, "--out", tmp_path / "rep")
    assert code == 0, err
    code, _, err = run(capsys, "bench-report", *files, "--out", tmp_path / "rep")  # our own report: replaced
    assert code == 0, err


def test_bench_report_absurd_numbers_and_hostile_text(tmp_path, capsys):
    doc = app_docs()[0]
    doc["results"][0]["total"]["headline_ms"] = 1e308
    p = tmp_path / "big.json"
    p.write_text(json.dumps(doc))
    code, _, err = run(capsys, "bench-report", p, "--out", tmp_path / "o")
    assert code == 2 and "absurd number" in one_line_error(err) and not (tmp_path / "o").exists()
    for text in ('{"results": NaN}', '{"a": 1e999}', "[" * 50000 + "]" * 50000):
        p.write_text(text)
        code, _, err = run(capsys, "bench-report", p, "--out", tmp_path / "o")
        assert code == 2 and "not valid JSON" in one_line_error(err)
    doc = app_docs()[0]
    doc["results"][0]["variant"] = "mobileclip2-s0 | <img src=x onerror=alert(1)>"
    doc["results"][0]["verdict"]["note"] = "<script>alert(1)</script>"
    p.write_text(json.dumps(doc))
    code, _, err = run(capsys, "bench-report", p, "--out", tmp_path / "o")
    assert code == 0, err
    md = (tmp_path / "o" / "report.md").read_text()
    assert "<img" not in md and "<script>" not in md and "&lt;script&gt;" in md
    row = next(ln for ln in md.splitlines() if "onerror" in ln)
    head = next(ln for ln in md.splitlines() if ln.startswith("| variant"))
    cells = re.compile(r"(?<!\\)\|")
    assert len(cells.findall(row)) == len(cells.findall(head))  # the same number of cells


# ---------------------------------------------------------------------------------------------- bad input (host)

def test_missing_and_corrupt_bundles_are_one_line_errors(tmp_path, capsys):
    code, _, err = run(capsys, "bench", tmp_path / "missing")
    assert code == 2 and "bundle not found" in one_line_error(err) and "--out DIR" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "bench", tmp_path / "empty")
    assert code == 2 and "no config.json" in one_line_error(err)
    b = fake_bundle(tmp_path / "b", "onnx")
    (b / "config.json").write_text("{not json")
    code, _, err = run(capsys, "bench", b)
    assert code == 2 and "config.json is not valid JSON" in one_line_error(err) and "re-export" in err
    b = fake_bundle(tmp_path / "c", "onnx")
    (b / "text.onnx").write_bytes(b"tampered")
    code, _, err = run(capsys, "bench", b)
    line = one_line_error(err)
    assert code == 2 and "does not match its config.json" in line and "changed ['text.onnx']" in line
    assert "--no-verify" in line


def test_runtime_mismatch_and_not_installed(tmp_path, capsys, monkeypatch):
    b = fake_bundle(tmp_path / "et", "executorch")
    code, _, err = run(capsys, "bench", b, "--runtime", "onnxruntime")
    assert code == 2 and "cannot run a executorch bundle" in one_line_error(err)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    code, _, err = run(capsys, "bench", fake_bundle(tmp_path / "o", "onnx"), "--runtime", "onnxruntime")
    assert code == 2 and "not installed" in one_line_error(err) and "pip install onnxruntime" in err
    code, _, err = run(capsys, "bench", b, "--runtime", "tensorrt")
    assert code == 2 and "unknown --runtime 'tensorrt'" in one_line_error(err)
    code, _, err = run(capsys, "bench", b, "--compute-units", "cpu-ne")
    assert code == 2 and "--compute-units applies to --runtime coreml only" in one_line_error(err)


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML runs on macOS")
def test_coreml_on_linux_is_a_one_line_error(tmp_path, capsys):
    b = fake_bundle(tmp_path / "ml", "coreml")
    code, _, err = run(capsys, "bench", b)  # the default runtime of a Core ML bundle
    line = one_line_error(err)
    assert code == 2 and "Core ML prediction needs macOS" in line and "on a Mac" in line
    code, _, err = run(capsys, "bench", b, "--device", "ios", "--app", "org.example.app")
    assert code == 2 and "needs a Mac with Xcode" in one_line_error(err)


# ---------------------------------------------------------------------------------------------- Android

def test_adb_devices_parsing_and_selection():
    assert android.parse_adb_devices((FIX / "adb_devices_none.txt").read_text()) == []
    assert android.parse_adb_devices((FIX / "adb_devices_none_daemon_start.txt").read_text()) == []
    one = android.parse_adb_devices((FIX / "adb_devices_one.txt").read_text())
    assert one == [{"serial": "37281FDJH000A7", "state": "device", "usb": "1-1", "product": "shiba",
                    "model": "Pixel_8", "device": "shiba", "transport_id": "3"}]
    assert android.select_device(one)["serial"] == "37281FDJH000A7"
    with pytest.raises(UserError, match="no Android device found .*USB debugging"):
        android.select_device([])
    with pytest.raises(UserError, match="unauthorized: unlock it and accept"):
        android.select_device(android.parse_adb_devices((FIX / "adb_devices_unauthorized.txt").read_text()))
    two = android.parse_adb_devices((FIX / "adb_devices_two.txt").read_text())
    with pytest.raises(UserError, match="pass --serial"):
        android.select_device(two)
    assert android.select_device(two, "emulator-5554")["model"] == "sdk_gphone64_arm64"
    with pytest.raises(UserError, match="'XYZ' not found"):
        android.select_device(two, "XYZ")


def test_executor_runner_output_parsing():
    r = android.parse_runner_output((FIX / "executor_runner_iterations.txt").read_text())
    assert r["iterations"] == 8 and len(r["samples_ms"]) == 8 and r["samples_ms"][0] == pytest.approx(31.552734)
    assert r["total_ms"] == pytest.approx(223.526374) and r["load_ms"] == pytest.approx(124.871094)
    assert r["threads"] == 4 and r["max_rss_kb"] == 287412 and r["error"] is None
    old = android.parse_runner_output((FIX / "executor_runner_aggregate.txt").read_text())
    assert old["samples_ms"] == [] and old["iterations"] == 10 and old["total_ms"] == pytest.approx(127.553711)
    assert old["load_ms"] is None and old["max_rss_kb"] is None
    bad = android.parse_runner_output((FIX / "executor_runner_fail.txt").read_text())
    assert bad["total_ms"] is None and "Loading of method forward failed" in bad["error"]
    flags = android.parse_runner_output((FIX / "executor_runner_old_flags.txt").read_text())
    assert "unknown command line flag 'cpu_threads'" in flags["error"]
    lc = android.parse_runner_output((FIX / "logcat_executorch.txt").read_text())
    assert lc["samples_ms"] == [pytest.approx(30.101563), 27.5, 27.25] and lc["load_ms"] == 118.25


def test_runner_and_app_command_construction():
    cmd = android.runner_command("/data/local/tmp/mc2export/abc", "text.pte", 25, threads=4)
    assert cmd.startswith("cd /data/local/tmp/mc2export/abc && ")
    assert "toybox time -v ./executor_runner --model_path=text.pte --num_executions=25 --cpu_threads=4" in cmd
    assert cmd.endswith("else ./executor_runner --model_path=text.pte --num_executions=25 --cpu_threads=4; fi")
    plain = android.runner_command("/d", "image.pte", 3, measure_rss=False)
    assert plain == "cd /d && ./executor_runner --model_path=image.pte --num_executions=3"
    assert android.push_command("a.pte", "/d/a.pte", serial="S") == ["adb", "-s", "S", "push", "a.pte", "/d/a.pte"]
    start = android.app_start_command("org.mc2export.sample", "/data/local/tmp/mc2export/x/bundle", "quick", 4)
    assert start == ("am start -W -S -n org.mc2export.sample/.MainActivity --es mc2export.bench.bundle "
                     "/data/local/tmp/mc2export/x/bundle --es mc2export.bench.mode quick --ei mc2export.bench.threads 4")
    assert android.app_result_command("org.mc2export.sample") == "run-as org.mc2export.sample cat files/mc2export-bench.json"


def test_android_device_description():
    dev = android.device_from_props(android.parse_getprop((FIX / "getprop_pixel8.txt").read_text()),
                                    (FIX / "cpuinfo_arm64.txt").read_text(), (FIX / "meminfo_android.txt").read_text(),
                                    "37281FDJH000A7")
    assert dev["model"] == "Google Pixel 8" and dev["soc"] == "Google Tensor G3" and dev["os"] == "Android 14 (API 34)"
    assert dev["cores_logical"] == 8 and dev["memory_gb"] == 7.4 and dev["class"] == "Android arm64"
    assert {"asimddp", "i8mm", "sve2"} <= set(dev["cpu_features"])


class FakeAdb:
    """Replays a phone: recorded outputs for the fixed commands, runner output in the recorded format."""

    def __init__(self, devices="adb_devices_one.txt", iterations=True, base_ms=20.0, model=None):
        self.devices = (FIX / devices).read_text()
        self.model = model  # (model file, input bytes) -> outputs, for runs with --inputs / --output_file
        self.iterations = iterations
        self.base = base_ms
        self.calls = []
        self.files = {}

    def runner_output(self, model, n):
        lines = ["I 00:00:00.001016 executorch:executor_runner.cpp:420] Resetting threadpool with num threads = 4",
                 f"I 00:00:00.001377 executorch:executor_runner.cpp:489] Model file {model} is loaded.",
                 "I 00:00:00.126301 executorch:executor_runner.cpp:612] Model loaded in "
                 f"{(150.0 if not self.calls_runner else 40.0):f} ms."]
        total = 0.0
        for i in range(n):
            x = self.base * (2.5 if i == 0 else 1.0 + 0.01 * (i % 5))
            total += x
            if self.iterations:
                lines.append(f"I 00:00:00.2 executorch:executor_runner.cpp:781] Iteration {i + 1} of {n}: {x:f} ms")
        lines.append(f"I 00:00:00.3 executorch:executor_runner.cpp:790] Model executed successfully {n} time(s) in "
                     f"{total:f} ms.")
        lines.append("Max RSS (KiB): 287412")
        return "\n".join(lines) + "\n"

    calls_runner = 0

    def __call__(self, args, timeout):
        self.calls.append(args)
        if args[1:] == ["devices", "-l"]:
            return 0, self.devices, ""
        assert args[1] == "-s"
        if args[3] == "pull":
            Path(args[5]).write_bytes(self.files[args[4]])
            return 0, f"{args[4]}: 1 file pulled.", ""
        reply = phone_reply(args, self.files)
        if reply is not None:
            return reply
        cmd = args[4]
        m = re.search(r"--model_path=(\S+) --num_executions=(\d+)", cmd)
        io = re.search(r"cd (\S+) && .*--inputs=(\S+) --output_file=([^\s;]+)", cmd)
        if m and io:  # executor_runner reading an input file and writing its output tensor
            folder, name, base = io.groups()
            out = self.model(m.group(1), self.files[f"{folder}/{name}"])
            self.files[f"{folder}/{base}-0.bin"] = np.asarray(out, dtype="<f4").tobytes()
        if m:
            out = self.runner_output(m.group(1), int(m.group(2)))
            self.calls_runner += 1
            return 0, "", out  # ExecuTorch logs to stderr
        return 0, "", ""


def test_android_executor_runner_flow_replayed(tmp_path):
    b = fake_bundle(tmp_path / "et", "executorch")
    runner = tmp_path / "executor_runner"
    runner.write_bytes(b"\x7fELF stand-in")
    adb = FakeAdb()
    r = android.bench_android(b, mode=stats.get_mode("quick"), threads=4, runner=str(runner), run=adb)
    assert schema.errors(document([r])) == []
    pushed = sorted(p.rsplit("/", 1)[1] for p in adb.files)
    assert pushed == ["executor_runner", "image.pte", "text.pte"]
    runs = [c[4] for c in adb.calls if len(c) > 4 and "--num_executions" in c[4]]
    assert len(runs) == 4  # per tower: a probe (cold load) + the measured invocation
    assert "--num_executions=8" in runs[0] and "--num_executions=102" in runs[1]  # 3 warm-up + ceil(2 s / 20.4 ms)
    img = r["towers"]["image"]
    assert img["iterations"] == 99 and len(img["samples_ms"]) == 99 and len(img["warmup_ms"]) == 3
    assert img["load_ms"] == {"cold": 150.0, "warm": 40.0, "first_inference": 50.0}
    assert img["memory"]["peak_rss_mb"] == pytest.approx(280.7) and img["memory"]["scope"] == "device-process"
    assert 20.0 <= img["stats"]["p50"] <= 20.5
    assert r["device"]["model"] == "Google Pixel 8" and r["verdict"]["status"] == "reference"
    assert r["total"]["headline_ms"] == pytest.approx(img["headline_ms"] + r["towers"]["text"]["headline_ms"])


def test_android_old_runner_reports_aggregates_and_modelbench_rounds(tmp_path):
    b = fake_bundle(tmp_path / "et", "executorch", towers=("text",))
    (tmp_path / "runner").write_bytes(b"x")
    adb = FakeAdb(iterations=False)
    m = stats.get_mode("modelbench", rounds=3)
    r = android.bench_android(b, mode=m, runner=str(tmp_path / "runner"), run=adb)
    t = r["towers"]["text"]
    assert t["samples_aggregate"] is True and len(t["samples_ms"]) == 3 and t["rounds"] == 3
    assert t["iterations"] == 3 * 51 and r["mode"]["standard"] is False
    assert schema.errors(document([r])) == []


def _device_model(noise=0.0):
    """A stand-in for the .pte on the phone: 8 numbers per row from the raw input (float32 image / int32 tokens)."""
    rng = np.random.default_rng(7)

    def f(model_file, raw):
        x = np.frombuffer(raw, dtype="<f4" if model_file == "image.pte" else "<i4").astype(np.float32)
        rows = x.reshape(1, -1)[:, :8] + 1.0
        return rows + noise * rng.standard_normal(rows.shape)

    return f


def vectors_bundle(folder: Path) -> Path:
    """An ExecuTorch stand-in bundle with real verification vectors: expected = _device_model() of the inputs."""
    from mc2export.export import vectors
    from mc2export.export.bundle import file_table

    b = fake_bundle(folder, "executorch")
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (16, 4, 4, 3), dtype=np.uint8)
    tokens = rng.integers(0, 49408, (24, 77), dtype=np.int32)
    f = _device_model()
    expected = {t: np.concatenate([f(f"{t}.pte", r[None].tobytes()) for r in vectors.model_input(t, x)])
                for t, x in (("image", u8), ("text", tokens))}
    vectors.write(b, precision="fp32", tolerance={"cosine_min": 0.99999, "max_abs_over_std": 1e-4}, normalized=True,
                  embed_dim=8, image=(u8, expected["image"]), text=(tokens, expected["text"], [""] * 24))
    cfg = json.loads((b / "config.json").read_text())
    cfg.update(embed_dim=8, resolution=4, preprocess={"resolution": 4}, files=file_table(b))
    write_config(b, cfg)
    return b


def test_android_runs_the_vectors_on_the_device_before_timing(tmp_path):
    b = vectors_bundle(tmp_path / "et")
    (tmp_path / "runner").write_bytes(b"x")
    adb = FakeAdb(model=_device_model())
    r = android.bench_android(b, mode=stats.get_mode("quick"), threads=4, runner=str(tmp_path / "runner"), run=adb)
    assert schema.errors(document([r])) == []
    v = r["verification"]
    assert v["status"] == "passed" and v["tolerance"]["cosine_min"] == 0.99999
    assert v["towers"]["image"]["rows"] == 4 and v["towers"]["text"]["rows"] == 6
    assert v["towers"]["image"]["invocations"] == 4 and v["towers"]["image"]["cosine_min"] > 0.9999999
    runs = [c[4] for c in adb.calls if len(c) > 4 and "--num_executions" in c[4]]
    vec = [c for c in runs if "--inputs=" in c]
    assert len(vec) == 10 and all("--num_executions=1 " in c and "--output_file=verify-" in c for c in vec)
    assert runs.index(vec[-1]) < max(i for i, c in enumerate(runs) if "text.pte" in c)  # vectors before timing
    pulls = [c for c in adb.calls if len(c) > 3 and c[3] == "pull"]
    assert len(pulls) == 10 and pulls[0][4].endswith("/verify-image-out0-0.bin")
    # the pushed input is exactly what the vectors say the model takes (float32 NCHW, uint8 / 255)
    from mc2export.export import vectors

    row0 = vectors.read(b)["towers"]["image"]["inputs"]["array"][:1]
    pushed = [k for k in adb.files if k.endswith("verify-image-in0.bin")]
    assert adb.files[pushed[0]] == vectors.model_input("image", row0).tobytes()


def test_android_wrong_outputs_fail_the_run_before_timing(tmp_path, capsys, monkeypatch):
    from mc2export.bench.verify import OutputsDisagree

    b = vectors_bundle(tmp_path / "et")
    (tmp_path / "runner").write_bytes(b"x")
    adb = FakeAdb(model=_device_model(noise=0.05))
    with pytest.raises(OutputsDisagree) as e:
        android.bench_android(b, mode=stats.get_mode("quick"), runner=str(tmp_path / "runner"), run=adb)
    (line,) = e.value.lines
    assert line.startswith("verify FAILED: image tower in executorch on Google Pixel 8") and "cosine min" in line
    assert not [c for c in adb.calls if len(c) > 4 and "--num_executions=" in c[4] and "--inputs=" not in c[4]]
    # the command turns it into exit 3 with the figures on stderr
    monkeypatch.setattr(android, "connect", lambda adb, serial: android.Adb(adb, "S"))
    monkeypatch.setattr(android, "bench_android", lambda *a, **k: (_ for _ in ()).throw(e.value))
    code, out, err = run(capsys, "bench", b, "--device", "android", "-q")
    assert code == 3 and line in err and "computes wrong outputs on the device (nothing was timed)" in err
    # --no-vectors skips them, and the result says so
    monkeypatch.undo()
    r = android.bench_android(b, mode=stats.get_mode("quick"), runner=str(tmp_path / "runner"), run=FakeAdb(),
                              vectors=False)
    assert r["verification"] == {"status": "not-run", "reason": "--no-vectors"}


def test_adb_without_device_is_a_one_line_error(tmp_path, capsys):
    fake = tmp_path / "adb"
    fake.write_text(f"#!/bin/sh\ncat '{FIX / 'adb_devices_none.txt'}'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    b = fake_bundle(tmp_path / "et", "executorch")
    code, _, err = run(capsys, "bench", b, "--device", "android", "--adb", fake)
    line = one_line_error(err)
    assert code == 2 and "no Android device found" in line and "USB debugging" in line
    code, _, err = run(capsys, "bench", b, "--device", "android", "--adb", tmp_path / "no-such-adb")
    assert code == 2 and "adb not found" in one_line_error(err) and "platform-tools" in err


def test_android_sample_app_flow_replayed(tmp_path):
    b = fake_bundle(tmp_path / "et", "executorch")
    adb = FakeAdb()
    polls = []

    def run_(args, timeout):
        if len(args) > 4 and args[4].startswith("run-as com.mc2export.demo cat"):
            polls.append(1)
            if len(polls) < 2:
                return 1, "", "cat: files/mc2export-bench.json: No such file or directory"
            return 0, (FIX / "app_android_result.json").read_text(), ""
        return adb(args, timeout)

    doc = android.bench_android_app(b, package="com.mc2export.demo", mode=stats.get_mode("quick"), threads=4,
                                    run=run_, poll_s=0)
    assert doc["results"][0]["device"]["model"] == "Google Pixel 8" and len(polls) == 2
    dest = "/sdcard/Android/data/com.mc2export.demo/files/bundle"
    assert sorted(adb.files) == sorted(f"{dest}/{n}" for n in ("config.json", "image.pte", "text.pte",
                                                                  "validation.json"))
    starts = [c[4] for c in adb.calls if len(c) > 4 and c[4].startswith("am start")]
    assert starts == [f"am start -W -S -n com.mc2export.demo/.MainActivity --es mc2export.bench.bundle {dest} "
                      "--es mc2export.bench.mode quick --ei mc2export.bench.threads 4"]


def test_android_app_result_is_validated():
    doc = android.parse_app_result((FIX / "app_android_result.json").read_text())
    assert doc["results"][0]["device"]["kind"] == "android"
    with pytest.raises(UserError, match="wrote no valid JSON"):
        android.parse_app_result("")


# ---------------------------------------------------------------------------------------------- iOS

def test_devicectl_parsing_and_commands():
    devs = apple.parse_devicectl_devices(json.loads((FIX / "devicectl_devices.json").read_text()))
    assert [d["model"] for d in devs] == ["iPhone13,4", "iPad12,1"]
    d = apple.select_ios_device(devs)
    assert d["udid"] == "4C0A8E1F-3B2D-4E5F-9A6B-7C8D9E0F1A2B" and d["marketing_name"] == "iPhone 12 Pro Max"
    with pytest.raises(UserError, match="no paired iOS device"):
        apple.select_ios_device([devs[1]])
    assert apple.launch_command("U", "org.x.app", "modelbench") == [
        "xcrun", "devicectl", "device", "process", "launch", "--device", "U", "--terminate-existing", "org.x.app",
        "--mc2export-bench", "Documents/mc2export-bundle", "--mc2export-bench-mode", "modelbench"]
    assert apple.shell_line(apple.copy_from_command("U", "org.x.app", "/tmp/r.json")) == (
        "xcrun devicectl device copy from --device U --domain-type appDataContainer --domain-identifier org.x.app "
        "--source Documents/mc2export-bench.json --destination /tmp/r.json")


def test_ios_app_flow_replayed(tmp_path):
    b = fake_bundle(tmp_path / "ml", "coreml")
    checksum = load_bundle(b).checksum
    app_doc = app_docs()[0]
    app_doc["results"][0]["bundle"]["checksum"] = checksum
    calls = []

    def fake(args, timeout):
        calls.append(args)
        if args[2:4] == ["list", "devices"]:
            Path(args[-1]).write_text((FIX / "devicectl_devices.json").read_text())
        elif args[2:5] == ["device", "copy", "from"]:
            Path(args[-1]).write_text(json.dumps(app_doc))
        return 0, "", ""

    doc = apple.bench_ios(b, bundle_id="org.mc2export.sample", mode=stats.get_mode("quick"), run=fake,
                          platform="darwin", poll_s=0)
    assert doc["results"][0]["verdict"]["comparable"] == "same"
    assert [c[2:5] for c in calls] == [["list", "devices", "--json-output"], ["device", "copy", "to"],
                                       ["device", "process", "launch"], ["device", "copy", "from"]]
    assert bundle_checksum(load_bundle(b).config["files"]) == checksum


def test_ios_app_honours_the_harness_launch_arguments_and_paths():
    """``mc2export bench --device ios`` launches the sample app with these arguments and copies these paths:
    the Swift side must use the same strings (it cannot be built here, so they are compared as text)."""
    swift = (Path(__file__).resolve().parents[1] / "examples" / "ios" / "MC2Demo" / "AppModel.swift").read_text()
    consts = dict(re.findall(r'static let (\w+) = "([^"]+)"', swift))
    assert consts["benchArg"] == apple.ARG_BENCH
    assert consts["benchModeArg"] == apple.ARG_MODE
    assert consts["resultPath"] == apple.APP_RESULT
    assert consts["bundlePath"] == apple.APP_BUNDLE_DIR
    cmd = apple.launch_command("UDID", "com.mc2export.demo", "quick")
    assert cmd[cmd.index(apple.ARG_BENCH) + 1] == apple.APP_BUNDLE_DIR and cmd[cmd.index(apple.ARG_MODE) + 1] == "quick"
    # the app reads both arguments and writes its result where the harness copies it from
    assert "arguments.firstIndex(of: Self.benchArg)" in swift and "arguments.firstIndex(of: Self.benchModeArg)" in swift
    assert "appendingPathComponent(Self.resultPath)" in swift
