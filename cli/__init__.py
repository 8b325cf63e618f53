"""The typer command-line app: it parses, validates paths and calls `pipeline`."""
