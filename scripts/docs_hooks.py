"""MkDocs hooks (mkdocs.yml ``hooks:``): notebook pages that work offline, and a link check.

1. Notebook pages show each dashboard's stored HTML. A dashboard output carries two
   representations: the live widget view (``application/vnd.jupyter.widget-view+json``),
   which needs the widget manager from a CDN, and a ``text/html`` fallback (the finished
   run: header, DAG and timeline as inline SVG, the task table). nbconvert prefers the widget
   view, so without network the pages showed blank dashboards. :func:`offline_notebook`
   drops a widget view wherever the same output has a fallback (and the notebook's widget
   state once no view is left, so no loader script is added); mkdocs-jupyter then renders
   the fallback. A plain ipywidgets ``HTML`` or ``Label`` with no fallback (notebook 11's
   custom observer) gets one made from its value in the saved widget state, the value it
   had when the notebook was saved. The notebooks in notebooks/ are not changed: copies in
   ``build/docs-notebooks/`` are rendered instead.

2. Dead internal links and anchors fail the build. MkDocs checks the links of Markdown
   pages (``validation:`` in mkdocs.yml), but not those of rendered notebooks, nor the table
   of contents mkdocs-jupyter makes for them. :func:`dead_links` reads every built HTML page
   and reports each relative link whose file or ``#anchor`` is missing, as a warning, which
   ``mkdocs build --strict`` turns into a failure. Offline: only files of the site are read.

3. A Sphinx role left as text fails the build too. The docstrings' roles become
   cross-references (scripts/docs_roles.py); one that slipped past it (a role that file does
   not know, a page written by hand) would show as literal ``:class:`` text, as ~35 did in
   the API reference (issue #22). :func:`raw_roles` finds them in the built pages' text.
"""

from __future__ import annotations

import copy
import html
import json
import logging
import posixpath
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

log = logging.getLogger("mkdocs.hooks.nbflow")

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
#: Representations a reader sees instead of a widget view, best first.
FALLBACKS = ("text/html", "image/svg+xml", "image/png")
OFFLINE_DIR = Path("build") / "docs-notebooks"


# -- 1. notebooks without widget views ---------------------------------------------------


#: Widget models drawn from their saved ``value`` alone: as HTML, or as escaped text.
_VALUE_MODELS = {"HTMLModel": True, "HTMLMathModel": True, "LabelModel": False}


def _saved_value_html(nb: dict[str, Any], view: Any) -> str | None:
    """The HTML a plain ``HTML``/``Label`` widget showed when the notebook was saved (from
    the saved widget state); None for any other widget, or one whose state was not saved."""
    saved = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    model = saved.get(view.get("model_id") if isinstance(view, dict) else None) or {}
    as_html = _VALUE_MODELS.get(model.get("model_name", ""))
    value = model.get("state", {}).get("value")
    if as_html is None or not isinstance(value, str):
        return None
    return value if as_html else html.escape(value)


def offline_notebook(nb: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A copy of ``nb`` without the widget views that have a fallback, and how many went.

    A plain ``HTML`` or ``Label`` widget's view without one gets one, its saved value (see
    :func:`_saved_value_html`). The notebook's saved widget state (``metadata.widgets``) goes
    too once no widget view is left: it only serves the views, and its presence makes
    nbconvert load the widget manager from the network.
    """
    nb = copy.deepcopy(nb)
    dropped = kept = 0
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW not in data:
                continue
            if not any(kind in data for kind in FALLBACKS):
                value = _saved_value_html(nb, data[WIDGET_VIEW])
                if value is not None:
                    data["text/html"] = value
            if any(kind in data for kind in FALLBACKS):
                del data[WIDGET_VIEW]
                dropped += 1
            else:
                kept += 1
    if not kept:
        nb.get("metadata", {}).pop("widgets", None)
    return nb, dropped


def on_files(files: Any, config: Any) -> Any:
    """Point each notebook page at an offline copy (runs after mkdocs-jupyter's on_files)."""
    out = Path(config["config_file_path"]).parent / OFFLINE_DIR
    for file in files:
        src = file.abs_src_path
        if not src or not src.endswith(".ipynb") or not file.is_documentation_page():
            continue
        nb, dropped = offline_notebook(json.loads(Path(src).read_text(encoding="utf-8")))
        target = out / file.src_uri
        target.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
        file.abs_src_path = str(target)
        log.debug("%s: %d widget views replaced by their stored HTML", file.src_uri, dropped)
    return files


# -- 2. dead internal links and anchors ------------------------------------------------------


class _Page(HTMLParser):
    """The ids (and names) a page defines, and the links it makes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if a.get(key):
                self.ids.add(a[key] or "")
        if tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")


def _read(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8", errors="replace"))
    return page


def dead_links(site: Path) -> list[str]:
    """Every relative link of the built ``site`` whose target file or anchor is missing.

    Each as ``"<page>: <href> (<why>)"``, pages in path order. External links (with a
    scheme or host) are not followed; a link to a folder means its ``index.html``.
    """
    pages = {p.relative_to(site).as_posix(): p for p in sorted(site.rglob("*.html"))}
    parsed: dict[str, _Page] = {}

    def page(rel: str) -> _Page:
        if rel not in parsed:
            parsed[rel] = _read(pages[rel])
        return parsed[rel]

    problems = []
    for rel in pages:
        if rel == "404.html":  # served at any depth: its relative links are not its own
            continue
        for href in dict.fromkeys(page(rel).links):
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith("//"):
                continue
            path, anchor = unquote(parts.path), unquote(parts.fragment)
            if path:
                target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), path))
                if path.endswith("/") or (site / target).is_dir():
                    target = posixpath.join(target, "index.html")
            else:
                target = rel
            if target.startswith("../") or not (site / target).exists():
                problems.append(f"{rel}: {href} (no such file)")
            elif anchor and target in pages and anchor not in page(target).ids:
                problems.append(f"{rel}: {href} (no anchor #{anchor} in {target})")
    return problems


# -- 3. Sphinx roles left as text ------------------------------------------------------------

#: A role as a page shows it: ``:class:`` before the code (or backtick) of its target. Only
#: what a reader sees counts: text, not attributes or scripts.
ROLE_TEXT = re.compile(
    r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const|ref|doc|term):(?=<code|`)"
)
_SCRIPT = re.compile(r"<(script|style)\b.*?</\1>", re.S | re.I)
_TAG_ATTRS = re.compile(r"<(\w+)\s[^>]*>")


def raw_roles(site: Path) -> list[str]:
    """Each Sphinx role shown as text in the built ``site``: ``"<page>: <role>…"``."""
    problems = []
    for path in sorted(site.rglob("*.html")):
        text = _TAG_ATTRS.sub(r"<\1>", _SCRIPT.sub("", path.read_text(encoding="utf-8")))
        for match in ROLE_TEXT.finditer(text):
            shown = re.sub(r"<[^>]*>", "", text[match.start() : match.start() + 300])
            problems.append(f"{path.relative_to(site).as_posix()}: {shown.splitlines()[0][:60]}")
    return problems


def on_post_build(config: Any) -> None:
    """Warn about each dead internal link or anchor and each role left as text (``--strict``
    makes that an error)."""
    site = Path(config["site_dir"])
    for problem in dead_links(site):
        log.warning("dead link: %s", problem)
    for problem in raw_roles(site):
        log.warning("Sphinx role shown as text: %s", problem)
