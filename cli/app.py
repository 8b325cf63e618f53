"""The typer application object; command modules register themselves on it."""

import typer

app = typer.Typer(
    name="mdmf",
    help="Few-shot action recognition with CLIP (CLIP-MDMF): extract features once, train and evaluate on the cache.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
