"""Entry point of the `mdmf` console script.

Each command lives in its own module under `cli/` and registers itself on `mdmf.cli.app.app`; importing the module is
enough. User errors (`MdmfError`) become one red line on stderr and exit code 2, never a traceback.
"""

import os
import signal
import sys

from rich.console import Console
from rich.markup import escape

from mdmf.cli.app import app
from mdmf.pipeline.core import interrupt
from mdmf.pipeline.core.errors import MdmfError

# Command modules: imported for their registration side effect on `app`.
import mdmf.cli.commands  # noqa: F401,E402


INTERRUPTED = 130  # the shell's code for a process ended by Ctrl-C (SIGINT)


def interrupted() -> int:
    """The one line saying the work is kept and how to continue; returns the exit code, 128 + the signal that asked
    to stop (130 Ctrl-C, 143 SIGTERM, 138 SIGUSR1), as if the signal had ended the process."""
    signum = interrupt.received() or signal.SIGINT
    resume = " with --resume" if sys.argv[1:2] == ["train"] else ""
    by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
    if os.environ.get("RANK", "0") in ("", "0"):  # under torchrun: once, from rank 0
        Console(stderr=True).print(f"[yellow]interrupted[/]{by}: finished work is kept; run the same command "
                                   f"again{resume} to continue where it stopped", highlight=False, soft_wrap=True)
    return 128 + int(signum)


def main() -> None:
    interrupt.forget_received()
    try:
        with interrupt.stop_signals():  # SIGTERM / SIGUSR1 (a cluster stopping the job) act as Ctrl-C
            app()
    except MdmfError as err:
        # escaped: a message may hold brackets that are not markup (pip install 'mdmf[tensorboard]')
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:  # raised outside typer's own handling (e.g. while the app is being set up)
        sys.exit(interrupted())
    except SystemExit as done:
        if done.code == INTERRUPTED:  # typer turns Ctrl-C inside a command into a silent exit 130
            sys.exit(interrupted())
        raise


if __name__ == "__main__":
    main()
