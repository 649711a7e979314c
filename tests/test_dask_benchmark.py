"""The Dask fan-out benchmark runs end to end at a tiny size (a check of the script, not speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    "distributed", reason="dask.distributed is not installed: pip install 'nbflow[dask]'"
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.dask
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dask_fanout_benchmark_quick_run_prints_both_executors(tmp_path: Path) -> None:
    out = tmp_path / "numbers.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.dask_fanout", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| local (threads: GIL, one at a time) |" in proc.stdout
    assert "| Dask LocalCluster (2 processes) |" in proc.stdout
    numbers = json.loads(out.read_text())
    assert numbers["n"] == 40
    assert numbers["local_s"] > 0 and numbers["dask_s"] > 0 and numbers["process_ceiling"] > 0
    assert numbers["speedup"] == pytest.approx(numbers["local_s"] / numbers["dask_s"], rel=0.01)
