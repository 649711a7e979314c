"""The README's example runs as written (minus the widget, which needs a kernel)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(capsys):
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    exec(compile(code.replace(", show=True", ""), "README.md", "exec"), {})  # our own file
    assert capsys.readouterr().out.strip() == "succeeded published 42"


def test_readme_gives_exactly_two_setup_commands():
    block = re.search(r"## Set up.*?```bash\n(.*?)```", README.read_text(), re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert "scripts/test.sh" in (README.parent / ".ci" / "run").read_text()


def test_demo_command_runs_records_and_resumes(tmp_path, monkeypatch, capsys):
    from nbflow.__main__ import main

    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--pace", "0"]) == 0
    first = capsys.readouterr().out
    assert "<Run 'quickstart' succeeded done=6/6 failed=0>" in first
    assert "recorded in" in first
    assert main(["demo", "--pace", "0", "--resume", "last"]) == 0
    resumed = capsys.readouterr().out
    assert resumed.count("(from store)") == 6
    # ...and its printed timeline has a row for each of them, the fan-out task `enrich`
    # included (it printed 5 rows, issue #22).
    rows = re.findall(r"^\s*(\w+)\s+0\s+cached\b", resumed, re.M)
    assert sorted(rows) == ["enrich", "joined", "orders", "regions", "report", "users"]
