"""The typer application object; command modules register themselves on it."""

import typer
from typer.core import TyperCommand

app = typer.Typer(
    name="mdmf",
    help="Few-shot action recognition with CLIP (CLIP-MDMF): extract features once, train and evaluate on the cache.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # click's plain help: rich's would read brackets in help texts as markup ('mdmf[tensorboard]', '[default: 8]'
    # vanished), print <bool> after every flag and fold the options into a three-column box
    rich_markup_mode=None,
)


class Command(TyperCommand):
    """A command whose usage line and help name its arguments as click does (`PATH`, `[VIDEO]...`); typer's own line
    writes a required one as `{PATH}`, wraps a metavar given with brackets again and follows its help name with the
    annotation (`VIDEO <list[Path]>`). For commands that take arguments: `@app.command("name", cls=Command)`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.param_type_name == "argument" and hasattr(param, "display_type_rich"):
                # the argument's name says what it is; typer >= 0.26 would add its annotation (`VIDEO <list[Path]>`)
                param.display_type_rich = _no_type

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar or param.name.upper()
                pieces.append((name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else ""))
        return pieces


def _no_type(ctx) -> None:
    return None


def _print_version(value: bool) -> None:
    if value:
        from mdmf import __version__

        typer.echo(f"mdmf {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                          help="print the installed version of mdmf and exit")) -> None:
    pass


# ---- one `--json` convention for every command ---------------------------------------------------------------------
# `--json PATH` writes the command's result as JSON to PATH (a `.json` file; its folder is created), `--json -` to
# standard output. The human tables stay on the terminal either way: on standard error while standard output carries
# the JSON, so `mdmf ... --json - > out.json` and `| jq` get JSON only.


def json_option(what: str = "the result"):
    return typer.Option(None, "--json", metavar="PATH|-",
                        help=f"also write {what} as JSON to PATH (a .json file), or to standard output with '-' "
                             "(the tables then go to standard error)")


LOG_WIDTH = 200  # columns of the tables written to a file or pipe (a cluster job's log), where rich would use 80


def console(stderr: bool = False):
    """The rich console of a command's tables. Not a terminal (a job's log file, a pipe): LOG_WIDTH columns unless
    $COLUMNS says otherwise, so tables are not folded at 80 columns."""
    import os

    from rich.console import Console

    out = Console(stderr=stderr)
    if not out.is_terminal and not out.is_jupyter and "COLUMNS" not in os.environ:
        out.width = LOG_WIDTH
    return out


def human_console(json_target: str | None):
    """Where the tables go: standard output, or standard error when `--json -` has it."""
    return console(stderr=json_target == "-")


def check_json_target(json_target: str | None) -> None:
    """Refuse a `--json` target that is not `-` or a `.json` file before any work is done (a video path given
    after `--json` by habit, when it was a flag, must not be overwritten)."""
    from pathlib import Path

    from mdmf.pipeline.core.errors import MdmfError

    if json_target is None or json_target == "-":
        return
    path = Path(json_target)
    if path.suffix.lower() != ".json" or path.is_dir():
        raise MdmfError(f"--json {json_target}: give a file ending in .json to write the JSON to, or - for standard "
                        "output (--json takes a path in every command)")


def write_json(data, json_target: str | None) -> None:
    """Write `data` as `--json` says (nothing when it was not given); the file is replaced whole, never half-written."""
    import json
    import os
    import sys
    from pathlib import Path

    from mdmf.pipeline.core.errors import MdmfError

    if json_target is None:
        return
    text = json.dumps(data, indent=2) + "\n"
    if json_target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    check_json_target(json_target)
    path = Path(json_target)
    partial = path.with_name(f".{path.name}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(text)
        os.replace(partial, path)
    except OSError as err:
        raise MdmfError(f"--json {path}: cannot write it ({err.strerror}); give a path in a folder you can write to") \
            from None
