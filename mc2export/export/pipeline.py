"""The export pipeline: load and fold the weights, wrap each tower, convert it with the format module,
validate it against the folded PyTorch model and write the bundle (``export_bundle``)."""
from __future__ import annotations

import contextlib
import importlib
import json
import logging
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from ..errors import UserError

FORMATS = ("onnx", "coreml", "executorch", "openvino", "litert")
TOWERS = ("image", "text")
# Core ML defaults to fp16, the Neural Engine's precision: an fp32 ML program runs on the CPU/GPU only
DEFAULT_PRECISION = {"onnx": "fp32", "coreml": "fp16", "executorch": "fp32", "openvino": "fp32", "litert": "fp32"}
PIP_HINT = "pip install 'mc2export[export]'"


def format_module(fmt: str):
    if fmt not in FORMATS:
        raise UserError(f"unknown export format '{fmt}': choose one of {', '.join(FORMATS)}")
    return importlib.import_module(f".{fmt}", __package__)


def precisions(fmt: str) -> Sequence[str]:
    """Precision modes of a format (cheap: the format modules import their exporters lazily)."""
    return format_module(fmt).PRECISIONS


def parse_towers(towers) -> tuple:
    if isinstance(towers, str):
        towers = [t.strip() for t in towers.split(",") if t.strip()]
    towers = tuple(dict.fromkeys(towers))
    bad = [t for t in towers if t not in TOWERS]
    if bad or not towers:
        raise UserError(f"--towers must name image and/or text (comma-separated), got {','.join(bad) or 'nothing'}")
    return tuple(t for t in TOWERS if t in towers)


@contextlib.contextmanager
def quiet_toolchains():
    """Silence the exporters' warnings and info logging (not errors)."""
    names = ["coremltools", "torch", "torch.onnx", "torch.export", "torch._export", "executorch", "torchao",
             "onnxruntime", "onnxscript", "root"]
    saved = {n: logging.getLogger(n).level for n in names}
    try:  # coremltools draws tqdm progress bars for every pass pipeline
        import functools

        import tqdm

        tqdm_init = tqdm.tqdm.__init__
        tqdm.tqdm.__init__ = functools.partialmethod(tqdm_init, disable=True)
    except ImportError:  # pragma: no cover
        tqdm = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n in names:
            logging.getLogger(n).setLevel(logging.ERROR)
        try:
            yield
        finally:
            for n, lvl in saved.items():
                logging.getLogger(n).setLevel(lvl)
            if tqdm is not None:
                tqdm.tqdm.__init__ = tqdm_init


def load_model(variant: str, *, checkpoint=None, pretrained: bool = False, random_weights: bool = False):
    """(folded model, weights description) from exactly one weight source."""
    from .. import cards, create_model, fold
    from .bundle import sha256_file

    sources = sum(bool(x) for x in (checkpoint is not None, pretrained, random_weights))
    if sources > 1:
        raise UserError("give one weight source: --pretrained, --checkpoint PATH or --random-weights")
    if sources == 0:
        pretrained = True
    vid = cards.resolve_variant(variant)
    card = cards.get_card(vid)
    if random_weights:
        model = create_model(vid)
        weights = {"source": "random", "random_weights": True,
                   "note": "RANDOM WEIGHTS (train-time init, seedless): for latency work only, embeddings are meaningless"}
    elif checkpoint is not None:
        path = Path(checkpoint)
        model = create_model(vid, checkpoint=path)
        weights = {"source": "checkpoint", "random_weights": False, "file": path.name,
                   "sha256": sha256_file(path) if path.is_file() else None, "layout": model.layout}
    else:
        try:
            model = create_model(vid, pretrained=True)
        except ImportError as e:  # the hub module is optional in some installs
            raise UserError(f"cannot download pretrained weights here ({e}): pass --checkpoint PATH "
                            "(or --random-weights for latency work)") from None
        src = next((s for s in card["weights"]["sources"] if s["layout"] == card["weights"]["default"]), {})
        weights = {"source": "pretrained", "random_weights": False, "repo_id": src.get("repo_id"),
                   "file": src.get("filename"), "layout": model.layout}
    weights["towers"] = list(model.towers)
    return fold(model), weights


def _metadata(card: dict, tower: str, fmt: str, precision: str, batch: int, normalize: bool, weights: dict,
              logit_scale: float, contract: dict) -> Dict[str, str]:
    from .. import __version__

    pre = card["preprocess"]
    rnd = weights.get("random_weights")
    desc = (f"{card['name']} {tower} encoder ({fmt}, {precision}, batch {batch}): "
            f"{'L2-normalized' if normalize else 'unnormalized'} {card['embed_dim']}-d embedding."
            + (" RANDOM WEIGHTS - latency work only." if rnd else ""))
    meta = {
        "description": desc,
        "author": "mc2export " + __version__ + f" (model: Apple {card['family']})",
        "license": card.get("license", "see the weights' source"),
        "mc2export.bundle_version": "2",
        "mc2export.variant": card["id"],
        "mc2export.name": card["name"],
        "mc2export.tower": tower,
        "mc2export.format": fmt,
        "mc2export.precision": precision,
        "mc2export.batch": str(batch),
        "mc2export.embed_dim": str(card["embed_dim"]),
        "mc2export.output_normalized": "true" if normalize else "false",
        "mc2export.logit_scale": repr(float(logit_scale)) if logit_scale is not None else "",
        "mc2export.input": json.dumps(contract, separators=(",", ":")),
        "mc2export.weights_source": weights["source"],
        "mc2export.random_weights": "true" if rnd else "false",
        "mc2export.version": __version__,
    }
    if tower == "image":
        meta.update({"mc2export.resolution": str(card["resolution"]), "mc2export.resize": pre["resize_mode"],
                     "mc2export.crop": pre["crop"], "mc2export.interpolation": pre["interpolation"],
                     "mc2export.mean": json.dumps(pre["mean"]), "mc2export.std": json.dumps(pre["std"])})
    else:
        meta.update({"mc2export.context_length": str(card["text"]["context_length"]),
                     "mc2export.eot_token": "49407", "mc2export.sot_token": "49406", "mc2export.pad_token": "0",
                     "mc2export.pooling": "argmax(token ids) = first end-of-text token"})
    return meta


def _expected_io(fmt_mod, tower: str, card: dict, batch: int) -> dict:
    if hasattr(fmt_mod, "expected_io"):
        return fmt_mod.expected_io(tower, card, batch)
    r = card["resolution"]
    ctx = card["text"]["context_length"]
    inp = ({"name": "image", "dtype": "float32", "shape": [batch, 3, r, r]} if tower == "image"
           else {"name": "tokens", "dtype": "int32", "shape": [batch, ctx]})
    return {"inputs": [inp], "outputs": [{"name": "embedding", "dtype": "float32", "shape": [batch, card["embed_dim"]]}]}


def default_precision(fmt: str) -> str:
    return DEFAULT_PRECISION.get(fmt, "fp32")


def coreml_compute_units(precision: str) -> list:
    """The compute units a Core ML program of ``precision`` can use: the Neural Engine computes in fp16 only,
    so Core ML never schedules an fp32 program there (coremltools' typed-execution guide)."""
    return ["cpu", "gpu"] if precision == "fp32" else ["cpu", "gpu", "neural_engine"]


def default_out(fmt: str, variant: str, precision: str, delegate: Optional[str] = None) -> Path:
    from .. import cards

    kind = fmt + (f"-{delegate}" if delegate and delegate != "xnnpack" else "")
    return Path(f"{cards.resolve_variant(variant)}-{kind}-{precision}")


def export_bundle(fmt: str, variant: str, *, out=None, checkpoint=None, pretrained: bool = False,
                  random_weights: bool = False, precision: Optional[str] = None, towers=TOWERS, force: bool = False,
                  batch: int = 1, normalize: bool = True, delegate: Optional[str] = None,
                  calibration: Optional[Path] = None,
                  log: Callable[[str], None] = lambda s: None, _hooks: Optional[dict] = None) -> dict:
    """Export, validate and write a bundle; returns the summary (also what ``validation.json`` holds).

    ``precision`` defaults to :data:`DEFAULT_PRECISION` (fp16 for Core ML, fp32 otherwise).
    ``calibration``: a folder of images (+ ``captions.txt``) for OpenVINO's int8 / auto quantization.

    Raises ``UserError`` for bad input (nothing is written) and :class:`.validate.ValidationError`
    when an exported model does not reproduce the folded model (nothing is written either).
    """
    from .. import cards
    from . import bundle as B
    from . import validate as V
    from .wrappers import build_wrappers, example_input

    t_start = time.perf_counter()
    hooks = _hooks or {}
    if fmt not in FORMATS:
        raise UserError(f"unknown export format '{fmt}': choose one of {', '.join(FORMATS)}")
    if checkpoint is not None:
        from ..checkpoint import register_embedded_card

        register_embedded_card(checkpoint)  # a trained student's card travels in its checkpoint
    vid = cards.resolve_variant(variant)
    card = cards.get_card(vid)
    precision = precision or default_precision(fmt)
    if precision not in precisions(fmt):
        raise UserError(f"{fmt} precision '{precision}' is not supported: choose one of {', '.join(precisions(fmt))}")
    towers = parse_towers(towers)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise UserError(f"--batch must be a positive integer, got {batch!r}")
    if fmt == "executorch":
        delegate = delegate or "xnnpack"
        format_module(fmt).check_delegate(delegate, precision)
    elif delegate not in (None, ""):
        raise UserError(f"--delegate is an ExecuTorch option (xnnpack or coreml), not one of {fmt}")
    if calibration is not None and not ((fmt == "openvino" and precision in ("int8", "auto"))
                                        or (fmt == "litert" and precision == "int8-static")):
        raise UserError("--calibration is for `mc2export openvino --precision int8|auto` (NNCF's calibration set) "
                        "and `mc2export litert --precision int8-static`")
    if calibration is not None and not Path(calibration).is_dir():
        raise UserError(f"--calibration '{calibration}' is not a folder: pass a folder of images (and captions.txt)")
    if calibration is not None:
        format_module(fmt).check_calibration(calibration, parse_towers(towers))
    out = Path(out) if out is not None else default_out(fmt, vid, precision, delegate)
    B.check_out(out, force)
    fmt_mod = format_module(fmt)
    with quiet_toolchains():
        fmt_mod.require()

    if sum(bool(x) for x in (checkpoint is not None, pretrained, random_weights)) > 1:
        raise UserError("give one weight source: --pretrained, --checkpoint PATH or --random-weights")
    t0 = time.perf_counter()
    # bad input fails before the first progress line: errors stay one line
    with quiet_toolchains():
        model, weights = load_model(vid, checkpoint=checkpoint, pretrained=pretrained, random_weights=random_weights)
    missing = [t for t in towers if t not in model.towers]
    if missing:
        raise UserError(f"the weights hold no {' / '.join(missing)} tower (image-only checkpoint): "
                        "pass --towers image, or a checkpoint with both towers")
    log(f"[mc2export] {fmt} export of {card['name']} ({', '.join(towers)}; {precision}; batch {batch}; "
        f"{'normalized' if normalize else 'unnormalized'} outputs)")
    logit_scale = float(model.logit_scale.exp()) if model.logit_scale is not None else None
    log(f"  weights: {weights['source']}" + (f" ({weights.get('file')})" if weights.get("file") else "")
        + f"; folded in {time.perf_counter() - t0:.1f}s")
    if weights.get("random_weights"):
        log("  NOTE: random weights -- the bundle is stamped as such (latency work only)")

    probe = V.probe_inputs(card)
    ref_wrappers = build_wrappers(model, towers, normalize)  # the [0, 1]-input contract used as reference
    result = {"format": fmt, "precision": precision, "variant": vid, "batch": batch,
              "output_normalized": normalize, "towers": {}, "files": {}}
    import torch

    with B.AtomicDir(out, force) as tmp:
        scratch = tmp / ".work"
        scratch.mkdir()
        exported = {}
        for tower in towers:
            t1 = time.perf_counter()
            contract = fmt_mod.input_contract(tower, card, batch) if hasattr(fmt_mod, "input_contract") else None
            affine = (fmt_mod.image_affine(card, batch) if (tower == "image" and hasattr(fmt_mod, "image_affine"))
                      else None)
            wrapper = build_wrappers(model, [tower], normalize, image_affine=affine)[tower]
            example = example_input(tower, card, batch)
            contract = contract or _default_contract(tower, card, batch)
            meta = _metadata(card, tower, fmt, precision, batch, normalize, weights, logit_scale, contract)
            log(f"  {tower}: exporting")
            if "before_export" in hooks:
                hooks["before_export"](tower)
            with quiet_toolchains():
                info = fmt_mod.export(tower, wrapper, example, tmp, precision, meta, scratch, log=log, card=card,
                                      calibration=probe, delegate=delegate, calibration_dir=calibration)
            t_export = time.perf_counter() - t1
            info["contract"] = contract
            if fmt == "coreml" or info.get("delegate") == "CoreML":
                info["compute_units"] = coreml_compute_units(precision)
            log(f"  {tower}: exported in {t_export:.1f}s; validating")
            t2 = time.perf_counter()
            with quiet_toolchains():
                val = _validate_tower(fmt_mod, fmt, tower, tmp, info, wrapper, ref_wrappers[tower], probe, card,
                                      precision, batch, V)
            val["export_seconds"] = round(t_export, 2)
            val["validate_seconds"] = round(time.perf_counter() - t2, 2)
            exported[tower] = (info, val)
            result["towers"][tower] = val
            log(f"  {tower}: {val['summary']}")
        # zero-shot agreement on the probe set (reference towers stand in for the ones not exported)
        if "text" in model.towers:
            full_ref = build_wrappers(model, [t for t in TOWERS if t not in exported], normalize)
            n = probe["n_labels"]
            with torch.no_grad():
                if "image" in exported:
                    img_ours, img_ref = exported["image"][1]["_outputs"], exported["image"][1]["_ref"]
                else:
                    img_ours = img_ref = full_ref["image"](probe["image"]).numpy()
                if "text" in exported:
                    txt_ours, txt_ref = exported["text"][1]["_outputs"][:n], exported["text"][1]["_ref"][:n]
                else:
                    txt_ours = txt_ref = full_ref["text"](probe["text"][:n]).numpy()
            result["zero_shot"] = V.zero_shot(img_ours, txt_ours, img_ref, txt_ref, probe["labels"])
        _write_vectors(tmp, exported, probe, precision, normalize, card, V)
        for _, val in exported.values():
            val.pop("_outputs", None)
            val.pop("_ref", None)
        if "text" in towers:
            from ..tokenizer import get_tokenizer

            get_tokenizer().export_vocab(tmp)
            result["tokenizer"] = V.tokenizer_parity(tmp, V.probe_texts(), card["text"]["context_length"])
            if not result["tokenizer"]["passed"]:
                raise V.ValidationError(f"tokenizer files do not reproduce mc2export.tokenize: {result['tokenizer']}")
        B.remove_tree(scratch)
        if "before_commit" in hooks:
            hooks["before_commit"](tmp)
        versions = fmt_mod.versions()
        validation = {
            "format": fmt, "precision": precision, "variant": vid, "created": B.now_iso(),
            "probe": {"images": int(len(probe["image"])), "texts": int(len(probe["text"])),
                      "labels": V.PROBE_LABELS, "seed": 0},
            "tolerance": V.tolerance_for(precision),
            "towers": result["towers"], "zero_shot": result.get("zero_shot"), "tokenizer": result.get("tokenizer"),
            "passed": True, "versions": versions,
        }
        B.write_json(tmp / "validation.json", validation)
        config = _config(card, fmt, precision, batch, normalize, weights, logit_scale, exported, versions)
        config["files"] = B.file_table(tmp)
        from .reading import write_config

        write_config(tmp, config)
        result["files"] = config["files"]
        result["total_bytes"] = sum(f["bytes"] for f in config["files"].values())
    result["out"] = str(Path(out).absolute())
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    result["prediction"] = {t: v.get("prediction") for t, v in result["towers"].items()}
    return result


def _write_vectors(folder, exported, probe, precision, normalize, card, V) -> None:
    """``verify/``: probe rows and the validation's fp32 reference outputs (``_ref``), for checks where the
    bundle runs (:mod:`.vectors`)."""
    from . import vectors

    ref = {t: val["_ref"] for t, (_, val) in exported.items()}
    chosen = {t: info["precision"] for t, (info, _) in exported.items() if info.get("precision", precision) != precision}
    vectors.write(folder, precision=precision, tolerance=V.tolerance_for(precision), normalized=normalize,
                  embed_dim=card["embed_dim"], per_tower={t: (p, V.tolerance_for(p)) for t, p in chosen.items()},
                  image=(probe["image_uint8"], ref["image"]) if "image" in ref else None,
                  text=(probe["text"].numpy(), ref["text"], V.probe_texts()) if "text" in ref else None)


def _default_contract(tower: str, card: dict, batch: int) -> dict:
    if tower == "image":
        r = card["resolution"]
        pre = card["preprocess"]
        return {"name": "image", "dtype": "float32", "shape": [batch, 3, r, r], "layout": "NCHW", "color": "RGB",
                "range": [0.0, 1.0], "scaling": "uint8 / 255 after resize + center crop",
                "normalization": "inside the model" if (pre["mean"] != [0, 0, 0] or pre["std"] != [1, 1, 1])
                else "none needed (mean 0, std 1)"}
    return {"name": "tokens", "dtype": "int32", "shape": [batch, card["text"]["context_length"]],
            "layout": "[SOT, ids..., EOT, 0...]", "sot": 49406, "eot": 49407, "pad": 0}


def _validate_tower(fmt_mod, fmt, tower, folder, info, wrapper, ref_wrapper, probe, card, precision, batch, V):
    x = probe[tower].numpy()
    ref_t, headroom = V.activation_absmax(ref_wrapper, probe[tower])  # the reference outputs, fp32
    ref = ref_t.numpy()
    run, io, how = fmt_mod.runner(folder, tower, info, wrapper=wrapper, card=card, precision=precision)
    expected = _expected_io(fmt_mod, tower, card, batch)
    bad_io = V.check_io(io, expected)
    ours = V.run_batched(run, x, len(x) if getattr(run, "any_batch", False) else batch)
    figures = V.compare(ours, ref)
    tol = V.tolerance_for(info.get("precision", precision))  # OpenVINO auto: the tower's chosen precision
    bad = V.check(figures, tol)
    val = {"files": info["files"], "io": io, "io_ok": not bad_io, "prediction": how, **figures, "tolerance": tol,
           "activation_absmax_fp32": headroom, "passed": not bad and not bad_io,
           **{k: v for k, v in info.items() if k not in ("files",) and not k.startswith("_")}}
    if "emulation" in info:
        val["emulation"] = info["emulation"]
    if bad or bad_io:
        raise V.ValidationError(V.format_failure(fmt, tower, precision, bad + bad_io, figures, tol))
    val["summary"] = (f"cosine min {figures['cosine_min']:.6f}, max-abs {figures['max_abs_over_std']:.1e} x std "
                      f"({how})")
    val["_outputs"], val["_ref"] = ours, ref
    return val


def _config(card, fmt, precision, batch, normalize, weights, logit_scale, exported, versions) -> dict:
    from .bundle import BUNDLE_FORMAT, BUNDLE_VERSION, now_iso

    pre = card["preprocess"]
    models = {}
    for tower, (info, val) in exported.items():
        models[tower] = {"file": info["files"][0], "files": info["files"], "input": info.get("contract"),
                         "inputs": val["io"]["inputs"], "outputs": val["io"]["outputs"],
                         "output": {"name": "embedding", "dtype": "float32", "shape": [batch, card["embed_dim"]],
                                    "l2_normalized": normalize},
                         **{k: v for k, v in info.items() if k in ("opset", "exporter", "external_data", "int8",
                                                                    "fp16", "compression", "deployment_target",
                                                                    "delegate", "compute_precision", "quantization",
                                                                    "compute_units", "openvino", "auto", "litert",
                                                                    "signature")}}
    return {
        "format": BUNDLE_FORMAT, "bundle_version": BUNDLE_VERSION, "created": now_iso(),
        "runtime": fmt, "variant": card["id"], "name": card["name"], "family": card["family"],
        "precision": precision, "batch": batch,
        "resolution": card["resolution"],
        "preprocess": {"resolution": pre["resolution"], "resize": pre["resize_mode"], "crop": pre["crop"],
                       "interpolation": pre["interpolation"], "mean": pre["mean"], "std": pre["std"]},
        "tokenizer": {"vocab": "vocab.json", "merges": "merges.txt", "context_length": card["text"]["context_length"],
                      "sot_token": 49406, "eot_token": 49407, "pad_token": 0, "vocab_size": 49408,
                      "cleaning": "ftfy.fix_text, html.unescape x2, strip, collapse whitespace, lower-case",
                      "truncation": "keep the first 77 ids, last id forced to EOT"}
        if "text" in exported else None,
        "context_length": card["text"]["context_length"],
        "embed_dim": card["embed_dim"],
        "logit_scale": logit_scale,
        "output_normalized": normalize,
        "models": models,
        "weights": weights,
        "versions": versions,
        "validation": "validation.json",
        "license": card.get("license"),
    }


def summary_table(result: dict) -> str:
    from .bundle import human_bytes

    rows = [("file", "size", "precision", "cosine min", "max-abs/std", "run", "time")]
    for tower, val in result["towers"].items():
        size = sum(result["files"][f]["bytes"] for f in result["files"]
                   if any(f == n or f.startswith(n + "/") for n in val["files"]))
        rows.append((", ".join(val["files"]), human_bytes(size), val.get("precision", result["precision"]),
                     f"{val['cosine_min']:.6f}",
                     f"{val['max_abs_over_std']:.1e}", _short_how(val["prediction"]),
                     f"{val['export_seconds'] + val['validate_seconds']:.1f}s"))
    other = [f for f in result["files"] if not any(f == n or f.startswith(n + "/")
                                                   for v in result["towers"].values() for n in v["files"])]
    for f in other:
        rows.append((f, human_bytes(result["files"][f]["bytes"]), "", "", "", "", ""))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    zs = result.get("zero_shot")
    tail = [f"bundle: {result['out']}  ({human_bytes(result['total_bytes'])}, {result['seconds']}s)"]
    if zs:
        tail.append(f"zero-shot top-1 agreement on the probe set: {zs['top1_agreement']:.0%} of {zs['images']} images "
                    f"({zs['decided_images']} with a reference margin >= 0.02)")
    units = {", ".join(v["compute_units"]) for v in result["towers"].values() if v.get("compute_units")}
    if units:
        tail.append(f"Core ML compute units: {' / '.join(sorted(units))}"
                    + (" -- fp32 runs on the CPU/GPU only, never the Neural Engine (it computes in fp16): export "
                       "--precision fp16 (the default) for the Neural Engine" if result["precision"] == "fp32" else ""))
    tail += [f"{t}: {v['auto']['reason']}" for t, v in result["towers"].items() if v.get("auto")]
    tail += [f"{t}: validated as {v['prediction']}" for t, v in result["towers"].items() if "no bf16" in str(v["prediction"])]
    skipped = [t for t, v in result["towers"].items() if str(v["prediction"]).startswith("skipped")]
    if skipped:
        tail.append("Core ML prediction was SKIPPED (needs macOS): the saved programs were checked (I/O, metadata) "
                    "and their weights, read back from the saved files, were run in PyTorch.")
    return "\n".join(lines + tail)


def _short_how(how: str) -> str:
    how = str(how)
    return how.split(":")[0] if len(how) > 40 else how


__all__ = ["export_bundle", "FORMATS", "TOWERS", "DEFAULT_PRECISION", "default_precision", "coreml_compute_units",
           "precisions", "parse_towers", "load_model", "summary_table",
           "format_module", "default_out", "quiet_toolchains"]
