"""Verified, app-ready exports: ``export_bundle("onnx" | "coreml" | "executorch" | "openvino" | "litert", variant, ...)``.

Every export folds the model first (:func:`mc2export.fold`), wraps each tower in an export-friendly
module (:mod:`.wrappers`), converts it, validates the converted model against the folded PyTorch
model on a fixed probe set (:mod:`.validate`) and writes a bundle directory atomically
(:mod:`.bundle`; format in ``docs/bundle.md``). Heavy toolchains (onnx, coremltools, executorch, openvino,
nncf, litert-torch, ai-edge-quantizer) are imported lazily, inside the format modules.
"""
from .pipeline import (DEFAULT_PRECISION, FORMATS, PIP_HINT, TOWERS, default_out, default_precision,  # noqa: F401
                       export_bundle, format_module, load_model, parse_towers, precisions, quiet_toolchains,
                       summary_table)

# The modules of this package, in the order data flows through them:
#   pipeline    export_bundle: load, fold, wrap, convert, validate, write
#   wrappers    export-friendly forms of the towers (input contract, pooling, normalization)
#   onnx, coreml, executorch, openvino, litert   one module per format: export(), runner(), versions(), PRECISIONS
#   validate    the probe set, tolerances and comparisons
#   vectors     verify/: probe rows + fp32 reference embeddings, checked where the bundle runs
#   bundle      the bundle directory: atomic writes, checksums, config.json
#   commands    the CLI commands (registered by mc2export.cli)

__all__ = ["export_bundle", "FORMATS", "TOWERS", "DEFAULT_PRECISION", "default_precision", "precisions", "parse_towers",
           "load_model", "summary_table", "format_module", "default_out", "quiet_toolchains"]
