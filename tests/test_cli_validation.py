"""Every numeric option, preset value and `--set` value is checked where it enters (`pipeline.core.limits`, one
`validate()` per config dataclass): one line naming the option, the value and the allowed range, exit 2, no
traceback, and nothing created (no run folder, no store, no generated data). Each input below failed on main before
(issue 19): accepted with a wrong answer, a traceback, or a hang (`extract --batch-frames 0`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clirun import run_main
from synthetic import make_store
from mdmf.pipeline.core.errors import MdmfError
from mdmf.pipeline.core.limits import SettingError
from mdmf.pipeline.evaluate.episodic import EvalConfig
from mdmf.pipeline.features.extract import ExtractConfig
from mdmf.pipeline.train.loop import TrainConfig


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("store") / "s", per_class=6, dim=16).path


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _refused(capsys, tmp_path, monkeypatch, args) -> str:
    """Run `mdmf ARGS` in an empty working folder (where runs/, cache/ and data/toy would be made); the one line."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, out, err = run_main(capsys, *args)
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert _tree(work) == [], "something was created before the refusal"
    return lines[0]


# (arguments after the command and its store, the line's text): the option, the value as given, the allowed range
OPTIONS = [
    (["train", "--way", "1"], "--way 1: must be an integer >= 2"),  # was 100 % at 1-way
    (["train", "--steps", "-3"], "--steps -3: must be an integer >= 1"),  # was "best val -1.00 % at step 0"
    (["train", "--lr", "-1"], "--lr -1.0: must be a number > 0"),
    (["train", "--lr", "nan"], "--lr nan: must be a number > 0"),  # nan compares False both ways: refused as such
    (["train", "--threads", "0"], "--threads 0: must be an integer >= 1"),
    (["train", "--val-shot", "0"], "--val-shot 0: must be an integer >= 1"),
    (["train", "--shot", "0"], "--shot 0: must be an integer >= 1"),  # was a reshape RuntimeError
    (["train", "--queries", "0"], "--queries 0: must be an integer >= 1"),
    (["train", "--val-every", "0"], "--val-every 0: must be an integer >= 1"),
    (["eval", "--model", "otam", "--episodes", "0"], "--episodes 0: must be an integer >= 1"),  # torch.cat([])
    (["eval", "--model", "otam", "--episodes", "-5"], "--episodes -5: must be an integer >= 1"),
    (["eval", "--model", "otam", "--queries", "0"], "--queries 0: must be an integer >= 1"),
    (["eval", "--model", "otam", "--batch-episodes", "0"], "--batch-episodes 0: must be an integer >= 1"),  # range()
]


@pytest.mark.parametrize("args, line", OPTIONS, ids=[" ".join(a) for a, _ in OPTIONS])
def test_an_option_out_of_range_is_one_line_before_any_work(capsys, tmp_path, monkeypatch, store, args, line):
    assert _refused(capsys, tmp_path, monkeypatch, [*args, "--cache", store, "--quiet"]) == f"error: {line}"


EXTRACT = [
    (["--workers", "-1"], "--workers -1: must be an integer >= 0"),  # was a DataLoader ValueError
    (["--batch-frames", "0"], "--batch-frames 0: must be an integer >= 1"),  # hung (killed after 120 s)
    (["--frames", "0"], "--frames 0: must be an integer >= 1"),
    (["--chunk-videos", "0"], "--chunk-videos 0: must be an integer >= 1"),
]


@pytest.mark.parametrize("args, line", EXTRACT, ids=[" ".join(a) for a, _ in EXTRACT])
def test_extract_refuses_before_generating_or_creating_a_store(capsys, tmp_path, monkeypatch, args, line):
    """The toy dataset is generated under ./data/toy and its store made under ./cache: neither may appear."""
    assert _refused(capsys, tmp_path, monkeypatch, ["extract", "--dataset", "toy", *args, "--quiet"]) == f"error: {line}"


def test_predict_refuses_frames_0(capsys, tmp_path, monkeypatch):
    support = tmp_path / "support"
    support.mkdir()
    line = _refused(capsys, tmp_path, monkeypatch, ["predict", "--support", support, "--frames", "0", "--quiet"])
    assert line == "error: --frames 0: must be an integer >= 1"  # was an IndexError deep in sampling


@pytest.mark.parametrize("section, line", [
    ({"train": {"weight_decay": -1}}, "train.weight_decay -1: must be a number >= 0"),  # was written to config.json
    ({"train": {"lr": "fast"}}, "train.lr 'fast': must be a number > 0"),  # was a TypeError at the first step
    ({"train": {"e2e": {"workers": -2}}}, "train.e2e.workers -2: must be an integer >= 0"),
    ({"model": {"pps_topk": "x"}}, "model: ModelConfig.pps_topk must be of type int; got 'x'"),
])
def test_a_preset_value_out_of_range_or_of_the_wrong_type_names_the_file_and_the_key(
        capsys, tmp_path, monkeypatch, store, section, line):
    preset = tmp_path / "mine.json"
    preset.write_text(json.dumps(section))
    stage = ["--stage", "e2e"] if "e2e" in section.get("train", {}) else []
    said = _refused(capsys, tmp_path, monkeypatch, ["train", "--cache", store, "--preset", preset, *stage, "--quiet"])
    assert said == f"error: --preset {preset}: {line}"


def test_an_extract_preset_value_names_the_file_and_the_key(capsys, tmp_path, monkeypatch):
    preset = tmp_path / "mine.json"
    preset.write_text(json.dumps({"extract": {"train_views": 0}}))
    said = _refused(capsys, tmp_path, monkeypatch, ["extract", "--dataset", "toy", "--preset", preset, "--quiet"])
    assert said == f"error: --preset {preset}: extract.train_views 0: must be an integer >= 1"


def test_a_set_value_of_the_wrong_type_is_one_line_before_any_work(capsys, tmp_path, monkeypatch, store):
    said = _refused(capsys, tmp_path, monkeypatch, ["train", "--cache", store, "--set", "pps_topk=fast", "--quiet"])
    assert said == "error: --set: ModelConfig.pps_topk must be of type int; got 'fast'"


# click's own parse errors (before any of our checks): one line naming the command and its help, not click's
# four-line usage block (which printed "Usage: ...", "Try ... for help.", a blank line, then the error)
CLICK_ERRORS = [
    (["eval", "--way", "abc"], "error: mdmf eval: Invalid value for '--way': "),
    (["train", "--no-such-option"], "error: mdmf train: No such option: --no-such-option"),
    (["cache", "verify"], "error: mdmf cache verify: Missing argument 'PATH'."),
    (["splits"], "error: mdmf splits: Missing option '--root'."),
]


@pytest.mark.parametrize("args, start", CLICK_ERRORS, ids=[" ".join(a) for a, _ in CLICK_ERRORS])
def test_a_parse_error_is_one_line_naming_the_command_and_its_help(capsys, tmp_path, monkeypatch, args, start):
    said = _refused(capsys, tmp_path, monkeypatch, args)
    assert said.startswith(start) and said.endswith(f"; see mdmf {' '.join(args[:2 if args[0] == 'cache' else 1])} --help")


def test_no_command_still_prints_the_help(capsys):
    code, out, err = run_main(capsys)
    assert code == 2 and "Usage: mdmf [OPTIONS] COMMAND" in out + err and "extract" in out + err


def test_the_python_api_meets_the_same_checks():
    """The ranges live in the config dataclasses: a Python caller cannot build what the CLI refuses."""
    for build, message in [
        (lambda: TrainConfig(way=1), "--way 1: must be an integer >= 2"),
        (lambda: TrainConfig(weight_decay=-0.5), "--weight-decay -0.5: must be a number >= 0"),
        (lambda: TrainConfig(lr_factors=(1.0, 0.0), lr_steps=(10,)), "--lr-factors 0.0: must be a number > 0"),
        (lambda: EvalConfig(batch_episodes=0), "--batch-episodes 0: must be an integer >= 1"),
        (lambda: EvalConfig(way=True), "--way True: must be an integer >= 2"),  # a bool is not a count
        (lambda: ExtractConfig(dataset="toy", root="r", batch_frames=0), "--batch-frames 0: must be an integer >= 1"),
        (lambda: ExtractConfig(dataset="toy", root="r", resize_ratio=0.5), "--resize-ratio 0.5: must be a number >= 1"),
    ]:
        with pytest.raises(SettingError) as caught:
            build()
        assert str(caught.value) == message and isinstance(caught.value, MdmfError)
    # the edges themselves are allowed
    assert TrainConfig(way=2, weight_decay=0.0, threads=1).way == 2
    assert EvalConfig(episodes=1, batch_episodes=1, seed=0).episodes == 1
    assert ExtractConfig(dataset="toy", root="r", workers=0).workers == 0


# ---- split files as Windows editors write them --------------------------------------------------------------------

def test_split_files_with_a_byte_order_mark_and_crlf_line_ends_are_read(capsys, small_dataset, tmp_path):
    """Every split file and info.json rewritten with a UTF-8 BOM and CRLF line ends: check-data finds the same
    videos as with the original files (before, the BOM made the first class 'not in train_classes.txt')."""
    root, splits = small_dataset
    windows = tmp_path / "splits"
    windows.mkdir()
    for path in splits.iterdir():
        text = path.read_text(encoding="utf-8")
        (windows / path.name).write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    reports = []
    for folder in (splits, windows):
        code, out, err = run_main(capsys, "check-data", "--dataset", "small", "--root", root, "--splits", folder,
                                  "--json", "-", "--quiet")
        assert code == 0, err
        reports.append(json.loads(out))
    assert reports[0]["splits"] and reports[1]["splits"] == reports[0]["splits"]
    assert all(s["readable"] == s["listed"] > 0 for s in reports[1]["splits"].values())


# ---- every numeric option of every command ------------------------------------------------------------------------

# What a command needs besides the option under test to reach its validation (a new command with required options
# adds its own here); "{store}" / "{support}" are filled in below.
REQUIRED = {
    "train": ["--cache", "{store}"], "eval": ["--model", "otam", "--cache", "{store}"],
    "extract": ["--dataset", "toy"], "predict": ["--support", "{support}"], "report": ["--run", "{support}"],
    "ablate": ["--dataset", "x", "--table", "3"], "check-data": ["--dataset", "small", "--root", "{root}",
                                                                 "--splits", "{splits}"],
    "splits": ["--root", "{support}", "--out", "{support}/splits"],
}
# numeric options whose allowed values are a short list, checked with that list's message
CHOICE_OPTIONS = {("ablate", "--table"): "--table -7: the paper's ablation tables are"}


def _numeric_options():
    import typer.main

    import mdmf.cli.commands  # noqa: F401 - registers the commands
    from mdmf.cli.app import app

    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        for sub, leaf in getattr(command, "commands", {name: command}).items():
            words = [name] if sub == name else [name, sub]
            for param in leaf.params:
                if param.param_type_name == "option" and _is_number(param):
                    yield words, param.opts[0]


def _is_number(param) -> bool:
    desc = getattr(param, "type_descriptor", None)  # typer >= 0.2x: its own parameter types
    if desc is not None:
        return desc.annotation in (int, float)
    return getattr(getattr(param, "type", None), "name", "") in ("integer", "float")  # click's


NUMERIC = list(_numeric_options())


@pytest.mark.parametrize("words, option", NUMERIC, ids=[f"{' '.join(w)} {o}" for w, o in NUMERIC])
def test_every_numeric_option_refuses_a_value_below_its_range(capsys, tmp_path, monkeypatch, store, small_dataset,
                                                             words, option):
    """-7 is below every range (the lowest bound is 0): each numeric option of each command is checked, in one line
    naming it, before any file; a new option without a range fails here."""
    support = tmp_path / "support"
    support.mkdir()
    fill = {"{store}": str(store), "{support}": str(support), "{root}": str(small_dataset[0]),
            "{splits}": str(small_dataset[1])}
    extra = [fill.get(a, a) for a in REQUIRED.get(words[0], [])]
    line = _refused(capsys, tmp_path, monkeypatch, [*words, *extra, option, "-7"])
    want = CHOICE_OPTIONS.get((words[0], option), f"{option} -7")
    assert line.startswith(f"error: {want}"), line
    assert "must be" in line or (words[0], option) in CHOICE_OPTIONS
