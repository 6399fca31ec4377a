#!/usr/bin/env python3
"""Zero-shot classification with an exported bundle (ONNX Runtime, ExecuTorch, or Core ML on macOS).

    python examples/python/zero_shot.py BUNDLE photo.jpg [more.jpg ...] --labels "cat,dog,car"
           [--templates simple|openai|none] [--top-k 5] [--json]

The class embeddings are the mean of each label's prompt embeddings (CLIP's prompt ensemble), the
probabilities softmax(logit_scale * cosine) -- what the iOS and Android apps compute on device.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mc2bundle import SIMPLE_TEMPLATES, Bundle, BundleError, class_embeddings, parse_labels  # noqa: E402

OPENAI_TEMPLATES_FILE = Path(__file__).resolve().parents[1] / "shared" / "vectors" / "text.json"


def templates_for(name: str):
    if name == "simple":
        return SIMPLE_TEMPLATES
    if name == "none":
        return ("{}",)
    if name == "openai":  # the 80 templates, as committed with the shared vectors
        return tuple(json.loads(OPENAI_TEMPLATES_FILE.read_text(encoding="utf-8"))["templates"]["openai"])
    raise BundleError(f"unknown --templates {name!r}: simple, openai or none")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", help="bundle folder written by mc2export onnx|executorch|coreml")
    ap.add_argument("images", nargs="+", help="image files")
    ap.add_argument("--labels", "-l", required=True, help='comma-separated class names: "cat,dog,car"')
    ap.add_argument("--templates", default="simple", help="prompt ensemble: simple (7, default), openai (80), none")
    ap.add_argument("--top-k", "-k", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="runtime threads (0: the runtime's default)")
    ap.add_argument("--json", action="store_true", help="print the probabilities as JSON")
    args = ap.parse_args(argv)
    try:
        labels = parse_labels(args.labels)
        templates = templates_for(args.templates)
        bundle = Bundle(args.bundle, threads=args.threads)
        classes, cut = class_embeddings(bundle, labels, templates)
        if cut:
            print(f"warning: {cut} prompt(s) longer than {bundle.tokenizer.context_length} tokens were truncated",
                  file=sys.stderr)
        results = []
        for path in args.images:
            img = bundle.encode_image(path)
            logits = bundle.logit_scale * (classes @ img)
            p = np.exp(logits - logits.max())
            p /= p.sum()
            results.append({"image": str(path), "probs": {l: float(v) for l, v in zip(labels, p)}})
    except BundleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"bundle": bundle.config["variant"], "runtime": bundle.runtime, "labels": labels,
                          "templates": args.templates, "results": results}, indent=1))
        return 0
    width = max(len(l) for l in labels + ["label"])
    for r in results:
        print(f"{r['image']}  ({bundle.config.get('name', bundle.config['variant'])}, {bundle.runtime})")
        for rank, (label, v) in enumerate(sorted(r["probs"].items(), key=lambda kv: -kv[1])[: args.top_k], 1):
            print(f"  {rank:<4} {label:<{width}}  {v:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
