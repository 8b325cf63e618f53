"""README's "Reproduce on a GPU machine": every command in it parses (its options exist), for every benchmark, and
the presets and splits it names are shipped."""

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

import mdmf.cli.commands  # noqa: F401 - registers the commands
from mdmf.cli.app import app

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = ["hmdb51", "ucf101", "kinetics100", "ssv2_small", "ssv2_full"]


def section() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("## Reproduce on a GPU machine")
    return text[start : text.index("\n## ", start + 3)]


def commands(ds: str, backbone: str) -> list[list[str]]:
    """The `mdmf` command lines of the section (its code block and its inline `mdmf ...` commands), variables set."""
    block = re.search(r"```bash\n(.*?)```", section(), re.S).group(1).replace("\\\n", " ")
    lines = [line.split("#")[0].strip() for line in block.splitlines()]
    lines += [m for m in re.findall(r"`(mdmf [^`]*)`", section()) if "..." not in m]
    out = []
    for line in lines:
        if line.startswith("mdmf "):
            line = line.replace("$DS", ds).replace("$ROOT", "/data/videos").replace("$B", backbone)
            out.append(shlex.split(line)[1:])
    return out


@pytest.mark.parametrize("ds", BENCHMARKS)
def test_every_command_parses_and_its_presets_exist(ds):
    cmds = commands(ds, "ViT-B-16")
    assert len(cmds) >= 8 and {c[0] for c in cmds} >= {"check-data", "extract", "train", "eval"}
    runner = CliRunner()
    for args in cmds:
        result = runner.invoke(app, [*args, "--help"])  # unknown options fail before --help answers
        assert result.exit_code == 0, (args, result.output)
        if "--preset" in args:
            name = args[args.index("--preset") + 1]
            assert (REPO / "pipeline" / "presets" / f"{name}.json").is_file(), name
        if "--dataset" in args:
            assert (REPO / "splits" / args[args.index("--dataset") + 1] / "info.json").is_file()


def test_the_tables_hold_the_split_sizes():
    rows = {line.split("|")[1].strip(): line for line in section().splitlines()
            if line.startswith("| ") and "GiB" in line}  # the disk table
    names = {"hmdb51": "HMDB51", "ucf101": "UCF101", "kinetics100": "Kinetics-100", "ssv2_small": "SSv2-Small",
             "ssv2_full": "SSv2-Full"}
    for ds, name in names.items():
        counts = [sum(1 for line in (REPO / "splits" / ds / f"{s}.txt").read_text().splitlines()
                      if line.strip() and not line.startswith("#")) for s in ("train", "val", "test")]
        assert " / ".join(f"{n:,}" for n in counts) in rows[name], name
        views = 2 * counts[0] + counts[1] + counts[2]  # the disk column: float16 features, uint8 224² crops
        rn50, vit = views * 8 * 1024 * 2 / 2**30, views * 8 * 512 * 2 / 2**30
        assert f"{rn50:.2g} / {vit:.2g} GiB" in rows[name] or f"{rn50:.2f} / {vit:.2f} GiB" in rows[name], name
        assert f"≤ {views * 8 * 224 * 224 * 3 / 2**30:.0f} GiB" in rows[name], name
