"""The typer application object; command modules register themselves on it."""

import typer

app = typer.Typer(
    name="mdmf",
    help="Few-shot action recognition with CLIP (CLIP-MDMF): extract features once, train and evaluate on the cache.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from mdmf import __version__

        typer.echo(f"mdmf {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                          help="print the installed version of mdmf and exit")) -> None:
    pass
