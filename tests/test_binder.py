"""Binder works: what repo2docker installs is enough to run the quickstart notebook.

repo2docker (what mybinder.org runs) reads ``binder/``: ``runtime.txt`` for the Python version,
``apt.txt`` for Debian/Ubuntu packages, ``requirements.txt`` installed into the kernel's
environment, then ``postBuild``, which installs nbflow itself. We cannot run Docker here, so
the slow test replays those steps in a fresh virtualenv (with Binder's Python when this machine
has it) and executes ``notebooks/01-quickstart.ipynb`` with nbclient in it. pip's cache is
used for requirements.txt (postBuild passes --no-cache-dir itself), so a re-run is quick.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
QUICKSTART = ROOT / "notebooks" / "01-quickstart.ipynb"


def binder_python_version() -> str:
    text = (BINDER / "runtime.txt").read_text().strip()
    assert text.startswith("python-"), f"binder/runtime.txt should read python-X.Y, not {text!r}"
    return text.removeprefix("python-")


def test_binder_files_are_what_repo2docker_needs() -> None:
    assert binder_python_version() == "3.12"
    assert "graphviz" in (BINDER / "apt.txt").read_text().split()
    requirements = (BINDER / "requirements.txt").read_text()
    assert "ipywidgets" in requirements
    post_build = BINDER / "postBuild"
    lines = post_build.read_text().splitlines()
    assert lines[0].startswith("#!"), "postBuild needs a shebang"
    assert "set -e" in lines, "without set -e a failed postBuild does not fail the build"
    assert "python -m pip install --no-cache-dir ." in lines
    assert os.access(post_build, os.X_OK), "postBuild must be executable"
    # With a binder/ folder, repo2docker ignores root-level configuration files.
    assert not (ROOT / ".binder").exists(), "binder/ and .binder/ together are an error"


def find_python(version: str) -> str:
    """An interpreter of exactly ``version``: pyenv's, then pythonX.Y; else this one."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(pyenv.glob(f"{version}.*/bin/python"), reverse=True)
    found = shutil.which(f"python{version}")
    for candidate in [*map(str, candidates), *([found] if found else [])]:
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return sys.executable


def copy_repository(target: Path) -> None:
    """The files a Binder build sees that matter here (no .git, no virtualenvs)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".nbflow", ".ipynb_checkpoints")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, target / name)
    for folder in ("nbflow", "binder"):
        shutil.copytree(ROOT / folder, target / folder, ignore=ignore)
    (target / "notebooks").mkdir()
    shutil.copy2(QUICKSTART, target / "notebooks" / QUICKSTART.name)


EXECUTE = textwrap.dedent(
    """
    import sys
    import nbformat
    from nbclient import NotebookClient

    path = sys.argv[1]
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(
        "import sys, nbflow; print(sys.prefix); print(nbflow.__file__)"))
    client = NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(sys.argv[2])}})
    client.execute()
    print("".join(o.get("text", "") for o in notebook.cells[-1].outputs))
    print(sum(1 for c in notebook.cells if c.cell_type == "code"), "code cells ran")
    """
)


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.timeout(900)
def test_quickstart_runs_in_a_fresh_binder_environment(tmp_path: Path) -> None:
    if not QUICKSTART.exists():
        pytest.skip("notebooks/01-quickstart.ipynb is not written yet")
    python = find_python(binder_python_version())
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repository(repo)
    venv = tmp_path / "venv"
    try:
        output = build_and_execute(python, repo, venv, tmp_path)
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # ~0.5 GB; pytest keeps its last tmp dirs
    prefix, module = output.splitlines()[:2]
    assert Path(prefix).resolve() == venv.resolve(), "the kernel did not run in the Binder env"
    assert "site-packages" in module, f"nbflow was not the installed package: {module}"
    assert output.rstrip().endswith("code cells ran")


def build_and_execute(python: str, repo: Path, venv: Path, scratch: Path) -> str:
    """Replay repo2docker's steps into ``venv``, then run the quickstart; return its output."""
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    bin_dir = venv / "bin"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "JUPYTER", "VIRTUAL_ENV", "CONDA"))
    }
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_NO_COMPILE="1",  # .pyc files change nothing that is tested here, and take time
        JUPYTER_CONFIG_DIR=str(scratch / "jupyter-config"),
        JUPYTER_DATA_DIR=str(scratch / "jupyter-data"),
        JUPYTER_RUNTIME_DIR=str(scratch / "jupyter-runtime"),
        IPYTHONDIR=str(scratch / "ipython"),
    )

    def run(*command: str) -> str:
        done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    # repo2docker's order: requirements.txt, then postBuild. nbclient is the test's harness
    # (on Binder, JupyterLab from the base image plays that part).
    python_in_env = str(bin_dir / "python")
    run(python_in_env, "-m", "pip", "install", "-q", "-r", "binder/requirements.txt")
    run(python_in_env, "-m", "pip", "install", "-q", "nbclient")
    run("bash", "binder/postBuild")
    notebook = repo / "notebooks" / QUICKSTART.name
    return run(python_in_env, "-c", EXECUTE, str(notebook), str(notebook.parent))
