"""`mc2export index` against `mc2export embed` (the baseline) on camera-size JPEGs, paired; search latency.

    pip install scikit-image          # its bundled sample photos seed the corpus (no network)
    python benchmarks/index_speed.py --corpus /tmp/index-corpus --n 500 --take 100 --rounds 2 \\
        --bundle ov=DIR --bundle ort=DIR [--checkpoint CKPT] [--search 100000,1000000]

1. Corpus: ``--n`` JPEGs of 4032 x 3024 (12.2 MP, quality 90, EXIF orientation 1 or 6), each a seeded random
   crop / flip / colour change of one of scikit-image's bundled photos upscaled -- made once, kept.
2. Paired rounds: in each round every runner (``embed`` = PyTorch eager, the baseline; ``index:<name>`` for
   each ``--bundle``) processes the same ``--take`` photos of the corpus (a different slice each round) in a
   fresh process, in a shuffled order; photos/s counts the whole command (start-up included); peak RSS is
   the process's ``ru_maxrss``; per-stage seconds come from the library's stats.json.
3. Reduced vs exact decode: on ``--fidelity`` photos, the model input (uint8 levels) max / RMS difference and
   the embedding cosine with the first bundle.
4. Search: synthetic clustered unit vectors (512-d, fp16) at each ``--search`` size: exact p50 / p90 over 30
   queries, and faiss IVF (built as the library builds it) p50 with recall@20 against exact.

Figures go to benchmarks/results/index_speed.{json,md}, with the CPU, its flags and the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
W, H = 4032, 3024


def cpu() -> dict:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    keep = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "avx512_bf16") if f in flags]
    return {"model": name, "flags": keep, "cpus": len(os.sched_getaffinity(0))}


def make_corpus(out: Path, n: int, log=print) -> list:
    from PIL import Image
    import skimage

    src_dir = Path(skimage.__file__).parent / "data"
    sources = []
    for name in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png",
                 "hubble_deep_field.jpg", "retina.jpg", "color.png", "ihc.png", "logo.png"):
        p = src_dir / name
        if p.is_file():
            sources.append(Image.open(p).convert("RGB"))
    if not sources:
        raise SystemExit("scikit-image's bundled photos not found: pip install scikit-image")
    out.mkdir(parents=True, exist_ok=True)
    from PIL import ImageChops

    # camera-like grain (JPEGs of smooth upscaled pictures would be unrealistically small and fast to decode)
    grain = Image.fromarray(np.random.default_rng(0).integers(0, 14, (H, W, 3), dtype=np.uint8))
    files = []
    for i in range(n):
        f = out / f"IMG_{i:05d}.jpg"
        files.append(f)
        if f.is_file():
            continue
        rng = random.Random(i)
        im = sources[i % len(sources)]
        w, h = im.size
        cw, ch = int(w * rng.uniform(0.6, 1.0)), int(h * rng.uniform(0.6, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        tile = im.crop((x, y, x + cw, y + ch)).resize((W, H), Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            tile = tile.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        gains = [rng.uniform(0.8, 1.1) for _ in range(3)]
        tile = Image.merge("RGB", [b.point(lambda v, g=g: min(255, int(v * g))) for b, g in zip(tile.split(), gains)])
        tile = ImageChops.add(tile, ImageChops.offset(grain, rng.randint(0, W), rng.randint(0, H)))
        exif = Image.Exif()
        exif[0x0112] = 6 if i % 5 == 0 else 1
        tmp = f.with_suffix(".tmp")
        tile.save(tmp, "JPEG", quality=90, exif=exif.tobytes())
        os.replace(tmp, f)
        if (i + 1) % 50 == 0:
            log(f"  corpus {i + 1}/{n}")
    return files


def run_child(cmd, env=None) -> dict:
    """Wall time and peak RSS (``ru_maxrss`` of that child alone) of one command; output to a file, not a
    pipe (a pipe that fills up would stall the child)."""
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        if status != 0:
            log.seek(0)
            raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{log.read().decode()[-2000:]}")
    return {"wall_s": wall, "peak_rss_mb": ru.ru_maxrss / 1024}


def paired(files, args, log=print) -> dict:
    exe = [sys.executable, "-m", "mc2export.cli"]
    runners = {}
    if args.checkpoint:
        runners["embed"] = lambda sl, tmp: exe + ["embed", *map(str, sl), "--out", str(tmp / "e.npy"),
                                                  "--variant", "s0", "--checkpoint", str(args.checkpoint)]
    for spec in args.bundle:
        name, path = spec.split("=", 1)
        runners[f"index:{name}"] = (lambda p: lambda sl, tmp: exe + [
            "index", "--files-from", str(tmp / "list.txt"), "--out", str(tmp / "lib"), "--bundle", p, "-q"])(path)
        if args.exact_too:
            runners[f"index:{name}:exact-decode"] = (lambda p: lambda sl, tmp: exe + [
                "index", "--files-from", str(tmp / "list.txt"), "--out", str(tmp / "lib"), "--bundle", p, "-q",
                "--exact-decode"])(path)
    res = {k: [] for k in runners}
    order = list(runners)
    rng = random.Random(0)
    load_before = os.getloadavg()
    for r in range(args.rounds):
        sl = files[(r * args.take) % len(files):][:args.take]
        rng.shuffle(order)
        for k in order:
            tmp = Path(tempfile.mkdtemp(prefix="index-speed-"))
            try:
                (tmp / "list.txt").write_text("".join(f"{f}\n" for f in sl))
                m = run_child(runners[k](sl, tmp))
                m["photos_per_s"] = len(sl) / m["wall_s"]
                if (tmp / "lib" / "stats.json").is_file():
                    st = json.loads((tmp / "lib" / "stats.json").read_text())
                    m["stages_s"] = st["stages_s"]
                    m["steady_photos_per_s"] = st["photos_per_s"]
                res[k].append(m)
                log(f"  round {r + 1} {k}: {m['photos_per_s']:.2f} photos/s, {m['peak_rss_mb']:.0f} MB")
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return {"runs": res, "take": args.take, "rounds": args.rounds, "loadavg_before": load_before,
            "loadavg_after": os.getloadavg()}


def fidelity(files, bundle: Path, n: int) -> dict:
    from mc2export.library.decode import DecodeConfig, model_input
    from mc2export.library.model import Embedder

    from mc2export.bench.bundles import load_bundle

    b = load_bundle(bundle, verify=False)
    pre = dict(b.config["preprocess"])
    emb = Embedder(bundle, "onnxruntime" if b.format == "onnx" else "openvino", 2)
    dmax, drms, cos, t_fast, t_exact = [], [], [], [], []
    for f in files[:n]:
        data = Path(f).read_bytes()
        t0 = time.perf_counter()
        fast = model_input(data, DecodeConfig(pre))
        t1 = time.perf_counter()
        exact = model_input(data, DecodeConfig(pre, exact=True))
        t2 = time.perf_counter()
        t_fast.append(t1 - t0)
        t_exact.append(t2 - t1)
        d = fast.astype(np.float32) - exact.astype(np.float32)
        dmax.append(float(np.abs(d).max()))
        drms.append(float(np.sqrt((d * d).mean())))
        y = emb(np.stack([fast, exact]))
        cos.append(float(y[0] @ y[1] / np.linalg.norm(y[0]) / np.linalg.norm(y[1])))
    return {"photos": len(cos), "bundle": str(bundle), "max_abs_levels": max(dmax),
            "rms_levels_mean": statistics.mean(drms), "rms_levels_max": max(drms),
            "cosine_min": min(cos), "cosine_mean": statistics.mean(cos),
            "decode_ms_reduced_p50": 1e3 * statistics.median(t_fast),
            "decode_ms_exact_p50": 1e3 * statistics.median(t_exact)}


def rerun_unchanged(n: int, bundle: Path) -> dict:
    """A rerun of `mc2export index` over an unchanged library of ``n`` photos (start-up included). The photos
    are stand-in files and the library is filled directly (their size and mtime recorded, random rows): the
    rerun never opens a photo, so what they hold does not matter."""
    from mc2export.bench.bundles import load_bundle
    from mc2export.library.store import Item, Library, Model

    b = load_bundle(bundle, verify=False)
    tmp = Path(tempfile.mkdtemp(prefix="index-rerun-"))
    try:
        rng = np.random.default_rng(0)
        items = []
        for i in range(n):
            f = tmp / "photos" / f"d{i // 1000:02d}" / f"IMG_{i:05d}.jpg"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"x" * (i % 7 + 1))
            st = f.stat()
            items.append(Item(str(f), st.st_size, st.st_mtime_ns, rng.normal(size=b.config["embed_dim"])))
        dim = int(b.config["embed_dim"])
        desc = f"{b.format} {b.precision} batch {b.config.get('batch', 1)} bundle {b.path}"
        with Library.open(tmp / "lib", Model(b.variant, b.checksum, dim, desc, str(b.path))) as lib:
            for i in range(0, n, 5000):
                lib.commit(items[i:i + 5000])
        cmd = [sys.executable, "-m", "mc2export.cli", "index", str(tmp / "photos"), "--out", str(tmp / "lib"),
               "--bundle", str(bundle), "-q"]
        m = run_child(cmd)
        st = json.loads((tmp / "lib" / "stats.json").read_text())
        assert st["unchanged"] == n and st["indexed"] == 0, st
        return {"photos": n, "wall_s_incl_startup": m["wall_s"], "scan_s": st["stages_s"]["scan"],
                "peak_rss_mb": m["peak_rss_mb"]}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def kill_resume(bundle: Path, kills: int = 10, photos: int = 120, seed: int = 0, log=print) -> dict:
    """``kills`` SIGKILLs of `mc2export index` at random moments, then a rerun to the end: the library must equal
    an uninterrupted run's (every photo once, same rows, same embedding bytes). Small 640 x 480 photos."""
    import signal

    from PIL import Image

    from mc2export.library.store import Library

    tmp = Path(tempfile.mkdtemp(prefix="index-kill-"))
    rng = random.Random(seed)
    try:
        src = tmp / "photos"
        src.mkdir()
        for i in range(photos):
            a = np.random.default_rng(i).integers(0, 255, (30, 40, 3), dtype=np.uint8)
            Image.fromarray(a).resize((640, 480), Image.Resampling.BICUBIC).save(src / f"{i:04d}.jpg", quality=90)

        def cmd(lib):
            return [sys.executable, "-m", "mc2export.cli", "index", str(src), "--out", str(lib), "--bundle",
                    str(bundle), "-q", "--commit-every", "4"]

        def dump(lib):
            with Library.open(lib) as L:
                return [(p, st, sh, r, L.vector(sh, r).tobytes() if st == "ok" else None)
                        for p, _, _, st, sh, r, _ in L.photos()]

        t0 = time.perf_counter()
        run_child(cmd(tmp / "ref"))
        full = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_child(cmd(tmp / "ref"))  # nothing to do: the start-up alone
        start = time.perf_counter() - t0
        per_photo = max(full - start, 0.1) / photos
        progress = []
        for k in range(kills):
            left = photos - (progress[-1] if progress else 0)
            p = subprocess.Popen(cmd(tmp / "lib"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # a moment inside the run: from start-up to the middle of what is left (the kills add up)
            time.sleep(rng.uniform(0.5 * start, start + 0.5 * left * per_photo))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
            p.wait()
            n = len(dump(tmp / "lib")) if (tmp / "lib" / "manifest.sqlite").is_file() else 0
            progress.append(n)
            log(f"  kill {k + 1}/{kills}: {n} photos committed")
        run_child(cmd(tmp / "lib"))
        same = dump(tmp / "lib") == dump(tmp / "ref")
        return {"kills": kills, "photos": photos, "committed_after_each_kill": progress, "identical": same}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def synthetic(n: int, d: int = 512, clusters: int = 2000, seed: int = 0) -> np.ndarray:
    """Unit vectors around random centres (photo embeddings cluster; uniform random vectors do not)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d)).astype(np.float32)
    out = np.empty((n, d), np.float16)
    for i in range(0, n, 100_000):
        m = min(100_000, n - i)
        v = centres[rng.integers(0, clusters, m)] + rng.normal(0, 0.6, (m, d)).astype(np.float32)
        out[i:i + m] = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16)
    return out


def search_latency(n: int, log=print) -> dict:
    from mc2export.library.search import build_ann, ann_scores, exact_scores
    from mc2export.library.store import Item, Library, Model

    tmp = Path(tempfile.mkdtemp(prefix="index-search-"))
    try:
        lib = Library.open(tmp / "lib", Model("mobileclip2-s0", "0" * 64, 512, "synthetic"))
        vecs = synthetic(n)
        for i in range(0, n, 50_000):
            lib.commit([Item(f"/synthetic/{j:08d}.jpg", 1, 1, vecs[j]) for j in range(i, min(n, i + 50_000))])
        rng = np.random.default_rng(1)
        qs = vecs[rng.integers(0, n, 30)].astype(np.float32) + rng.normal(0, 0.05, (30, 512)).astype(np.float32)
        qs /= np.linalg.norm(qs, axis=1, keepdims=True)
        exact_scores(lib, qs[0], 20)
        te, truth = [], []
        for q in qs:
            t0 = time.perf_counter()
            truth.append(exact_scores(lib, q, 20))
            te.append(time.perf_counter() - t0)
        out = {"rows": n, "exact_p50_ms": 1e3 * statistics.median(te), "exact_p90_ms": 1e3 * np.percentile(te, 90)}
        try:
            info = build_ann(lib, log=log)
        except Exception as e:  # faiss missing
            out["ann"] = f"not measured: {e}"
            return out
        ann_scores(lib, qs[0], 20)
        ta, rec = [], []
        for q, tr in zip(qs, truth):
            t0 = time.perf_counter()
            got = ann_scores(lib, q, 20)
            ta.append(time.perf_counter() - t0)
            rec.append(len({(s, r) for _, s, r in got} & {(s, r) for _, s, r in tr}) / 20)
        out["ann"] = {**info, "p50_ms_incl_load": 1e3 * statistics.median(ta), "recall_at_20": statistics.mean(rec)}
        # the same with the index already in memory (a server keeps it loaded)
        import faiss

        index = faiss.deserialize_index(np.fromfile(lib.path / "ann.faiss", dtype=np.uint8))
        index.nprobe = info["nprobe"]
        tm = []
        for q in qs:
            t0 = time.perf_counter()
            index.search(q[None], 20)
            tm.append(time.perf_counter() - t0)
        out["ann"]["p50_ms_in_memory"] = 1e3 * statistics.median(tm)
        lib.close()
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def render(res: dict) -> str:
    """index_speed.md's figures from the JSON (the prose around them is written by hand)."""
    c = res["cpu"]
    la = [res.get("loadavg_start"), res.get("loadavg_end")]
    out = [f"CPU: {c['model']}, {c['cpus']} CPUs, flags {', '.join(c['flags']) or 'none of avx512/vnni/amx'}; "
           f"load average at start {la[0][0]:.1f}, at end {la[1][0]:.1f}"
           + (" -- **provisional** (load > 1.5: the machine was shared)" if max(la[0][0], la[1][0]) > 1.5 else ""),
           ""]
    if "paired" in res:
        pr = res["paired"]
        out += [f"### Paired runs: {pr['take']} photos of 4032 x 3024 per run, {pr['rounds']} rounds, shuffled order", "",
                "| runner | photos/s (whole command) | photos/s (after start-up) | peak RSS MB | read s | decode s "
                "(sum over workers) | decode wait s | infer s | write s |", "|---|---|---|---|---|---|---|---|---|"]
        base = None
        for k, runs in pr["runs"].items():
            if not runs:
                continue
            med = statistics.median(r["photos_per_s"] for r in runs)
            base = med if k == "embed" else base
            steady = [r["steady_photos_per_s"] for r in runs if "steady_photos_per_s" in r]
            st = [r.get("stages_s", {}) for r in runs]

            def m(key):
                v = [x[key] for x in st if key in x]
                return f"{statistics.median(v):.1f}" if v else "-"

            out.append(f"| {k} | {med:.2f} | {statistics.median(steady):.2f} | "
                       f"{max(r['peak_rss_mb'] for r in runs):.0f} | {m('read')} | {m('decode')} | {m('decode_wait')} | "
                       f"{m('infer')} | {m('write')} |" if steady else
                       f"| {k} | {med:.2f} | - | {max(r['peak_rss_mb'] for r in runs):.0f} | - | - | - | - | - |")
        if base:
            out += ["", "Speed-up over `embed` (whole command, median of rounds): " + ", ".join(
                f"{k} {statistics.median(r['photos_per_s'] for r in runs) / base:.1f}x"
                for k, runs in pr["runs"].items() if k != "embed" and runs)]
        out.append("")
    if "fidelity" in res:
        f = res["fidelity"]
        out += ["### Reduced (DCT-scaled) decode vs exact full-size decode", "",
                f"{f['photos']} corpus photos, model input in uint8 levels: max |diff| {f['max_abs_levels']:.0f}, RMS "
                f"{f['rms_levels_mean']:.2f} (worst photo {f['rms_levels_max']:.2f}); embedding cosine min "
                f"{f['cosine_min']:.6f}, mean {f['cosine_mean']:.6f}; decode + preprocess p50 "
                f"{f['decode_ms_reduced_p50']:.0f} ms reduced vs {f['decode_ms_exact_p50']:.0f} ms exact.", ""]
    if "rerun_unchanged" in res:
        r = res["rerun_unchanged"]
        out += [f"### Rerun on an unchanged library of {r['photos']} photos: {r['wall_s_incl_startup']:.1f} s including "
                f"start-up (scan + diff {r['scan_s']:.2f} s), peak RSS {r['peak_rss_mb']:.0f} MB", ""]
    if "kill_resume" in res:
        k = res["kill_resume"]
        out += [f"### Kill and resume: {k['kills']} SIGKILLs at random moments on {k['photos']} photos (committed after "
                f"each: {k['committed_after_each_kill']}), then a rerun: library identical to the uninterrupted "
                f"run's: **{k['identical']}**", ""]
    if res.get("search"):
        out += ["### Search, 512-d fp16 unit vectors (synthetic, clustered), top-20", "",
                "| rows | exact p50 ms | exact p90 ms | IVF nlist / nprobe | IVF recall@20 | IVF p50 ms (load + search) "
                "| IVF p50 ms (in memory) | IVF build s |", "|---|---|---|---|---|---|---|---|"]
        for sr in res["search"]:
            a = sr.get("ann")
            if isinstance(a, dict):
                out.append(f"| {sr['rows']:,} | {sr['exact_p50_ms']:.0f} | {sr['exact_p90_ms']:.0f} | {a['nlist']} / "
                           f"{a['nprobe']} | {a['recall_at_20']:.3f} | {a['p50_ms_incl_load']:.0f} | "
                           f"{a['p50_ms_in_memory']:.1f} | {a['build_s']:.0f} |")
            else:
                out.append(f"| {sr['rows']:,} | {sr['exact_p50_ms']:.0f} | {sr['exact_p90_ms']:.0f} | {a} | | | | |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=Path(tempfile.gettempdir()) / "mc2export-index-corpus")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--take", type=int, default=100, help="photos per run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--bundle", action="append", default=[], help="NAME=DIR: an image bundle to index with")
    ap.add_argument("--checkpoint", type=Path, help="S0 weights for the `embed` baseline (and nothing else)")
    ap.add_argument("--exact-too", action="store_true", help="also run each bundle with --exact-decode")
    ap.add_argument("--fidelity", type=int, default=20, help="photos for the reduced-vs-exact decode check")
    ap.add_argument("--search", default="100000,1000000", help="library sizes for the search latency ('' none)")
    ap.add_argument("--kills", type=int, default=10, help="SIGKILLs of the kill-and-resume check (0: none)")
    ap.add_argument("--rerun", type=int, default=10000, help="photos of the unchanged-rerun check (0: none)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "index_speed")
    ap.add_argument("--render", type=Path, help="only print the markdown figures of an earlier JSON")
    args = ap.parse_args()
    if args.render:
        print(render(json.loads(args.render.read_text())))
        return
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    res = {"cpu": cpu(), "loadavg_start": os.getloadavg(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                   time.gmtime())}
    files = make_corpus(args.corpus, args.n, log)
    res["corpus"] = {"photos": len(files), "size": f"{W}x{H}", "bytes_mean": int(np.mean([f.stat().st_size
                                                                                          for f in files]))}
    if args.bundle and args.fidelity:
        res["fidelity"] = fidelity(files, Path(args.bundle[0].split("=", 1)[1]), args.fidelity)
        log(f"fidelity: {res['fidelity']}")
    if (args.bundle or args.checkpoint) and args.rounds:
        res["paired"] = paired(files, args, log)
    if args.rerun and args.bundle:
        res["rerun_unchanged"] = rerun_unchanged(args.rerun, Path(args.bundle[0].split("=", 1)[1]))
        log(f"rerun: {res['rerun_unchanged']}")
    if args.kills and args.bundle:
        res["kill_resume"] = kill_resume(Path(args.bundle[0].split("=", 1)[1]), args.kills, log=log)
        log(f"kill-resume: {res['kill_resume']}")
    res["search"] = [search_latency(int(n), log) for n in args.search.split(",") if n]
    res["loadavg_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=float) + "\n")
    print(render(json.loads(json.dumps(res, default=float))))


if __name__ == "__main__":
    main()
