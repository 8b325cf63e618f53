"""Claims in the docs that can be checked here: the demo's numbers as BENCHMARKS.md records them are the strings the
demo prints for the stored values, and the README says what its time measurements were made on."""

import re
from pathlib import Path

from mdmf.pipeline.apps.demo import accuracy_cell

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = (REPO / "BENCHMARKS.md").read_text()
README = (REPO / "README.md").read_text()


def test_recorded_demo_rows_are_what_the_demo_prints_for_the_stored_values():
    section = BENCHMARKS.split("## The demo's target", 1)[1].split("\n## ", 1)[0]
    table = section.split("**With the defaults of issue 10**", 1)[1].split("\n\n| seed", 1)[1].split("\n\n", 1)[0]
    rows = {cells[0]: cells for cells in ([c.strip() for c in ln.strip("|").split("|")] for ln in table.splitlines()
                                          if re.match(r"\| \d ", ln))}
    stored = re.findall(r"^\* demo-results seed (\d): (.+)$", section, flags=re.M)
    assert stored, "BENCHMARKS.md records no stored demo values"
    for seed, values in stored:
        pairs = [tuple(float(x) for x in v.split(" ± ")) for v in values.split(", ")]
        printed = [accuracy_cell(acc, ci) for acc, ci in pairs]
        row = rows[seed]
        assert [row[1], row[2], row[4], row[5]] == printed, (seed, row, printed)
        assert row[3] == f"+{float(row[2].split()[0]) - float(row[1].split()[0]):.1f}"  # the gain, of printed values
    assert accuracy_cell(79.05, 0.6838) == "79.0 ± 0.7"  # the rounding the recorded 79.0 follows


def test_readme_times_say_what_they_were_measured_on():
    demo = README.split("The demo generates the built-in", 1)[1].split("\n\n", 1)[0]
    api = README.split("## Python API", 1)[1].split("```python", 1)[0]
    for text in (demo, api):
        assert re.search(r"measured\s+\d{4}-\d\d-\d\d\s+on\s+the\s+2-core\s+development\s+machine", text), text
        assert re.search(r"load\s+average", text)
    assert "setup.sh" in demo and "About 85 s" not in README and "about 15 s" not in README
    assert "decodes\n  with decord" not in README and "carry almost nothing" not in README
