"""The `mdmf` console script's `main`, run in this process (faster than a subprocess; what a user types, parsed the same)."""

from __future__ import annotations

import sys


def run_main(capsys, *args) -> tuple[int, str, str]:
    """`mdmf ARGS...` through `mdmf.cli.main.main`: (exit code, stdout, stderr) as captured by pytest's `capsys`."""
    from mdmf.cli.main import main

    old, sys.argv = sys.argv, ["mdmf", *map(str, args)]
    try:
        main()
        code = 0
    except SystemExit as done:
        code = done.code or 0
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err
