"""The docs site in a real Chromium with no network: diagrams and dashboards are drawn.

The site is built as ``scripts/test.sh`` builds it (``mkdocs build --strict``), served from
127.0.0.1, and every request to anywhere else is refused. Issue #22: the notebook pages
showed blank dashboards (the widget loader comes from a CDN; the stored HTML was not used)
and the state diagram showed as raw Mermaid text (the library comes from a CDN too).
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from .conftest import ARTIFACTS_DIR, REPO_ROOT, _skip_or_fail

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Route

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NOTEBOOKS = sorted(p.stem for p in (REPO_ROOT / "notebooks").glob("*.ipynb"))
#: The theme asks GitHub for the repository's stars and latest release; without network it
#: shows the repository's name only. Nothing else may leave the machine.
ALLOWED_ELSEWHERE = "https://api.github.com/repos/nbflow/nbflow"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The built site, served on 127.0.0.1: its base URL."""
    if importlib.util.find_spec("mkdocs") is None:
        _skip_or_fail('mkdocs is not installed (pip install -e ".[docs]")')
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(out))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_site_draws_its_diagram_and_every_stored_dashboard_offline(
    browser: Browser, site: str
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    elsewhere: list[str] = []

    def only_local(route: Route) -> None:
        if route.request.url.startswith(site):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_local)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        # The task state machine (concepts): Mermaid draws it into the diagram's (closed)
        # shadow root, so the element keeps no text; undrawn, it is a <pre> of the source.
        page.goto(site + "concepts/")
        diagram = page.locator(".mermaid").first
        page.wait_for_function(
            "() => { const d = document.querySelector('.mermaid');"
            " return d && d.tagName === 'DIV' && d.getBoundingClientRect().height > 150; }",
            timeout=20_000,
        )
        assert diagram.text_content() == ""
        assert page.locator("pre.mermaid").count() == 0
        diagram.scroll_into_view_if_needed()
        diagram.screenshot(path=str(ARTIFACTS_DIR / "docs_offline_mermaid.png"))

        # Each teaching notebook's page shows the stored drawing of each of its dashboards:
        # the header with its status, the graph's nodes, all visible.
        for name in NOTEBOOKS:
            page.goto(f"{site}notebooks/{name}/")
            headers = page.locator(".nbflow-status")
            assert headers.count() > 0, name
            for i in range(headers.count()):
                header = headers.nth(i)
                assert header.get_attribute("data-nbflow-status") in {"succeeded", "failed"}
                assert header.bounding_box() is not None, f"{name}: dashboard {i} not drawn"
            nodes = page.locator("g.nbflow-node")
            assert nodes.count() >= headers.count(), name
            assert nodes.first.is_visible(), name
            # No widget view waiting for a widget manager that never comes.
            assert page.get_by_text("Loading widget").count() == 0, name
            assert page.locator(".jupyter-widgets-view, .widget-subarea").count() == 0, name
            if name.startswith("01-"):
                headers.first.scroll_into_view_if_needed()
                page.screenshot(path=str(ARTIFACTS_DIR / "docs_offline_notebook.png"))
    finally:
        context.close()
    assert errors == []
    assert sorted({url for url in elsewhere if not url.startswith(ALLOWED_ELSEWHERE)}) == []
