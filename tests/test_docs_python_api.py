"""The README's "Python API" block, run as written (in a fresh folder): extract, train and evaluate on the toy set."""

import contextlib
import io
import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def python_api_block() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def test_the_readme_python_api_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the block's paths are relative, as a user's would be
    code = python_api_block()
    out = io.StringIO()
    scope: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md (Python API)", "exec"), scope)
    result, best = scope["result"], scope["best"]
    # what the block claims happened, checked on disk
    run = tmp_path / "runs" / "toy-api"
    written = json.loads(scope["path"].read_text())
    assert scope["path"].resolve() == run / "eval" / "test_5w1s_seed0.json" and written["accuracy"] == result.accuracy
    assert written["episodes"] == 500 and 0 <= result.accuracy <= 100
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = {r["step"]: r["val_accuracy"] for r in rows if "val_accuracy" in r}
    assert set(val) == {5, 10} and best["val_accuracy"] == max(val.values())
    assert (tmp_path / "cache" / "toy-small" / "zarr.json").is_file()
    assert f"test {result.accuracy:.1f} ± {result.ci95:.1f} %" in out.getvalue()
