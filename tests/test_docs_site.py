"""The docs site works offline and has no dead links (scripts/docs_hooks.py, mkdocs.yml).

The hooks run inside ``mkdocs build --strict`` (the docs stage); these tests pin what they
do on small inputs, check the stored notebooks they act on, and check the README's
relative links, which are not part of the site.
"""

from __future__ import annotations

import importlib.util
import json
import re
import unicodedata
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "scripts" / "docs_hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _hooks()
VIEW = hooks.WIDGET_VIEW


def _output(*kinds: str) -> dict:
    return {"output_type": "display_data", "data": {k: "x" for k in kinds}, "metadata": {}}


def _nb(*outputs: dict) -> dict:
    cell = {"cell_type": "code", "source": "", "outputs": list(outputs), "metadata": {}}
    return {"cells": [cell], "metadata": {"widgets": {"state": {}}}, "nbformat": 4}


def test_offline_notebook_drops_widget_views_that_have_a_fallback():
    nb = _nb(_output(VIEW, "text/html", "text/plain"), _output("text/plain"))
    offline, dropped = hooks.offline_notebook(nb)
    assert dropped == 1
    assert [set(o["data"]) for o in offline["cells"][0]["outputs"]] == [
        {"text/html", "text/plain"},
        {"text/plain"},
    ]
    assert "widgets" not in offline["metadata"]  # no view left: no widget loader either
    assert VIEW in nb["cells"][0]["outputs"][0]["data"]  # the input is not changed


def test_offline_notebook_keeps_a_widget_view_that_has_nothing_else():
    offline, dropped = hooks.offline_notebook(_nb(_output(VIEW, "text/plain")))
    assert dropped == 0
    assert VIEW in offline["cells"][0]["outputs"][0]["data"]
    assert "widgets" in offline["metadata"]  # the view still needs its state (online)


def _widget(model_id: str) -> dict:
    view = {"model_id": model_id, "version_major": 2, "version_minor": 0}
    return {"output_type": "display_data", "data": {VIEW: view, "text/plain": "HTML()"}}


def test_offline_notebook_draws_a_plain_html_or_label_widget_from_its_saved_value():
    # Notebook 11's custom observer shows an ipywidgets HTML: its page loaded the widget
    # manager from a CDN to draw one line of text (issue #22).
    def model(name: str, value: object) -> dict:
        return {"model_name": name, "state": {"value": value}}

    nb = _nb(_widget("h"), _widget("l"), _widget("s"), _widget("n"), _widget("gone"))
    nb["metadata"]["widgets"] = {
        hooks.WIDGET_STATE: {
            "state": {
                "h": model("HTMLModel", "<b>4/4 done</b>"),
                "l": model("LabelModel", "a < b"),
                "s": model("IntSliderModel", 3),
                "n": model("HTMLModel", None),
            }
        }
    }
    offline, dropped = hooks.offline_notebook(nb)
    outputs = [o["data"] for o in offline["cells"][0]["outputs"]]
    assert dropped == 2
    assert outputs[0] == {"text/html": "<b>4/4 done</b>", "text/plain": "HTML()"}
    assert outputs[1] == {"text/html": "a &lt; b", "text/plain": "HTML()"}
    assert all(VIEW in data and "text/html" not in data for data in outputs[2:])
    assert "widgets" in offline["metadata"]  # the slider still needs the widget manager


def test_no_docs_page_needs_the_widget_manager():
    # Every widget view of the teaching notebooks has a stored drawing: no page loads the
    # widget manager (from a CDN) at all.
    for path in NOTEBOOKS:
        offline, _ = hooks.offline_notebook(json.loads(path.read_text(encoding="utf-8")))
        assert "widgets" not in offline["metadata"], path.name
        views = [
            o for c in offline["cells"] for o in c.get("outputs", []) if VIEW in o.get("data", {})
        ]
        assert views == [], path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_stored_dashboard_shows_its_html_on_the_docs_pages(path: Path):
    # Without network the pages showed blank dashboards (issue #22): each dashboard output
    # has a text/html fallback, and the docs render it instead of the widget view.
    offline, _ = hooks.offline_notebook(json.loads(path.read_text(encoding="utf-8")))
    dashboards = [
        output["data"]
        for cell in offline["cells"]
        for output in cell.get("outputs", [])
        if "".join(output.get("data", {}).get("text/plain", "")).startswith("<nbflow.Dashboard")
    ]
    assert dashboards, "every teaching notebook shows at least one run's dashboard"
    for data in dashboards:
        assert VIEW not in data and "nbflow-status" in "".join(data["text/html"])


def _site(tmp_path: Path, pages: dict[str, str]) -> Path:
    for rel, body in pages.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(f"<html><body>{body}</body></html>")
    return tmp_path


def test_dead_links_finds_missing_pages_files_and_anchors(tmp_path):
    site = _site(
        tmp_path,
        {
            "index.html": '<h1 id="top">x</h1><a href="#top">ok</a> <a href="guide/#setup">ok</a>'
            ' <a href="guide/#nowhere">bad anchor</a> <a href="gone/">bad page</a>'
            ' <a href="img/a.png">ok file</a> <a href="https://example.org/#x">external</a>',
            "guide/index.html": '<h2 id="setup">s</h2><a href="../#top">ok</a>'
            ' <a href="#stopping-the-whole-run-and">toc</a> <a href="../../out.html">out</a>',
            "404.html": '<a href="missing/">not checked</a>',
        },
    )
    (site / "img").mkdir()
    (site / "img" / "a.png").write_bytes(b"")
    assert hooks.dead_links(site) == [
        "guide/index.html: #stopping-the-whole-run-and "
        "(no anchor #stopping-the-whole-run-and in guide/index.html)",
        "guide/index.html: ../../out.html (no such file)",
        "index.html: guide/#nowhere (no anchor #nowhere in guide/index.html)",
        "index.html: gone/ (no such file)",
    ]


def test_raw_roles_finds_the_roles_a_reader_would_see_as_text(tmp_path):
    # The API reference showed ~35 roles as literal text (issue #22). Built without the roles
    # extension, the real site has 85 of them, each a warning that fails `--strict`.
    site = _site(
        tmp_path,
        {
            "api/index.html": "<p>A <code>Run</code>, see :class:<code>~nbflow.run.Run</code>"
            " and\n:py:meth:<code>Flow.run</code>.</p>",
            "ok/index.html": '<p title=":class:`Tip`">fine</p><script>x = ":func:`f`"</script>'
            "<pre><code>role = ':class:'</code></pre><p>a :class: word, <code>:func:</code></p>",
        },
    )
    assert hooks.raw_roles(site) == [
        "api/index.html: :class:~nbflow.run.Run and",
        "api/index.html: :py:meth:Flow.run.",
    ]


def test_mkdocs_config_wires_the_hooks_the_roles_and_the_offline_assets():
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda *_: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)
    assert config["strict"] is True
    assert "scripts/docs_hooks.py" in config["hooks"]
    python = next(p["mkdocstrings"] for p in config["plugins"] if "mkdocstrings" in p)
    assert (
        "scripts/docs_roles.py:SphinxRoles" in python["handlers"]["python"]["options"]["extensions"]
    )
    for asset in config["extra_javascript"] + config["extra_css"]:
        assert (ROOT / "docs" / asset).is_file(), asset
    assert config["theme"]["font"] is False  # no font CDN


# -- the README's relative links (GitHub renders them; the site does not include it) ---------

#: A Markdown link or image's target, or an HTML ``src``/``href`` (the README's pictures).
LINK = re.compile(r"\]\(([^)\s]+)\)|\b(?:src|href)=\"([^\"]+)\"")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def slugify(heading: str) -> str:
    """A heading's anchor as Python-Markdown's toc (and so GitHub, for plain words) makes it."""
    text = unicodedata.normalize("NFKD", re.sub(r"[`*]", "", heading))
    text = re.sub(r"[^\w\s-]", "", text.encode("ascii", "ignore").decode()).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(path: Path) -> set[str]:
    if path.suffix == ".md":
        text = path.read_text(encoding="utf-8")
    elif path.suffix == ".ipynb":
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    else:
        return set()
    return {slugify(h) for h in HEADING.findall(text)}


def markdown_dead_links(page: Path) -> list[str]:
    """Relative links of a Markdown file whose target (file, folder or #anchor) is missing."""
    problems = []
    for href in map("".join, LINK.findall(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", href):  # https:, mailto: ...
            continue
        path, _, anchor = href.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            problems.append(f"{href} (no such file)")
        elif anchor and target.is_file() and anchor not in _anchors(target):
            problems.append(f"{href} (no anchor #{anchor})")
    return problems


def test_readme_relative_links_and_anchors_exist():
    assert markdown_dead_links(ROOT / "README.md") == []


def test_markdown_dead_links_sees_a_dead_file_and_anchor(tmp_path):
    (tmp_path / "guide.md").write_text("# Guide\n\n## Set `up` here\n")
    page = tmp_path / "README.md"
    page.write_text(
        "[a](guide.md#set-up-here) [b](guide.md#nope) [c](gone.md) [d](https://x.org/#y) [e](#z)"
        ' <img src="guide.md" width="49%"> <img src="img/gone.png" alt="x">'
    )
    assert markdown_dead_links(page) == [
        "guide.md#nope (no anchor #nope)",
        "gone.md (no such file)",
        "#z (no anchor #z)",
        "img/gone.png (no such file)",
    ]
