"""The ``mc2export`` command line. User mistakes (``UserError``) print one line and exit 2."""
from __future__ import annotations

import functools
import sys
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


# Commands of the later pipeline stages (export, bench, ...) register themselves below, one import each.


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point of the ``mc2export`` console script."""
    try:
        app(args=argv)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
