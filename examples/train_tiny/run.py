"""The tiny end-to-end reinforced-training experiment (a few minutes on a 2-core CPU).

1. generate coloured shapes with noisy web-like captions (9 classes, 64 px; shapes.py)
2. train a teacher with the CLIP loss            (mc2export train --lambda 0)
3. reinforce the data with it + a template captioner (mc2export reinforce)
4. distill a smaller student                     (mc2export train, lambda 1, ground-truth + synthetic)
5. the same student with the CLIP loss alone, same steps, same data and augmentations
6. (ablation) CLIP loss on ground-truth + synthetic captions, no teacher
7. zero-shot top-1 of each on held-out images    (mc2export eval-zeroshot)

Results: benchmarks/results/train_tiny.json and .md (or --results DIR).

    python examples/train_tiny/run.py                # the recorded configuration
    python examples/train_tiny/run.py --quick        # a smoke run (under a minute of training)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

import shapes  # noqa: E402


def mc2(*args, log: Path | None = None) -> float:
    """Run ``mc2export ARGS`` (this checkout) and return its wall time; stderr goes to ``log``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)])}
    t0 = time.time()
    with open(log, "w") if log else open(os.devnull, "w") as err:
        r = subprocess.run([sys.executable, "-m", "mc2export.cli", *map(str, args)], env=env, cwd=str(HERE),
                           stderr=err, stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        tail = Path(log).read_text()[-2000:] if log else ""
        raise SystemExit(f"mc2export {' '.join(map(str, args[:2]))} failed:\n{tail}")
    print(r.stdout.strip())
    return time.time() - t0


def evaluate(ckpt: Path, data: Path, out: Path) -> dict:
    res = {}
    for templates in ("openai", "simple", "none"):
        mc2("eval-zeroshot", data / "eval", "--checkpoint", ckpt, "--templates", templates,
            "--json", out / f"zeroshot_{templates}.json")
        res[templates] = json.loads((out / f"zeroshot_{templates}.json").read_text())["top1"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/mc2export_train_tiny"))
    ap.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--teacher-steps", type=int, default=400)
    ap.add_argument("--student-steps", type=int, default=250)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--num-aug", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="tiny data and few steps: checks the pipeline only")
    a = ap.parse_args()
    if a.quick:
        a.teacher_steps, a.student_steps, a.num_aug = 30, 20, 2
    out, data = a.out, a.out / "data"
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    t0 = time.time()
    info = shapes.make_dataset(data, train_per_class=20 if a.quick else 60, eval_per_class=10 if a.quick else 30,
                               seed=a.seed)
    times["data"] = time.time() - t0
    print(f"data: {info['train']} training images, {info['eval']} held-out images, classes {info['classes']}")
    common = ["--batch-size", a.batch_size, "--workers", a.workers, "--seed", a.seed, "--log-every", 10]

    def train(name, data_arg, card, steps, lam, captions, lr):
        run = out / name
        times[name] = mc2("train", data_arg, "--student-card", HERE / card, "--out", run, "--steps", steps,
                          "--lambda", lam, "--captions", captions, "--lr", lr, "--warmup", max(1, steps // 10),
                          "--save-every", steps, *common, log=out / f"{name}.log")
        return run / "model.safetensors"

    teacher = train("teacher", data / "train", "teacher_card.json", a.teacher_steps, 0, "gt", 2e-3)
    results = {"teacher": evaluate(teacher, data, out / "teacher")}
    print(f"teacher zero-shot top-1: {results['teacher']}")
    times["reinforce"] = mc2("reinforce", data / "train", "--teacher", teacher, "--out", out / "dr", "--num-aug",
                             a.num_aug, "--captioner", "shapes:describe", "--batch-size", 32,
                             log=out / "reinforce.log")
    runs = {"student_distilled": (1.0, "both"), "student_clip_only": (0.0, "gt"),
            "student_clip_syn": (0.0, "both")}
    for name, (lam, captions) in runs.items():
        ckpt = train(name, out / "dr", "student_card.json", a.student_steps, lam, captions, 2e-3)
        results[name] = evaluate(ckpt, data, out / name)
        print(f"{name} zero-shot top-1: {results[name]}")
    record = {
        "experiment": "examples/train_tiny (coloured shapes, 9 classes, 64 px)",
        "quick": a.quick, "seed": a.seed, "data": info,
        "teacher": {"card": "teacher_card.json (ViT-tiny/8 + 4x128 text)", "steps": a.teacher_steps,
                    "loss": "CLIP (lambda 0), ground-truth captions"},
        "students": {"card": "student_card.json (MCi-tiny + 2x64 text)", "steps": a.student_steps,
                     "batch_size": a.batch_size, "num_aug": a.num_aug,
                     "runs": {k: {"lambda": v[0], "captions": v[1]} for k, v in runs.items()}},
        "zeroshot_top1": results, "chance": 1 / len(info["classes"]),
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_1min_at_end": round(os.getloadavg()[0], 2)},
    }
    if a.quick:
        print(json.dumps(record, indent=1))
        return
    a.results.mkdir(parents=True, exist_ok=True)
    (a.results / "train_tiny.json").write_text(json.dumps(record, indent=1) + "\n")
    (a.results / "train_tiny.md").write_text(markdown(record))
    print(f"wrote {a.results / 'train_tiny.json'} and .md")


def markdown(r: dict) -> str:
    z = r["zeroshot_top1"]
    names = {"teacher": "teacher (ViT-tiny, CLIP loss)", "student_distilled": "student, distilled (lambda 1, gt + syn)",
             "student_clip_only": "student, CLIP loss only (gt captions)",
             "student_clip_syn": "student, CLIP loss on gt + syn captions (ablation)"}
    rows = "\n".join(f"| {names[k]} | {v['openai']:.3f} | {v['simple']:.3f} | {v['none']:.3f} |" for k, v in z.items())
    return f"""# Tiny reinforced-training experiment (examples/train_tiny)

{r['data']['train']} training images / {r['data']['eval']} held-out images of {len(r['data']['classes'])} classes
(coloured shapes, 64 px, noisy web-like captions); chance = {r['chance']:.3f}. Teacher: {r['teacher']['steps']}
steps; students: {r['students']['steps']} steps x batch {r['students']['batch_size']}, {r['students']['num_aug']}
stored augmentations per image, synthetic captions from the template captioner (`shapes:describe`).

Zero-shot top-1 on the held-out images (prompt ensembles of `mc2export.zeroshot.TEMPLATES`):

| model | openai (80) | simple (7) | none (`{{}}`) |
|---|---|---|---|
{rows}

Wall time (s): {', '.join(f'{k} {v}' for k, v in r['seconds'].items())}; machine: {r['machine']['cpus']} CPUs,
load {r['machine']['load_1min_at_end']} (1-min average at the end; other jobs were running).
"""


if __name__ == "__main__":
    main()
