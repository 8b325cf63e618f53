"""Conventions of the whole command line: one default per setting (the CLI's is the Python dataclass's), no
double-negative flags, one `--json PATH|-` meaning in every command, and `mdmf eval --model otam --out`."""

import dataclasses
import inspect
import json
import re
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

import mdmf.cli.commands  # noqa: F401 - registers the commands
from mdmf.cli.app import app
from mdmf.pipeline.apps.ablate import AblateConfig
from mdmf.pipeline.apps.demo import DemoConfig
from mdmf.pipeline.apps.evaluate_run import EvalRequest
from mdmf.pipeline.apps.predict import PredictConfig
from mdmf.pipeline.apps.report import ReportConfig
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.data.check_data import check_data
from mdmf.pipeline.evaluate.episodic import EvalConfig, evaluate_split
from mdmf.pipeline.features.extract import run_extract
from mdmf.pipeline.features.recipe import ExtractConfig
from mdmf.pipeline.features.store import FeatureStore
from mdmf.pipeline.train.e2e import E2EConfig
from mdmf.pipeline.train.loop import TrainConfig
from mdmf.registry import build_model
from mdmf.config import ModelConfig
from conftest import MICRO_CONFIG
from synthetic import make_store


def _defaults(source) -> dict:
    if dataclasses.is_dataclass(source):
        return {f.name: f.default for f in dataclasses.fields(source) if f.default is not dataclasses.MISSING}
    return {n: p.default for n, p in inspect.signature(source).parameters.items() if p.default is not p.empty}


# command -> (where its settings' defaults live, {CLI parameter: field name} where the two names differ)
SOURCES = {
    "eval": ([EvalRequest], {}),
    "predict": ([PredictConfig], {}),
    "report": ([ReportConfig], {}),
    "ablate": ([AblateConfig], {"cell": "cells"}),
    "demo": ([DemoConfig], {}),
    "check-data": ([check_data], {"split": "split_names", "splits": None}),
    # --shard auto (Slurm/torchrun environment) is resolved by the CLI before ExtractConfig.shard exists
    "extract": ([ExtractConfig], {"splits": "splits_dir", "split": "splits", "shard": None}),
    "train": ([TrainConfig, E2EConfig], {"model": None, "set_": None, "runs": None, "cache": None}),
}


def _commands():
    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        for sub, leaf in getattr(command, "commands", {name: command}).items():
            yield (sub if sub == name else f"{name} {sub}"), leaf


def _norm(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return tuple(value)
    return value


def _stated(help_text: str) -> str | None:
    """The default a help text states for an option whose CLI default is None: `[default: X]`, `[X]`, `(default X`."""
    found = re.search(r"\[(?:default: )?([^\]]+)\]\s*$", help_text) or re.search(r"\(default:? ([^;)]+)", help_text)
    return found.group(1).strip() if found else None


def _says(stated: str, value) -> bool:
    """Whether the stated default (its first word, or all of it) is `value`."""
    for text in (stated, stated.split(" ")[0].rstrip(";,")):
        if isinstance(value, bool):
            if text in (("yes", "true") if value else ("no", "false")):
                return True
        elif isinstance(value, float | int):
            try:
                if float(text) == value:
                    return True
            except ValueError:
                pass
        elif text in ({", ".join(map(str, value))} if isinstance(value, tuple) else {str(value), repr(value)}):
            return True
    return False


def test_every_cli_default_is_the_python_default():
    """What `mdmf X` does without an option is what the Python call does without the argument."""
    wrong, checked = [], 0
    for name, command in _commands():
        if name not in SOURCES:
            continue
        sources, renames = SOURCES[name]
        python = {}
        for source in sources:
            python = {**_defaults(source), **python}
        for param in command.params:
            field = renames.get(param.name, param.name)
            if field is None or field not in python or param.name == "help":
                continue
            want, have = _norm(python[field]), _norm(param.default)
            if have is None and want is not None:  # filled from a preset or the dataclass: the help must say it
                stated = _stated(param.help or "")
                if stated is None:
                    wrong.append(f"mdmf {name} --{param.name}: help states no default, Python default {want!r}")
                elif not _says(stated, want):
                    wrong.append(f"mdmf {name} --{param.name}: help says [{stated}], Python default {want!r}")
                continue
            checked += 1
            if have != want:
                wrong.append(f"mdmf {name} --{param.name}: CLI default {have!r}, Python default {want!r}")
    assert not wrong, "\n".join(wrong)
    assert checked > 40  # the comparison really ran over the commands


def test_eval_config_and_eval_request_agree_on_the_device():
    assert EvalConfig().device == EvalRequest().device == "auto"


def test_no_flag_is_a_double_negative():
    """Boolean options read `--x/--no-x`; never `--no-x/--no-no-x`."""
    names = [n for _, command in _commands() for p in command.params for n in (*p.opts, *p.secondary_opts)]
    assert names and not [n for n in names if n.startswith("--no-no-")]
    flags = {n for _, c in _commands() for p in c.params for n in p.opts}
    assert {"--reuse", "--reuse-eval"} <= flags


def test_every_json_option_takes_a_path_or_a_dash():
    commands = {name: command for name, command in _commands()
                if any("--json" in p.opts for p in command.params)}
    assert set(commands) >= {"eval", "check-data", "predict", "cache info"}
    for name, command in commands.items():
        (param,) = [p for p in command.params if "--json" in p.opts]
        assert not getattr(param, "is_flag", False) and param.metavar == "PATH|-", name


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("store") / "s", per_class=6, dim=16).path


def test_cache_info_json_to_stdout_or_a_file(small_dataset, tmp_path):
    root, splits = small_dataset
    store = tmp_path / "micro"
    run_extract(ExtractConfig(dataset="small", root=str(root), splits_dir=str(splits), out=str(store),
                              backbone=str(MICRO_CONFIG), weights="random", workers=0, progress=False))
    runner = CliRunner()
    to_stdout = runner.invoke(app, ["cache", "info", str(store), "--json", "-"])
    assert to_stdout.exit_code == 0, to_stdout.output
    data = json.loads(to_stdout.stdout)  # standard output holds the JSON alone
    assert data["splits"]["train"]["ok"] == 9 and "mdmf-micro" in to_stdout.stderr  # the table: standard error
    target = tmp_path / "new" / "info.json"
    to_file = runner.invoke(app, ["cache", "info", str(store), "--json", str(target)])
    assert to_file.exit_code == 0 and json.loads(target.read_text()) == data
    assert "mdmf-micro" in to_file.stdout and not to_file.stdout.lstrip().startswith("{")  # the table on the terminal


def test_a_json_target_that_is_not_a_json_file_is_refused_before_any_work(store, tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not to be overwritten")
    result = CliRunner().invoke(app, ["eval", "--model", "otam", "--cache", str(store), "--json", str(video)])
    assert isinstance(result.exception, MdmfError) and "ending in .json" in str(result.exception)
    assert video.read_bytes() == b"not to be overwritten" and not (tmp_path / "runs").exists()


def test_eval_otam_writes_where_out_says_and_json_dash_is_the_result(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["eval", "--model", "otam", "--cache", str(store), "--episodes", "60", "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(app, args + ["--out", str(tmp_path / "mine"), "--json", "-"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    written = tmp_path / "mine" / "test_5w1s_seed0.json"
    assert json.loads(written.read_text()) == printed and written.with_suffix(".txt").is_file()
    assert not (tmp_path / "runs").exists()  # nothing under ./runs/baselines when --out is given
    # ground truth: the same episodes through the Python API
    fs = FeatureStore.open(store)
    otam = build_model(ModelConfig(name="otam", dim=int(fs.meta["dim"]), frames=int(fs.meta["frames"])))
    expect = evaluate_split(otam, fs, "test", EvalConfig(episodes=60, progress=False))
    assert printed["accuracy"] == pytest.approx(expect.accuracy) and printed["per_class"] == pytest.approx(expect.per_class)
    default = CliRunner().invoke(app, args)
    assert default.exit_code == 0, default.output
    assert (tmp_path / "runs" / "baselines" / "synthetic-synthetic-otam" / "eval" / written.name).is_file()


@pytest.mark.parametrize("model,message", [("mdmf", "--model mdmf needs training"),
                                           ("nonsense", "--model nonsense: unknown model")])
def test_eval_without_a_run_takes_only_an_untrained_model(store, model, message):
    result = CliRunner().invoke(app, ["eval", "--model", model, "--cache", str(store), "--device", "cpu", "--quiet"])
    assert isinstance(result.exception, MdmfError) and message in str(result.exception)
    assert "use one of: otam" in str(result.exception)


@pytest.mark.parametrize("columns", [None, "60"])
def test_tables_in_a_log_file_are_not_folded_at_80_columns(tmp_path, columns):
    """A cluster job's output goes to a file: rich would fold every line at 80 columns there. mdmf's tables use 200
    columns off a terminal, unless $COLUMNS says otherwise (then that width is kept)."""
    import os
    import subprocess
    import sys

    store = make_store(tmp_path / "store")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | ({"COLUMNS": columns} if columns else {})
    out = subprocess.run([sys.executable, "-m", "mdmf", "cache", "info", str(store.path)], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    sampling = [line for line in out.stdout.splitlines() if line.startswith("sampling:")]
    assert len(sampling) == 1
    widest = max(len(line) for line in out.stdout.splitlines())
    if columns is None:  # the line is 82 characters: folded at 80, whole at 200
        assert "prompt" in sampling[0] and len(sampling[0]) > 80, out.stdout
    else:
        assert widest <= 60 and "prompt" not in sampling[0], out.stdout
