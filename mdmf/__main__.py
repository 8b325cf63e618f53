"""`python -m mdmf`: the `mdmf` command line."""

from mdmf.cli.main import main

main()
