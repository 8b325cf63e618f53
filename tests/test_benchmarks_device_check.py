"""benchmarks/device_check.py, the prepared GPU run: its --smoke run on the CPU, so that it cannot rot between the
sessions that are lent a device, and its time budgets (a section that runs out of time keeps what came before)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import device_check  # noqa: E402

KEYS = [s.key for s in device_check.SECTIONS]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The whole smoke run through the shell entry point (set-up finds this interpreter ready), bundled."""
    out = tmp_path_factory.mktemp("device_check") / "out"
    bundle = out.parent / "bundle.tgz"
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", "benchmarks/device_check.sh", "--smoke", "--out", str(out), "--bundle",
                           str(bundle), "--commit", "abc1234"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    return proc, out, bundle


def test_smoke_run_writes_json_and_a_table_per_section_and_one_line_each(smoke):
    proc, out, bundle = smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("[")]
    assert [ln.split("]")[0] for ln in lines] == [f"[{i} {k}" for i, k in enumerate(KEYS, 1)]
    for i, key in enumerate(KEYS, 1):
        result = json.loads((out / f"{i}-{key}.json").read_text())
        table = (out / f"{i}-{key}.md").read_text()
        assert result["header"]["commit"] == "abc1234" and "abc1234" in table
        assert result["summary"] in table and result["summary"] in lines[i - 1]
        if key == "ddp":  # no CUDA here: said so in the JSON, and the same path ran with gloo instead
            assert result["status"] == "needs CUDA and NCCL (gloo on the CPU: ok)", result
            assert result["rows"][0]["backend"] == "gloo"
        else:
            assert result["status"] == "ok", result
        assert result["rows"], key
        assert table.count("\n|") >= 3  # header, rule, a row at least
    run = json.loads((out / "run.json").read_text())
    assert [s["section"] for s in run["sections"]] == KEYS and run["smoke"] is True
    assert (out / "tables.md").read_text().count("### ") == len(KEYS)
    import tarfile

    with tarfile.open(bundle) as tar:
        assert {f"out/{i}-{k}.md" for i, k in enumerate(KEYS, 1)} <= set(tar.getnames())


def test_smoke_numbers_come_from_the_benchmarks(smoke):
    """The tables hold what the benchmark scripts measured, not placeholders."""
    _, out, _ = smoke
    extract = json.loads((out / "raw" / "extract-tiny-w1.json").read_text())
    row = json.loads((out / "1-extraction.json").read_text())["rows"][0]
    assert row["full / max(decode, encode)"] == extract["overlap_ratio"] > 0
    assert row["decode-only videos/s"] == pytest.approx(8 / extract["decode_s"])
    evaluation = json.loads((out / "2-evaluation.json").read_text())["rows"][0]
    assert evaluation["same predictions"] == "yes" and evaluation["eval s"] > 0
    e2e = json.loads((out / "3-e2e.json").read_text())
    assert {r["checkpointing"] for r in e2e["rows"]} == {"off", "on"}
    assert {r["source"] for r in e2e["loading"]} == {"decode", "store"}
    heads = json.loads((out / "4-heads.json").read_text())
    from mdmf.registry import MODELS

    assert sorted(r["head"] for r in heads["rows"]) == sorted(MODELS)  # every registered head, whatever they are
    for r in heads["rows"]:
        trains = MODELS[r["head"]].needs_training
        assert (r["status"] == "ok" and r["episodes/s"] > 0) if trains else r["status"] == "nothing to train", r


def _sleeper(seconds: float, name: str):
    def run(ctx):
        path = ctx.out / "raw" / f"{name}.json"
        code = (f"import json, time; open({str(path)!r}, 'w').write(json.dumps({{'partial': 1}})); "
                f"time.sleep({seconds})")
        r = ctx.bench(name, ["-c", code], path)
        return {"status": r["status"], "runs": [r], "rows": [r["data"]] if r["data"] else [],
                "summary": f"{name} {r['status']}"}
    return run


def test_a_section_out_of_time_is_stopped_keeps_its_partial_json_and_the_next_one_runs(tmp_path):
    sections = [(1, device_check.Section("slow", "a slow one", 2, 2, _sleeper(60, "slow"))),
                (2, device_check.Section("quick", "a quick one", 30, 30, _sleeper(0, "quick")))]
    ctx = device_check.Context(out=tmp_path, smoke=True, machine={"cuda": False, "line": "here"})
    header = {"date": "today", "commit": "c", "machine_line": "here", "smoke": True}
    start = time.monotonic()
    done = device_check.run_sections(sections, ctx, header, {"slow": 2, "quick": 30})
    assert time.monotonic() - start < 25  # stopped at its 2 s budget (SIGTERM to its group), not after 60 s
    assert [r["status"] for r in done] == ["timed out", "ok"]
    slow = json.loads((tmp_path / "1-slow.json").read_text())
    assert slow["rows"] == [{"partial": 1}] and slow["summary"].startswith("timed out")
    assert "timed out" in (tmp_path / "1-slow.md").read_text()
    assert json.loads((tmp_path / "run.json").read_text())["sections"][1]["status"] == "ok"


def test_full_sizes_without_cuda_say_so_instead_of_failing(tmp_path):
    ctx = device_check.Context(out=tmp_path, smoke=False, machine={"cuda": False, "torch": "x"})
    for section in device_check.SECTIONS:
        result = section.run(ctx)
        assert result["status"].startswith("needs CUDA") and "no CUDA device" in result["summary"], section.key


def test_help_states_every_section_budget():
    text = device_check.__doc__
    for i, s in enumerate(device_check.SECTIONS, 1):
        assert f"{i} {s.key:<11} {s.budget_s:>3.0f} / {s.smoke_budget_s:.0f}" in text
    assert device_check.SETUP_BUDGET_S + sum(s.budget_s for s in device_check.SECTIONS) <= 8 * 60


class _Parsed(Exception):
    """Raised by the patched parse_args: the benchmark accepted its command line; nothing more runs."""


def test_the_full_run_commands_are_accepted_by_the_benchmarks(tmp_path, monkeypatch):
    """The GPU run cannot be run here, but its command lines can be parsed by the scripts' own argument parsers, so
    that a typo does not cost a lent device its minutes."""
    import argparse
    import importlib.util

    calls = []

    def bench(self, name, argv, json_path, min_left=1.0):
        calls.append(argv)
        return {"status": "ok", "seconds": 0.0, "command": " ".join(argv), "data": None}

    monkeypatch.setattr(device_check.Context, "bench", bench)
    ctx = device_check.Context(out=tmp_path, smoke=False, machine={"cuda": True, "nccl": True, "cpu_count": 16,
                                                                   "gpus": 1, "torch": "x"})
    for section in device_check.SECTIONS:
        assert section.run(ctx)["status"] == "ok", section.key
    assert len(calls) == 4 + 4  # extraction: 2 backbones x 2 worker counts; one call for each other section
    original = argparse.ArgumentParser.parse_args

    def parse(self, args=None, namespace=None):
        raise _Parsed(original(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse)
    for argv in calls:
        script = Path(argv[0])
        spec = importlib.util.spec_from_file_location(f"bench_{script.stem}", script)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        monkeypatch.setattr(sys, "argv", [str(script), *argv[1:]])
        with pytest.raises(_Parsed) as parsed:
            module.main()
        assert parsed.value.args[0].device == "cuda", argv
