"""Every command's `--help`, rendered by the real CLI, says what its source says: no `<bool>` after flags, usage lines
as click writes them (`PATH`, `[VIDEO]...`; not `{path}` or `[[VIDEO]...]...`), brackets in help texts kept
(`pip install 'mdmf[tensorboard]'`, `[default: 8]`: rich read them as markup and dropped them), and one style for
defaults, `[default: X]` (that every Python default is stated is tests/test_cli_options.py's check)."""

from __future__ import annotations

import re

import pytest
import typer.main

import mdmf.cli.commands  # noqa: F401 - registers the commands
from clirun import run_main
from mdmf.cli.app import app


def _commands() -> list[tuple[list[str], object]]:
    root = typer.main.get_command(app)
    out = [([], root)]
    for name, command in root.commands.items():
        out.append(([name], command))
        out += [([name, sub], leaf) for sub, leaf in getattr(command, "commands", {}).items()]
    return out


COMMANDS = _commands()
_squeeze = lambda text: re.sub(r"\s+", "", text)  # noqa: E731 - help is re-wrapped (and hyphenated words split)


@pytest.mark.parametrize("words, command", COMMANDS, ids=[" ".join(w) or "mdmf" for w, _ in COMMANDS])
def test_help_renders_what_the_source_says(capsys, words, command):
    code, out, err = run_main(capsys, *words, "--help")
    assert code == 0 and not err, err
    usage = [line for line in out.splitlines() if line.startswith("Usage:")]
    assert len(usage) == 1 and "{" not in usage[0] and "[[" not in usage[0], usage
    assert "<bool>" not in out and "<list[" not in out
    arguments = out.split("Arguments:\n")[1].split("\n\n")[0] if "Arguments:\n" in out else ""
    for line in (ln for ln in arguments.splitlines() if ln[2:3].strip()):  # an argument's line: its name, no type
        name = line.split()[0]
        assert name.isupper() and "<" not in line.split("  ")[1], line
    assert _squeeze(command.help or "").rstrip(".")[:60] in _squeeze(out)  # the docstring, whole
    for param in getattr(command, "params", []):
        if param.help:  # the help text whole, brackets and all
            assert _squeeze(param.help) in _squeeze(out), f"mdmf {' '.join(words)} {param.opts}: {param.help!r}"


def test_the_bracketed_words_that_rich_swallowed_are_printed(capsys):
    _, train, _ = run_main(capsys, "train", "--help")
    assert "'mdmf[tensorboard]'" in _squeeze(train)
    _, extract, _ = run_main(capsys, "extract", "--help")
    for option, default in [("frames", "8"), ("train-views", "2"), ("seed", "0"), ("chunk-videos", "16")]:
        assert re.search(rf"--{option} <int>[^-]*\[default: {default}\]", extract), option
    _, predict, _ = run_main(capsys, "predict", "--help")
    assert "predict [OPTIONS] [VIDEO]..." in predict
    _, info, _ = run_main(capsys, "cache", "info", "--help")
    assert "cache info [OPTIONS] PATH" in info


@pytest.mark.parametrize("words, command", COMMANDS, ids=[" ".join(w) or "mdmf" for w, _ in COMMANDS])
def test_one_style_for_defaults(words, command):
    """A default is stated as `[default: X]`: click's own where the option has a value, by hand where the option's
    None means "from the preset / the run / the dataclass" (never `[5]`, `(default 5)` or `default: 5`); never both."""
    for param in getattr(command, "params", []):
        text = param.help or ""
        where = f"mdmf {' '.join(words)} {param.opts}: {text!r}"
        assert not re.search(r"\(default\b|(?<!\[)default:|\[[-+\d.e]+[];]", text), where
        shown = param.default not in (None, [], ()) and not getattr(param, "is_flag", False) and param.show_default is not False
        if shown and not param.required:
            assert "[default:" not in text, where  # click prints the value: stated twice otherwise
