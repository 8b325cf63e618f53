"""Entry point of the `mdmf` console script.

Each command lives in its own module under `cli/` and registers itself on `mdmf.cli.app.app`; importing the module is
enough. User errors (`MdmfError`) become one red line on stderr and exit code 2, never a traceback.
"""

import os
import signal
import sys

import typer
from rich.console import Console
from rich.markup import escape

from mdmf.cli.app import app
from mdmf.pipeline.core import interrupt
from mdmf.pipeline.core.errors import MdmfError

# Command modules: imported for their registration side effect on `app`.
import mdmf.cli.commands  # noqa: F401,E402


# click's error base class, which typer re-exports nowhere: click's own in older typer, its vendored copy since 0.26
CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
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


def usage_error(err: Exception) -> int:
    """click's own errors (an unknown option, `--way abc`, a missing argument) as one line naming the command and
    where its options are listed, instead of click's usage block; returns the exit code (2 for usage errors)."""
    if type(err).__name__ == "NoArgsIsHelpError":  # `mdmf` or a group alone: its help, as click shows it
        err.show()
        return err.exit_code
    ctx = getattr(err, "ctx", None)
    where = f"{ctx.command_path}: " if ctx is not None else ""
    hint = f"; see {ctx.command_path} --help" if ctx is not None else ""
    Console(stderr=True).print(f"[bold red]error:[/] {escape(where + err.format_message())}{escape(hint)}",
                               highlight=False, soft_wrap=True)
    return err.exit_code


def main() -> None:
    interrupt.forget_received()
    try:
        with interrupt.stop_signals():  # SIGTERM / SIGUSR1 (a cluster stopping the job) act as Ctrl-C
            # not standalone: click's errors come here (one line below) instead of its usage block on stderr
            code = app(standalone_mode=False, prog_name="mdmf")  # also under `python -m mdmf`
    except CLICK_ERROR as err:
        sys.exit(usage_error(err))
    except typer.Abort:
        Console(stderr=True).print("aborted", highlight=False)
        sys.exit(1)
    except MdmfError as err:
        # escaped: a message may hold brackets that are not markup (pip install 'mdmf[tensorboard]')
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:  # raised outside typer's own handling (e.g. while the app is being set up)
        sys.exit(interrupted())
    if code == INTERRUPTED:  # typer turns Ctrl-C inside a command into a silent exit 130 (returned, not standalone)
        sys.exit(interrupted())
    sys.exit(code if type(code) is int else 0)  # a command returns None; typer.Exit(n) comes back as n


if __name__ == "__main__":
    main()
