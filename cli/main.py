"""Entry point of the `mdmf` console script.

Each command lives in its own module under `cli/` and registers itself on `cli.app.app`; importing the module is
enough. User errors (`MdmfError`) become one red line on stderr and exit code 2, never a traceback.
"""

import sys

from rich.console import Console

from cli.app import app
from pipeline.errors import MdmfError

# Command modules: imported for their registration side effect on `app`.
import cli.commands  # noqa: F401,E402


def main() -> None:
    try:
        app()
    except MdmfError as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("[yellow]interrupted[/]: work done so far is kept; run the same command again to resume")
        sys.exit(130)


if __name__ == "__main__":
    main()
