"""The apps' photo index (docs/app_index.md): the Python reference and the committed conformance vectors that
the Swift, Kotlin and JS ports are tested against."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mc2export import appindex
from mc2export.errors import UserError

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO / "examples" / "shared" / "vectors" / "index"


def test_committed_vectors_are_current(tmp_path):
    names = appindex.write_vectors(tmp_path)
    for name in names:
        assert (tmp_path / name).read_bytes() == (VECTORS / name).read_bytes(), \
            f"{name} is stale: python -m mc2export.appindex {VECTORS.relative_to(REPO)}"


def test_replay_follows_the_rules():
    exp = json.loads((VECTORS / "expected.json").read_text(encoding="utf-8"))
    idx = appindex.read(VECTORS / "library.mc2i", exp["header"])
    assert [{"key": k, "stamp": s} for k, s in zip(idx.keys, idx.stamps)] == exp["live"]
    assert idx.dropped == 0 and idx.records == exp["records"]
    # replacement keeps the place, delete removes, a re-add goes last, an unknown delete does nothing
    assert idx.keys[3] == "photo-003.jpg" and idx.stamps[3] == 1_800_000_000_003
    assert "photo-005.jpg" not in idx.keys and idx.keys[-1] == "photo-006.jpg"
    assert np.array_equal(idx.vectors[:3].view("<u2"), np.array(exp["first_vector_bits"], np.uint16))
    norms = np.linalg.norm(idx.vectors.astype(np.float32), axis=1)
    assert np.all(np.abs(norms - 1) < 2e-3)
    for name in ("torn", "corrupt"):
        t = appindex.read(VECTORS / exp[name]["file"], exp["header"])
        assert (len(t.keys), t.records, t.valid_length, t.dropped) == (
            exp[name]["live"], exp[name]["records"], exp[name]["valid_length"], exp[name]["dropped"])
        assert t.keys == [k for k in idx.keys if k != "photo-006.jpg"]  # all but the last record (the re-add)
    with pytest.raises(UserError, match="another model"):
        appindex.read(VECTORS / "other_model.mc2i", exp["header"])
    assert appindex.read(VECTORS / "other_model.mc2i").header == exp["other_model"]["header"]


def test_search_equals_a_full_sort():
    exp = json.loads((VECTORS / "expected.json").read_text(encoding="utf-8"))
    idx = appindex.read(VECTORS / "library.mc2i")
    ref = idx.vectors.astype(np.float64)
    for s in exp["searches"]:
        rows, scores = appindex.search(idx.vectors, s["query"], s["k"])
        q = np.asarray(s["query"], np.float64)
        full = np.argsort(-(ref @ (q / np.linalg.norm(q))), kind="stable")[:s["k"]]
        assert list(rows) == list(full)
        assert [idx.keys[r] for r in rows] == s["keys"]
        np.testing.assert_allclose(scores, s["scores"], atol=exp["score_tolerance"])
    rng = np.random.default_rng(1)
    big = rng.normal(size=(5000, 64)).astype(np.float16)
    q = rng.normal(size=64)
    rows, _ = appindex.search(big, q, 24)
    assert list(rows) == list(np.argsort(-(big.astype(np.float64) @ q), kind="stable")[:24])


def test_writer_is_byte_identical_and_recovers_a_torn_tail(tmp_path):
    w = json.loads((VECTORS / "writer.json").read_text(encoding="utf-8"))
    path = tmp_path / "photos.mc2i"
    app = appindex.Appender(path, w["header"])
    ops = w["operations"]
    for i in range(0, len(ops), 7):  # batches of any size give the same bytes
        batch = ops[i:i + 7]
        for o in batch:
            if o["op"] == "put":
                app.append(puts=[(o["key"], o["stamp"], o["vector"])])
            else:
                app.append(deletes=[o["key"]])
    assert path.read_bytes() == (VECTORS / "library.mc2i").read_bytes()
    assert not app.needs("photo-000.jpg", 1_700_000_000_000) and app.needs("photo-000.jpg", 1)
    # a torn tail is cut before the next append, so it never hides the records after it
    torn = tmp_path / "torn.mc2i"
    torn.write_bytes((VECTORS / "torn.mc2i").read_bytes())
    app = appindex.Appender(torn, w["header"])
    assert torn.stat().st_size == json.loads((VECTORS / "expected.json").read_text())["torn"]["valid_length"]
    app.append(puts=[("new.jpg", 5, np.ones(appindex.VECTOR_DIM))])
    assert appindex.read(torn).keys[-1] == "new.jpg"
    # compaction keeps order, stamps and vector bits, drops the dead records
    before = appindex.read(path)
    after = appindex.Appender(path, w["header"]).compact()
    assert after.keys == before.keys and after.stamps == before.stamps and after.records == len(before.keys)
    assert np.array_equal(after.vectors.view("<u2"), before.vectors.view("<u2"))
    with pytest.raises(UserError, match="another model"):
        appindex.Appender(path, appindex.OTHER_HEADER)


_CHILD = """
import sys, numpy as np
from mc2export import appindex
app = appindex.Appender(sys.argv[1], appindex.VECTOR_HEADER)
rng = np.random.default_rng(0)
b = 0
while True:
    app.append(puts=[(f"p{b}-{i}", b, rng.normal(size=appindex.VECTOR_DIM)) for i in range(32)])
    print(b, flush=True)
    b += 1
"""


def test_sigkill_during_appends_loses_at_most_the_batch_in_flight(tmp_path):
    path = tmp_path / "kill.mc2i"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, text=True,
                             cwd=REPO)
    done = -1
    deadline = time.monotonic() + 60
    while done < 20 and time.monotonic() < deadline:
        done = int(child.stdout.readline())
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    idx = appindex.read(path, appindex.VECTOR_HEADER)
    # every batch reported done is there; at most the one in flight (and the next, started) is partial
    assert done >= 20 and 32 * (done + 1) <= len(idx.keys) <= 32 * (done + 3)
    app = appindex.Appender(path, appindex.VECTOR_HEADER)  # reopens, cuts any torn tail, appends on
    app.append(puts=[("after", 1, np.ones(appindex.VECTOR_DIM))])
    assert appindex.read(path).keys[-1] == "after" and appindex.read(path).dropped == 0


def test_bad_headers_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.mc2i"
    for blob, msg in ((b"GIF89a", "not an mc2export photo index"),
                      (appindex.MAGIC + (2).to_bytes(4, "little") + (2).to_bytes(4, "little") + b"{}", "version 2"),
                      (appindex.MAGIC + (1).to_bytes(4, "little") + (9).to_bytes(4, "little") + b"{}", "truncated"),
                      (appindex.MAGIC + (1).to_bytes(4, "little") + (4).to_bytes(4, "little") + b"[[[[", "valid JSON"),
                      (appindex.MAGIC + (1).to_bytes(4, "little") + (2).to_bytes(4, "little") + b"{}", "variant")):
        bad.write_bytes(blob)
        with pytest.raises(UserError, match=msg):
            appindex.read(bad)
