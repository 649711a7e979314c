"""scripts/demo.sh, run against a stand-in ``.venv/bin/python`` (no real install here).

The stand-in logs how it was called and answers like pip, ``python -m nbflow demo`` and
``python -m jupyterlab`` would, so these tests check what the script prints while it installs
(it printed nothing for ~75 s), what it installs, and what it runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "$*" >>"$(dirname "$0")/calls.log"
case "$*" in
    "-c ") exit 0 ;;
    "-m pip install"*)
        [ -n "${FAKE_PIP_FAIL:-}" ] && { echo "ERROR: no matching distribution"; exit 1; }
        echo "Obtaining file:///repo"
        echo "Collecting pydantic<3,>=2.6 (from nbflow==0.1.0)"
        echo "  Using cached pydantic-2.12.0-py3-none-any.whl"
        echo "Collecting networkx>=3.2 (from nbflow==0.1.0)"
        echo "Processing /opt/pypi/files/typing_extensions-4.16.0-py3-none-any.whl (from pydantic)"
        echo "Processing /opt/wheels/pandas-3.1.1-cp311-cp311-manylinux_2_28_x86_64.whl"
        echo "Installing collected packages: networkx, pydantic, nbflow"
        echo "Successfully installed nbflow-0.1.0 networkx-3.5 pydantic-2.12.0" ;;
    "-m nbflow demo"*) echo "DEMO ${*:4}" ;;
    "-m jupyterlab"*) echo "LAB ${*:3}" ;;
    *) echo "unexpected: $*" >&2; exit 9 ;;
esac
"""

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of what demo.sh reads, with a stand-in .venv (already created)."""
    (tmp_path / "scripts").mkdir()
    for name in ("demo.sh", "python.sh"):
        shutil.copy(ROOT / "scripts" / name, tmp_path / "scripts" / name)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    return tmp_path


def demo(repo: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(repo / "scripts" / "demo.sh"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
        check=False,
    )


def calls(repo: Path) -> list[str]:
    return (repo / ".venv" / "bin" / "calls.log").read_text().splitlines()


def test_first_run_shows_each_step_of_the_install_then_runs_the_demo(repo):
    done = demo(repo, "--pace", "0")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "DEMO --pace 0\n"
    err = done.stderr.splitlines()
    assert err[0].startswith("scripts/demo.sh: installing nbflow into .venv (pip install -e .)")
    # A package from a local index or wheel folder is "Processing <wheel>", not "Collecting"
    # (on a machine with a wheel cache, half of them): named too.
    assert err[1:6] == [
        "  collecting pydantic",
        "  collecting networkx",
        "  collecting typing_extensions",
        "  collecting pandas",
        "  installing the collected packages...",
    ]
    assert err[6].startswith("scripts/demo.sh: installed nbflow in ")
    assert "Successfully installed" in (repo / ".venv" / "pip.log").read_text()
    # Installed once per pyproject.toml: the next run starts the demo at once.
    again = demo(repo)
    assert (again.returncode, again.stderr, again.stdout) == (0, "", "DEMO \n")
    assert [c for c in calls(repo) if "pip" in c] == ["-m pip install --progress-bar off -e ."]


def test_lab_installs_jupyterlab_once_and_opens_the_notebooks(repo):
    done = demo(repo, "--lab", "--no-browser")
    assert done.returncode == 0, done.stderr
    assert "installing JupyterLab and the dask extra" in done.stderr
    root = " --allow-root" if os.geteuid() == 0 else ""
    assert done.stdout == (
        f"LAB --ServerApp.root_dir=notebooks{root} --no-browser notebooks/01-quickstart.ipynb\n"
    )
    pip = [c for c in calls(repo) if "pip" in c]
    assert pip[-1] == (
        "-m pip install --progress-bar off -e .[dask] jupyterlab>=4.2 ipykernel>=6.29"
    )
    again = demo(repo, "--lab")
    assert again.returncode == 0 and "installing" not in again.stderr
    assert len([c for c in calls(repo) if "pip" in c]) == 2


def test_a_failed_install_says_so_and_shows_the_log(repo):
    done = demo(repo, FAKE_PIP_FAIL="1")
    assert done.returncode == 1
    assert "pip failed (exit 1); the end of .venv/pip.log:" in done.stderr
    assert "ERROR: no matching distribution" in done.stderr
    assert done.stdout == ""  # the demo did not start


def test_help_lists_the_lab_flag_without_installing(repo):
    done = demo(repo, "--help")
    assert done.returncode == 0 and "--lab" in done.stdout
    assert not (repo / ".venv" / "bin" / "calls.log").exists()
