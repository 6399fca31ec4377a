"""What several commands share: the weight-source options and loading the folded model they name.

Imported by :mod:`mc2export.cli` and by the command modules it registers (``train/commands.py``), so
registration flows one way: cli -> command modules -> this module.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .errors import UserError

VariantOpt = typer.Option(None, "--variant", "-v", help="Variant id or short name (s0, s2, b, s3, s4, l14); "
                          "default: the checkpoint's, else s0.")
CheckpointOpt = typer.Option(None, "--checkpoint", "-c", help="Local weights file (open_clip, Apple .pt, timm, ours).")
PretrainedOpt = typer.Option(False, "--pretrained", help="Download the card's weights from the Hugging Face hub "
                             "(the default when no --checkpoint is given).")


def load_model(variant: Optional[str], checkpoint: Optional[Path], pretrained: bool):
    """The folded model for a command, from a checkpoint or the hub; progress on stderr."""
    from . import create_model

    if checkpoint is not None and pretrained:
        raise UserError("give either --checkpoint or --pretrained, not both")
    if checkpoint is None and variant is None:
        variant = "s0"
    source = str(checkpoint) if checkpoint is not None else "the Hugging Face hub"
    typer.echo(f"loading {variant or 'model'} from {source} ...", err=True)
    return create_model(variant, checkpoint=checkpoint, pretrained=checkpoint is None, fold=True)


def require_finite(x, what: str) -> None:
    """Refuse NaN / inf results (what the export validation refuses too): they mean broken weights."""
    import torch

    if not bool(torch.isfinite(x).all()):
        raise UserError(f"the model gives non-finite values (NaN/inf) for {what}: the weights are broken "
                        "(a diverged training run, or a damaged file); check the checkpoint or download it again")


__all__ = ["VariantOpt", "CheckpointOpt", "PretrainedOpt", "load_model", "require_finite"]
