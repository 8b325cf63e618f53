"""Entry point of the `mdmf` console script.

Each command lives in its own module under `cli/` and registers itself on `mdmf.cli.app.app`; importing the module is
enough. User errors (`MdmfError`) become one red line on stderr and exit code 2, never a traceback.
"""

import sys

from rich.console import Console

from mdmf.cli.app import app
from mdmf.pipeline.core.errors import MdmfError

# Command modules: imported for their registration side effect on `app`.
import mdmf.cli.commands  # noqa: F401,E402


INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (SIGINT)


def interrupted() -> None:
    resume = " with --resume" if sys.argv[1:2] == ["train"] else ""
    Console(stderr=True).print(f"[yellow]interrupted[/]: finished work is kept; run the same command again{resume} to "
                               "continue where it stopped", highlight=False)


def main() -> None:
    try:
        app()
    except MdmfError as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:  # raised outside typer's own handling (e.g. while the app is being set up)
        interrupted()
        sys.exit(INTERRUPTED)
    except SystemExit as done:
        if done.code == INTERRUPTED:  # typer turns Ctrl-C inside a command into a silent exit 130
            interrupted()
        raise


if __name__ == "__main__":
    main()
