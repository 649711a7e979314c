"""Modules stay a few hundred lines: one over :data:`LIMIT` says why in its docstring.

The convention (docs/testing.md, "Module sizes"): a module of the package longer than
:data:`LIMIT` lines has, in its module docstring, a paragraph that starts with
``Longer than`` and gives the reason in at least :data:`MIN_WORDS` words, e.g. ::

    Longer than 500 lines: Dashboard is one widget whose parts share its state. ...

The reason says what the module holds together and why a split would make it harder to
read. A module back under the limit drops the paragraph (a stale reason misleads), and
:data:`WAIVED` lists, with the why, the modules that may not say it yet.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nbflow"
#: Lines (as ``wc -l`` counts them) a module may have without a reason.
LIMIT = 500
#: A reason is at least this many words ("Longer than 500 lines." alone says nothing).
MIN_WORDS = 15
#: Module path (relative to nbflow/) -> why it may be over the limit without a reason, for now.
WAIVED: dict[str, str] = {}

_REASON = re.compile(r"(?:^|\n\s*\n)\s*(Longer than\b.*?)(?:\n\s*\n|\Z)", re.S)


def reason(source: str) -> str | None:
    """The ``Longer than`` paragraph of a module's docstring, if it gives a reason."""
    doc = ast.get_docstring(ast.parse(source)) or ""
    found = _REASON.search(doc)
    if found is None or len(found.group(1).split()) < MIN_WORDS:
        return None
    return found.group(1)


def _sizes() -> dict[str, tuple[int, str]]:
    """Every module of the package: (its number of lines, its source), by path."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        found[path.relative_to(PACKAGE).as_posix()] = (source.count("\n"), source)
    return found


def test_a_module_over_the_limit_says_why():
    unexplained = [
        f"{name} ({lines} lines): split it along a concept, or say why in its docstring "
        "(a paragraph starting 'Longer than')"
        for name, (lines, source) in _sizes().items()
        if lines > LIMIT and name not in WAIVED and reason(source) is None
    ]
    assert unexplained == []


def test_a_module_under_the_limit_has_no_stale_reason():
    stale = [
        name
        for name, (lines, source) in _sizes().items()
        if lines <= LIMIT and reason(source) is not None
    ]
    assert stale == []


def test_every_waiver_is_still_needed():
    # A waived module that shrank or now says why: remove its entry.
    sizes = _sizes()
    for name in WAIVED:
        assert name in sizes, name
        lines, source = sizes[name]
        assert lines > LIMIT and reason(source) is None, name


def test_the_reason_is_a_paragraph_of_its_own_with_words():
    assert reason('"""Summary.\n\nLonger than 500 lines: ' + "word " * 20 + '\n"""') is not None
    assert reason('"""Summary.\n\nLonger than 500 lines.\n"""') is None  # no reason given
    assert reason('"""Summary.\n\nIt is longer than ' + "word " * 20 + '\n"""') is None
    assert reason("x = 1\n") is None  # no docstring
