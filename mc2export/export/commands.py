"""``mc2export onnx | coreml | executorch | openvino | litert``: the export commands (registered by :mod:`mc2export.cli`).

Progress goes to stderr, the closing summary table to stdout. Exit codes: 0 done; 2 bad input
(``UserError``, one line, nothing written); 3 the exported model failed validation (the figures and
tolerance are printed, nothing written); 130 / 143 interrupted by SIGINT / SIGTERM (nothing written: the
one interruption path of :mod:`mc2export.signals`, taken by cli.py's ``command``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .pipeline import DEFAULT_PRECISION

_HELP = {
    "onnx": "Export to ONNX (opset 18, ONNX Runtime incl. Mobile), validated in onnxruntime.",
    "coreml": "Export to Core ML (ML program, iOS17/macOS14, ImageType input; fp16 by default, the Neural Engine's "
              "precision), validated (prediction on macOS).",
    "executorch": "Export to ExecuTorch (.pte, XNNPACK or Core ML delegate), validated in ExecuTorch's runtime.",
    "openvino": "Export to OpenVINO IR (.xml/.bin) for desktop/server CPUs, validated in OpenVINO with the bundle's "
                "runtime properties.",
    "litert": "Export to LiteRT / TensorFlow Lite (.tflite, Android's runtime), validated in ai-edge-litert's "
              "interpreter (XNNPACK).",
}
_PRECISION_HELP = {
    "onnx": "fp32, fp16 (fp16 weights+compute, fp32 I/O) or int8 (onnxruntime dynamic quantization)",
    "coreml": "fp16 (default: CPU, GPU and Neural Engine), fp32 (CPU/GPU only: the Neural Engine computes in fp16 "
              "and never runs an fp32 program), int8 (int8 weights, fp16 compute), pal6 / pal4 (6- / 4-bit k-means "
              "palettized weights, fp16 compute)",
    "executorch": "fp32, fp16, int8 (XNNPACK PT2E: int8 weights, dynamic activations) or int8-static (image "
                  "activations calibrated: fastest on phones, may miss the 0.99 floor)",
    "openvino": "fp32, bf16 (OpenVINO's bf16 inference precision; f32 on CPUs without bf16), int8 (NNCF post-training "
                "quantization) or auto (per tower the fastest of these that holds its tolerance on this CPU)",
    "litert": "fp32, fp16 (fp16 weights: the GPU accelerator's precision), int8 (ai-edge-quantizer dynamic range: "
              "int8 weights, activations quantized at run time) or int8-static (image tower int8 from layer to layer "
              "but its attention stages, calibrated on --calibration or the probe set; the text tower dynamic range)",
}


def _make(fmt: str, command):
    @command(fmt, help=_HELP[fmt])
    def run(
        variant: str = typer.Option(..., "--variant", "-v", help="Variant id or short name (s0, s2, b, s3, s4, l14, "
                                                                "mobileclip-s0, ...)."),
        pretrained: bool = typer.Option(False, "--pretrained", help="Weights from the Hugging Face hub (the default "
                                                                    "when no other source is given)."),
        checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="Weights from a local checkpoint file "
                                                                            "(open_clip, Apple .pt, timm, mc2export)."),
        random_weights: bool = typer.Option(False, "--random-weights", help="Random weights, for latency work only; "
                                                                            "the bundle is stamped as such."),
        precision: str = typer.Option(DEFAULT_PRECISION[fmt], "--precision", "-p", help=_PRECISION_HELP[fmt] + "."),
        towers: str = typer.Option("image,text", "--towers", help="Towers to export: image, text or image,text."),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="Bundle directory (default: "
                                                                    "./<variant>-<format>-<precision>)."),
        force: bool = typer.Option(False, "--force", help="Replace --out when it holds an mc2export bundle "
                                                              "(anything else is refused)."),
        batch: int = typer.Option(1, "--batch", help="Fixed batch size of the exported models."),
        normalize: bool = typer.Option(True, "--normalize/--no-normalize",
                                       help="L2-normalize the output embeddings inside the models (default: yes)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress messages (the summary is still printed)."),
        delegate: Optional[str] = typer.Option(None, "--delegate", hidden=fmt != "executorch",
                                               help="ExecuTorch backend: xnnpack (default; CPU, Android and iOS) or "
                                                    "coreml (Core ML inside the .pte; iOS/macOS, fp32/fp16)."),
        calibration: Optional[Path] = typer.Option(None, "--calibration", hidden=fmt not in ("openvino", "litert"),
                                                   help="openvino int8 / auto, litert int8-static: a folder of "
                                                        "images (and captions.txt, one caption a line, for text) to "
                                                        "calibrate the quantization on (default: the built-in probe "
                                                        "set)."),
    ) -> None:
        from .. import signals
        from . import export_bundle, summary_table
        from .validate import ValidationError

        def log(msg: str) -> None:
            signals.check()  # between steps: an interrupt a toolchain swallowed stops the export here
            if not quiet:
                typer.echo(msg, err=True)

        try:
            result = export_bundle(fmt, variant, out=out, checkpoint=checkpoint, pretrained=pretrained,
                                   random_weights=random_weights, precision=precision, towers=towers, force=force,
                                   batch=batch, normalize=normalize, delegate=delegate, calibration=calibration,
                                   log=log)
        except ValidationError as e:
            typer.echo(f"export failed validation (nothing was written): {e}", err=True)
            raise typer.Exit(3)
        typer.echo(summary_table(result))

    run.__name__ = f"export_{fmt}"
    return run


def register(app, command) -> None:
    """Add the export commands to ``app`` using cli.py's ``command`` decorator (UserError -> exit 2)."""
    for fmt in ("onnx", "coreml", "executorch", "openvino", "litert"):
        _make(fmt, command)
