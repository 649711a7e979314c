"""The benchmark's own virtualenv for peer engines (Dask, Prefect, Hamilton).

Peers are never dependencies of nbflow: `python -m benchmarks` creates
``benchmarks/.venv-peers`` with ``python -m venv`` on first use and installs each peer group
listed in ``benchmarks/peers-requirements.txt`` with pip. Groups are installed one by one, so a
peer whose install fails is reported with pip's reason while the others still run. A stamp file
per group (the hash of its requirement line) makes later runs skip the install.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV_DIR = HERE / ".venv-peers"
REQUIREMENTS = HERE / "peers-requirements.txt"
INSTALL_TIMEOUT_S = 1200.0


@dataclass(frozen=True)
class PeerGroup:
    """One installable group of peer packages, e.g. ``dask`` -> dask + distributed."""

    name: str
    requirements: tuple[str, ...]

    @property
    def digest(self) -> str:
        """A short hash of the requirements, so that changing a pin reinstalls the group."""
        return hashlib.sha256(" ".join(self.requirements).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PeerStatus:
    """Whether a peer group is usable, the interpreter to run it with, or why not."""

    group: str
    python: Path | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the group installed and its interpreter can be used."""
        return self.error is None and self.python is not None


def read_groups(path: Path = REQUIREMENTS) -> dict[str, PeerGroup]:
    """Parse ``[group] req req ...`` lines of the requirements file.

    Raises:
        ValueError: a non-comment line that does not start with ``[group]``.
    """
    groups: dict[str, PeerGroup] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith("[") or "]" not in line:
            raise ValueError(f"{path.name}: expected '[group] requirement ...', got {line!r}")
        name, _, rest = line[1:].partition("]")
        groups[name.strip()] = PeerGroup(name.strip(), tuple(rest.split()))
    return groups


def venv_python(venv_dir: Path = VENV_DIR) -> Path:
    """The interpreter inside the peers virtualenv (it may not exist yet)."""
    return venv_dir / "bin" / "python"


def _log(message: str) -> None:
    print(f"[peers] {message}", file=sys.stderr, flush=True)


def _create_venv(venv_dir: Path) -> str | None:
    """Create the virtualenv with pip; return an error message or None."""
    if venv_python(venv_dir).exists():
        return None
    _log(f"creating {venv_dir} (first use)")
    try:
        venv.EnvBuilder(with_pip=True, clear=False).create(venv_dir)
    except Exception as exc:  # any failure is reported, not raised: peers are optional
        return f"python -m venv failed: {exc}"
    return None


def _pip_failure_reason(log_text: str) -> str:
    """The most telling line of a pip log, for the one-line table note."""
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if line.startswith("ERROR:"):
            return line[:200]
    return (lines[-1] if lines else "no output")[:200]


def ensure_group(group: PeerGroup, venv_dir: Path = VENV_DIR) -> PeerStatus:
    """Install one peer group into the peers venv unless its stamp says it is there."""
    error = _create_venv(venv_dir)
    if error:
        return PeerStatus(group.name, None, error)
    python = venv_python(venv_dir)
    stamp = venv_dir / f".installed-{group.name}"
    if stamp.exists() and stamp.read_text().strip() == group.digest:
        return PeerStatus(group.name, python)
    log_path = venv_dir / f"install-{group.name}.log"
    _log(f"pip install {' '.join(group.requirements)} (log: {log_path})")
    cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", *group.requirements]
    try:
        with log_path.open("w") as log:
            proc = subprocess.run(
                cmd, stdout=log, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S, check=False
            )
    except subprocess.TimeoutExpired:
        return PeerStatus(group.name, None, f"pip install timed out (>{INSTALL_TIMEOUT_S:.0f} s)")
    if proc.returncode != 0:
        reason = _pip_failure_reason(log_path.read_text(errors="replace"))
        return PeerStatus(group.name, None, f"pip install failed: {reason}")
    stamp.write_text(group.digest)
    return PeerStatus(group.name, python)


def ensure_peers(names: set[str] | None = None) -> dict[str, PeerStatus]:
    """Install the requested peer groups (all by default); never raises for a failed peer."""
    groups = read_groups()
    wanted = [g for n, g in groups.items() if names is None or n in names]
    return {g.name: ensure_group(g) for g in wanted}


if __name__ == "__main__":  # pragma: no cover - manual helper: `python -m benchmarks.peers_env`
    for status in ensure_peers().values():
        print(status.group, "ok" if status.ok else status.error, os.fspath(status.python or ""))
