"""Real-browser harness: JupyterLab + Playwright + Debian chromium.

Every browser test runs a notebook in a real JupyterLab, in a real (headless) Chromium, and
looks at what a person would see. The recipe follows ``shared/research/jupyter-testing.md``
section 2, where each flag below was needed on this machine.

Fixtures
--------
``lab_server`` (session)
    A :class:`LabServer` (``url``, ``token``, ``root_dir``, ``log_path``): one ``jupyter lab``
    on a free port of 127.0.0.1, started with ``sys.executable`` and isolated from the user's
    Jupyter setup (temporary config, data, runtime, settings and workspaces dirs). Its root
    dir holds a copy of ``tests/browser/notebooks/``. Its kernelspec ``python3`` runs
    ``sys.executable``, so the kernel sees exactly the packages of the test environment.
    Teardown kills the server's process group and copies its log to ``test-artifacts/browser/``.
``browser`` (session)
    A Playwright ``Browser`` on Debian chromium (``$NBFLOW_CHROMIUM`` or ``chromium`` on PATH;
    ``playwright install`` is never used). Without chromium or playwright the test is
    *skipped*, except when ``$CI`` is set: then it *fails*, so CI cannot go green silently.
``run_notebook`` (function)
    A factory: ``run_notebook(name, final_selector, on_page=None, timeout=60.0)`` opens the
    notebook in a new page, waits until its kernel is really connected and idle, calls
    ``on_page`` (a JS function source evaluated in the page, or a Python callable taking the
    Playwright ``Page``), runs all cells, waits until ``final_selector`` is attached to the
    DOM, saves a screenshot to ``test-artifacts/browser/<test name>.png`` and returns a
    :class:`NotebookRun`. The page stays open until the test ends, so the test can query it
    (``run.page``); then the kernel is shut down and the page closed. A screenshot is also
    saved when the run times out and when the test fails afterwards.
``attribute_recorder`` (session)
    ``attribute_recorder(selector, attribute)`` returns the JS source of a MutationObserver
    that records ``[element key, value]`` for every value of ``attribute`` seen on elements
    matching ``selector`` (added or changed). Pass it as ``on_page``; the records come back
    as ``run.records``. The key is the element's ``data-task`` (or its id).

Example::

    pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

    def test_dashboard_goes_green(run_notebook, attribute_recorder):
        run = run_notebook(
            "dashboard.ipynb",                  # or a Path to any notebook: it is copied
            "#nbflow-finished",                 # sentinel emitted when the run is over
            on_page=attribute_recorder("[data-task]", "data-state"),
        )
        assert "running" in {state for _, state in run.records}
        assert run.page_errors == []

Notebooks run with the page's kernel: background output must go to widgets (``print`` from a
task is lost), and the sentinel must be emitted by the notebook itself when it is done.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from secrets import token_hex
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = Path(__file__).resolve().parent / "notebooks"
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts" / "browser"

# Measured here: Playwright adds --headless and --no-sandbox itself; without the
# background-networking flags chromium keeps dialling hosts this closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]

# Lab settings: no news toast over the screenshots, no "Select Kernel" dialog.
LAB_OVERRIDES = {
    "@jupyterlab/apputils-extension:notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension:tracker": {"autoStartDefaultKernel": True},
}

# The status bar says "Idle" before the kernel's websocket is connected, and run-all issued
# then is silently lost; this check (needs expose_app_in_browser) is the reliable one.
KERNEL_READY_JS = """() => {
  const w = window.jupyterapp?.shell.currentWidget, sc = w?.sessionContext,
        k = sc?.session?.kernel;
  return !!k && sc.isReady && k.connectionStatus === 'connected' && k.status === 'idle';
}"""

# Never return the command's promise from evaluate(): Playwright then hangs on it.
RUN_ALL_JS = "() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }"

SHUTDOWN_KERNEL_JS = """async () => {
  const sc = window.jupyterapp?.shell.currentWidget?.sessionContext;
  if (sc) { await Promise.race([sc.shutdown(), new Promise(r => setTimeout(r, 5000))]); }
}"""

RECORDS_JS = "() => window.__nbflowRecords ?? null"

SERVER_START_TIMEOUT = 90.0  # seconds; ~5 s measured on 2 cores
KERNEL_READY_TIMEOUT = 60.0


def chromium_path() -> str | None:
    """Return the chromium executable to drive: ``$NBFLOW_CHROMIUM``, else ``chromium``."""
    return os.environ.get("NBFLOW_CHROMIUM") or shutil.which("chromium")


def _skip_or_fail(reason: str) -> NoReturn:
    """Skip the test, or fail it under CI, where a skipped browser test would hide a gap."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is an error: bash scripts/test.sh installs it)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _artifact_name(nodeid_name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid_name).strip("_") or "test"


@dataclass
class LabServer:
    """A running JupyterLab started by the ``lab_server`` fixture."""

    url: str
    token: str
    root_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the server's REST API (``path`` like ``/api/kernels``; ``body`` sent as
        JSON); return decoded JSON."""
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
            data=None if body is None else json.dumps(body).encode(),
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def notebook_url(self, name: str) -> str:
        """Return the URL that opens notebook ``name`` (relative to ``root_dir``) in Lab.

        Each page gets a fresh workspace: the server is shared by the whole session, and a
        reused workspace would reopen the previous test's notebook, so "run all" could run
        the wrong one.
        """
        return f"{self.url}/lab/workspaces/w{token_hex(4)}/tree/{name}?token={self.token}"

    def add_notebook(self, source: Path) -> str:
        """Copy ``source`` into the server's root dir and return its name there."""
        target = self.root_dir / source.name
        if source.resolve() != target.resolve():
            shutil.copy2(source, target)
        return source.name

    def log_tail(self, lines: int = 40) -> str:
        """Return the last ``lines`` lines of the server log (for error messages)."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class NotebookRun:
    """What ``run_notebook`` saw: the open page, recordings, errors, timings, screenshot."""

    name: str
    page: Page
    records: Any = None
    page_errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    screenshot: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)


def _write_kernelspec(data_dir: Path) -> None:
    """Install kernelspec ``python3`` running ``sys.executable`` into ``data_dir``.

    The temporary JUPYTER_DATA_DIR comes first on Jupyter's kernel path, so a ``python3``
    kernelspec in the user's ~/.local cannot start some other Python instead.
    """
    spec_dir = data_dir / "kernels" / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """Start one isolated JupyterLab for the whole session (see the module docstring)."""
    base = tmp_path_factory.mktemp("lab")
    root_dir = base / "notebooks"
    shutil.copytree(NOTEBOOKS_DIR, root_dir)
    dirs = {
        name: base / name
        for name in ("config", "data", "runtime", "app_settings", "user_settings", "workspaces")
    }
    for path in dirs.values():
        path.mkdir()
    (dirs["app_settings"] / "overrides.json").write_text(json.dumps(LAB_OVERRIDES, indent=1))
    _write_kernelspec(dirs["data"])

    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(dirs["config"]),
        JUPYTER_DATA_DIR=str(dirs["data"]),
        JUPYTER_PATH=str(dirs["data"]),
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
        IPYTHONDIR=str(base / "ipython"),
        PYTHONUNBUFFERED="1",
    )
    port, token = _free_port(), token_hex(16)
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        "--allow-root",
        "--LabApp.expose_app_in_browser=True",
        f"--LabApp.app_settings_dir={dirs['app_settings']}",
        f"--LabApp.user_settings_dir={dirs['user_settings']}",
        f"--LabApp.workspaces_dir={dirs['workspaces']}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log_path = base / "jupyterlab.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            cmd,
            cwd=root_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: teardown kills kernels too
        )
    server = LabServer(f"http://127.0.0.1:{port}", token, root_dir, log_path, process)
    try:
        _wait_for_server(server)
        yield server
    finally:
        _stop(process)
        ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copy2(log_path, ARTIFACTS_DIR / "jupyterlab.log")


def _wait_for_server(server: LabServer) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"jupyter lab exited with code {server.process.returncode}:\n{server.log_tail()}"
            )
        try:
            server.api("GET", "/api/status")
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            time.sleep(0.25)
    pytest.fail(f"jupyter lab did not answer in {SERVER_START_TIMEOUT:.0f} s:\n{server.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL it after 15 s."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Launch headless Debian chromium once per session (skip, or fail under CI, if absent)."""
    executable = chromium_path()
    if not executable:
        _skip_or_fail("chromium not found (apt-get install chromium, or set NBFLOW_CHROMIUM)")
    if not os.access(executable, os.X_OK):
        _skip_or_fail(f"NBFLOW_CHROMIUM={executable} is not an executable file")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail('playwright is not installed (pip install -e ".[test]")')
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="session")
def attribute_recorder() -> Callable[[str, str], str]:
    """Return a builder of MutationObserver JS for ``run_notebook(on_page=...)``."""

    def build(selector: str, attribute: str) -> str:
        sel, attr = json.dumps(selector), json.dumps(attribute)
        return f"""() => {{
  const sel = {sel}, attr = {attr}, out = (window.__nbflowRecords = []);
  const seen = (el) => {{
    const value = el.getAttribute(attr);
    if (value !== null) out.push([el.getAttribute('data-task') ?? el.id ?? '', value]);
  }};
  const scan = (node) => {{
    if (node.nodeType !== Node.ELEMENT_NODE) return;
    if (node.matches(sel)) seen(node);
    node.querySelectorAll(sel).forEach(seen);
  }};
  new MutationObserver((mutations) => {{
    for (const m of mutations) {{
      if (m.type === 'attributes') {{ if (m.target.matches?.(sel)) seen(m.target); }}
      else m.addedNodes.forEach(scan);
    }}
  }}).observe(document.body, {{subtree: true, childList: true, attributes: true,
                               attributeFilter: [attr]}});
}}"""

    return build


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item, so fixtures can tell that the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"_nbflow_report_{report.when}", report)


@pytest.fixture
def run_notebook(
    browser: Browser, lab_server: LabServer, request: pytest.FixtureRequest
) -> Iterator[Callable[..., NotebookRun]]:
    """Factory that runs a notebook in JupyterLab (see the module docstring)."""
    pages: list[Page] = []
    shot = ARTIFACTS_DIR / f"{_artifact_name(request.node.name)}.png"

    def screenshot(page: Page) -> Path | None:
        ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=str(shot))
        except Exception:  # a screenshot must never hide the real error
            return None
        return shot

    def run(
        name: str | Path,
        final_selector: str,
        on_page: str | Callable[[Page], object] | None = None,
        timeout: float = 60.0,
    ) -> NotebookRun:
        if isinstance(name, Path):
            name = lab_server.add_notebook(name)
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        page = context.new_page()
        pages.append(page)
        result = NotebookRun(name=name, page=page)
        page.on("pageerror", lambda exc: result.page_errors.append(str(exc)))
        page.on(
            "console",
            lambda msg: result.console_errors.append(msg.text) if msg.type == "error" else None,
        )
        started = time.monotonic()
        try:
            page.goto(lab_server.notebook_url(name), wait_until="domcontentloaded")
            page.wait_for_function(KERNEL_READY_JS, timeout=KERNEL_READY_TIMEOUT * 1000)
            result.timings["kernel_ready"] = time.monotonic() - started
            if isinstance(on_page, str):
                page.evaluate(on_page)
            elif on_page is not None:
                on_page(page)
            run_started = time.monotonic()
            page.evaluate(RUN_ALL_JS)
            page.wait_for_selector(final_selector, state="attached", timeout=timeout * 1000)
            result.timings["run"] = time.monotonic() - run_started
            result.records = page.evaluate(RECORDS_JS)
            with contextlib.suppress(Exception):  # bring the output into view for the shot
                page.locator(final_selector).first.scroll_into_view_if_needed(timeout=2000)
        except Exception:
            result.screenshot = screenshot(page)
            raise
        result.screenshot = screenshot(page)
        result.timings["total"] = time.monotonic() - started
        return result

    yield run

    failed = any(
        getattr(getattr(request.node, f"_nbflow_report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )
    for page in pages:
        if failed:
            screenshot(page)
        with contextlib.suppress(Exception):
            page.evaluate(SHUTDOWN_KERNEL_JS)
        page.context.close()
    _shutdown_leftover_kernels(lab_server)


def _shutdown_leftover_kernels(server: LabServer) -> None:
    """Delete every kernel still running, so the next test starts from a clean server."""
    try:
        for kernel in server.api("GET", "/api/kernels") or []:
            server.api("DELETE", f"/api/kernels/{kernel['id']}")
    except (urllib.error.URLError, OSError):
        pass
