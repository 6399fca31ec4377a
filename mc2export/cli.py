"""The ``mc2export`` command line. User mistakes (``UserError``) print one line and exit 2."""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="MobileCLIP / MobileCLIP2: model zoo, folding and verified export for apps.")


@app.callback()
def _group() -> None:
    """MobileCLIP / MobileCLIP2: model zoo, folding and verified export for apps."""


def command(name: Optional[str] = None, **kwargs):
    """``app.command`` that turns a ``UserError`` into one line on stderr and exit code 2."""

    def decorate(fn):
        @functools.wraps(fn)
        def run(*args, **kw):
            try:
                return fn(*args, **kw)
            except UserError as e:
                typer.echo(f"error: {e}", err=True)
                raise typer.Exit(2)

        return app.command(name, **kwargs)(run)

    return decorate


@command()
def zoo(params: bool = typer.Option(True, help="Count the parameters of our models (builds each, ~1 min).")):
    """Every variant: our parameter counts beside the paper's, resolution, embedding size, latency targets."""
    from .zoo import zoo_rows, format_table

    typer.echo(format_table(zoo_rows(count=params)))


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


@command()
def classify(images: List[Path] = typer.Argument(..., help="Image files."),
             labels: str = typer.Option(..., "--labels", "-l", help='Comma-separated class names: "cat,dog,car".'),
             variant: Optional[str] = VariantOpt, checkpoint: Optional[Path] = CheckpointOpt,
             pretrained: bool = PretrainedOpt,
             templates: str = typer.Option("openai", help="Prompt ensemble: openai (80 templates), simple (7), none."),
             top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="Rows per image.")):
    """Zero-shot classification of images against your labels (CLIP prompt ensemble)."""
    import torch

    from .preprocess import load_image
    from .zeroshot import TEMPLATES, class_embeddings, parse_labels, truncated_prompts

    names = parse_labels(labels)
    if templates not in TEMPLATES:
        raise UserError(f"unknown --templates {templates!r}: choose one of {', '.join(TEMPLATES)}")
    pics = [load_image(p) for p in images]  # fail on a bad file before the model loads
    model = load_model(variant, checkpoint, pretrained)
    from . import image_transform

    cut = truncated_prompts(names, TEMPLATES[templates], model.context_length)
    if cut:
        typer.echo(f"warning: {len(cut)} prompt(s) longer than {model.context_length} tokens were truncated, "
                   f"e.g. {cut[0][:60]!r}", err=True)
    transform = image_transform(model.variant)
    with torch.no_grad():
        classes = class_embeddings(model, names, TEMPLATES[templates])
        feats = model.encode_image(torch.stack([transform(im) for im in pics]), normalize=True)
        probs = (model.logit_scale.exp() * feats @ classes.T).softmax(-1)
    k = min(top_k, len(names))
    width = max(len(n) for n in names + ["label"])
    for path, row in zip(images, probs):
        typer.echo(f"{path}  ({model.variant})")
        typer.echo(f"  {'rank':<5}{'label':<{width + 2}}probability")
        values, idx = row.topk(k)
        for rank, (v, i) in enumerate(zip(values.tolist(), idx.tolist()), 1):
            typer.echo(f"  {rank:<5}{names[i]:<{width + 2}}{v:.4f}")


@command()
def embed(inputs: List[str] = typer.Argument(None, help="Image files (or, with --text, ignored)."),
          text: List[str] = typer.Option(None, "--text", "-t", help="A text to embed (repeatable)."),
          texts_file: Optional[Path] = typer.Option(None, help="A UTF-8 file with one text per line."),
          out: Path = typer.Option(..., "--out", "-o", help="Output .npy ([N, D] float32); the inputs are listed "
                                   "in OUT.inputs.txt in the same order."),
          variant: Optional[str] = VariantOpt, checkpoint: Optional[Path] = CheckpointOpt,
          pretrained: bool = PretrainedOpt,
          normalize: bool = typer.Option(True, help="L2-normalize the embeddings."),
          batch_size: int = typer.Option(32, min=1)):
    """Embed images or texts into an .npy matrix, one row per input."""
    import numpy as np
    import torch

    texts = list(text or [])
    if texts_file is not None:
        if not texts_file.is_file():
            raise UserError(f"texts file not found: '{texts_file}'")
        texts += [line.rstrip("\n") for line in texts_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    images = [] if texts else list(inputs or [])
    if not texts and not images:
        raise UserError("nothing to embed: pass image files, or --text / --texts-file")
    if out.suffix != ".npy":
        raise UserError(f"--out must end in .npy (got '{out}')")
    from .preprocess import load_image

    if images:
        for p in images:  # fail on a missing file before the model loads
            if not Path(p).is_file():
                raise UserError(f"image not found: '{p}'")
    model = load_model(variant, checkpoint, pretrained)
    rows = []
    items = texts or images
    with torch.no_grad(), typer.progressbar(length=len(items), label="embedding", file=sys.stderr) as bar:
        if texts:
            from .tokenizer import get_tokenizer

            tok = get_tokenizer()
            cut = tok.truncated(texts, model.context_length)
            if cut:
                typer.echo(f"warning: {len(cut)} text(s) longer than {model.context_length} tokens were truncated",
                           err=True)
        else:
            from . import image_transform

            transform = image_transform(model.variant)
        for i in range(0, len(items), batch_size):
            chunk = items[i:i + batch_size]
            if texts:
                rows.append(model.encode_text(tok(chunk, context_length=model.context_length), normalize=normalize))
            else:
                rows.append(model.encode_image(torch.stack([transform(load_image(p)) for p in chunk]),
                                               normalize=normalize))
            bar.update(len(chunk))
    matrix = torch.cat(rows).numpy().astype(np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npy")
    np.save(tmp, matrix)
    listing = out.with_name(out.stem + ".inputs.txt")
    listing.write_text("".join(str(x).replace("\n", " ") + "\n" for x in items), encoding="utf-8")
    os.replace(tmp, out)
    typer.echo(f"wrote {out} {tuple(matrix.shape)} ({'texts' if texts else 'images'}, "
               f"{'normalized' if normalize else 'unnormalized'}) and {listing}")


# Commands of the later pipeline stages (export, bench, ...) register themselves below, one import each.


from .appvectors import register as _register_appvectors
_register_appvectors(app, command)

from .export.commands import register as _register_export  # noqa: E402
_register_export(app, command)

from .bench.commands import register as _register_bench
_register_bench(app, command)

from .train.commands import register as _register_train  # noqa: E402
_register_train(app, command)


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point of the ``mc2export`` console script."""
    try:
        app(args=argv)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
