"""The ``mc2export`` command line. User mistakes (``UserError``) print one line and exit 2; SIGINT / SIGTERM
end a command with one line and exit 130 / 143 (:mod:`mc2export.signals`). Exit codes: README.md."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import List, Optional

import typer

from . import signals
from .errors import UserError
from .options import CheckpointOpt, PretrainedOpt, VariantOpt, load_model, require_finite

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="MobileCLIP / MobileCLIP2: model zoo, folding and verified export for apps.")


def _version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"mc2export {__version__}")
        raise typer.Exit()


@app.callback()
def _group(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                        help="Print the version and exit.")) -> None:
    """MobileCLIP / MobileCLIP2: model zoo, folding and verified export for apps."""


def command(name: Optional[str] = None, *, interrupted: str = "nothing was written", **kwargs):
    """``app.command`` with the exits every command shares (:func:`guarded`). Command modules get it from
    their ``register(app, command)``; ``interrupted`` says what an interrupted run leaves on disk."""

    def decorate(fn):
        return app.command(name, **kwargs)(guarded(fn, interrupted))

    return decorate


def guarded(fn, interrupted: str = "nothing was written"):
    """``fn`` with the two exits of every command: a ``UserError`` prints one line and exits 2; SIGINT /
    SIGTERM -- whatever exception they turned into on the way up -- print one line and exit 130 / 143."""

    @functools.wraps(fn)
    def run(*args, **kw):
        with signals.handled():
            try:
                return fn(*args, **kw)
            except BaseException as e:
                signum = signals.caused(e)
                if signum is not None:
                    typer.echo(f"interrupted ({signals.name(signum)}): {interrupted}", err=True)
                    raise typer.Exit(signals.exit_code(signum)) from None
                if isinstance(e, UserError):
                    typer.echo(f"error: {e}", err=True)
                    raise typer.Exit(2) from None
                from .outputs import write_failure

                line = write_failure(e) if isinstance(e, Exception) else None
                if line is not None:  # disk full, an output folder deleted under us: one line, exit 2
                    typer.echo(f"error: {line}", err=True)
                    raise typer.Exit(2) from None
                raise

    return run


@command()
def zoo(params: bool = typer.Option(True, help="Count the parameters of our models (builds each, ~1 min).")):
    """Every variant: our parameter counts beside the paper's, resolution, embedding size, latency targets."""
    from .zoo import zoo_rows, format_table

    typer.echo(format_table(zoo_rows(count=params)))


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
        require_finite(classes, "the labels' text embeddings")
        require_finite(feats, "the image embeddings")
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
def embed(inputs: List[str] = typer.Argument(None, help="Image files (not together with texts)."),
          text: List[str] = typer.Option(None, "--text", "-t", help="A text to embed (repeatable)."),
          texts_file: Optional[Path] = typer.Option(None, help="A UTF-8 file with one text per line (one row per "
                                                    "line, blank lines included)."),
          out: Path = typer.Option(..., "--out", "-o", help="Output .npy ([N, D] float32); the inputs are listed "
                                   "in OUT.inputs.txt in the same order."),
          variant: Optional[str] = VariantOpt, checkpoint: Optional[Path] = CheckpointOpt,
          pretrained: bool = PretrainedOpt,
          normalize: bool = typer.Option(True, help="L2-normalize the embeddings."),
          batch_size: int = typer.Option(32, min=1)):
    """Embed images or texts into an .npy matrix, one row per input."""
    import io

    import numpy as np
    import torch

    from .outputs import output_file, write_atomic

    out = output_file(out, "--out", suffix=".npy")
    texts = list(text or [])
    if texts_file is not None:
        texts += _read_lines(texts_file)
    images = list(inputs or [])
    if texts and images:
        raise UserError(f"pass image files or texts, not both (got {len(images)} image(s) and {len(texts)} "
                        "text(s)): embed them in two runs, one .npy each")
    if not texts and not images:
        raise UserError("nothing to embed: pass image files, or --text / --texts-file")
    from .preprocess import load_image

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
            signals.check()
            chunk = items[i:i + batch_size]
            if texts:
                rows.append(model.encode_text(tok(chunk, context_length=model.context_length), normalize=normalize))
            else:
                rows.append(model.encode_image(torch.stack([transform(load_image(p)) for p in chunk]),
                                               normalize=normalize))
            bar.update(len(chunk))
    matrix = torch.cat(rows)
    require_finite(matrix, "these inputs")
    buf = io.BytesIO()
    np.save(buf, matrix.numpy().astype(np.float32))
    listing = out.with_name(out.stem + ".inputs.txt")
    write_atomic(listing, "".join(str(x).replace("\n", " ") + "\n" for x in items))
    write_atomic(out, buf.getvalue())
    typer.echo(f"wrote {out} {tuple(matrix.shape)} ({'texts' if texts else 'images'}, "
               f"{'normalized' if normalize else 'unnormalized'}) and {listing}")


def _read_lines(path: Path) -> List[str]:
    """The lines of a UTF-8 text file, one text each: blank lines stay (rows keep the file's line numbers)."""
    if not path.is_file():
        raise UserError(f"texts file not found: '{path}'")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise UserError(f"'{path}' is not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}): save it as UTF-8, "
                        f"e.g. iconv -f latin1 -t utf-8 '{path}' > texts-utf8.txt") from None
    lines = text.splitlines()
    blank = sum(not x.strip() for x in lines)
    if blank:
        typer.echo(f"warning: {blank} blank line(s) in '{path}' are embedded as empty texts (one row per line)",
                   err=True)
    return lines


# Commands of the later pipeline stages (export, bench, ...) register themselves below, one import each.


from .appvectors import register as _register_appvectors  # noqa: E402
_register_appvectors(app, command)

from .export.commands import register as _register_export  # noqa: E402
_register_export(app, command)

from .bench.commands import register as _register_bench  # noqa: E402
_register_bench(app, command)

from .train.commands import register as _register_train  # noqa: E402
_register_train(app, command)

from .library.commands import register as _register_library  # noqa: E402
_register_library(app, command)


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point of the ``mc2export`` console script."""
    try:
        app(args=argv)
    except KeyboardInterrupt:  # outside a command (e.g. while Python imports it): nothing was started
        typer.echo("interrupted (SIGINT)", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
