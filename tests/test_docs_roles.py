"""The API reference's Griffe extension (scripts/docs_roles.py): Sphinx roles become links."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

griffe = pytest.importorskip("griffe")

ROOT = Path(__file__).resolve().parents[1]
EXTENSION = f"{ROOT / 'scripts' / 'docs_roles.py'}:SphinxRoles"
ROLE_TEXT = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):`")


def _load(name: str, search_paths: list[str]) -> griffe.Module:
    return griffe.load(
        name, search_paths=search_paths, extensions=griffe.load_extensions(EXTENSION)
    )


def test_roles_become_optional_cross_references_or_code(tmp_path):
    pkg = tmp_path / "demo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(
        textwrap.dedent(
            '''
            """See :class:`~demo.mod.Thing`, :func:`helper`, :mod:`logging` and
            :class:`asyncio.TaskGroup`; :meth:`the sync <Thing.sync>` too."""


            def helper():
                """Calls :meth:`Thing.sync`."""


            class Thing:
                """Use :meth:`sync`, then :attr:`~demo.mod.Thing.size`."""

                size = 1

                def sync(self):
                    """Like :func:`helper`."""
            '''
        )
    )
    mod = _load("demo", [str(tmp_path)])["mod"]

    def link(path: str, shown: str) -> str:
        return f'<autoref identifier="{path}" optional><code>{shown}</code></autoref>'

    assert mod.docstring.value == (
        f"See {link('demo.mod.Thing', 'Thing')}, {link('demo.mod.helper', 'helper()')}, "
        "<code>logging</code> and\n<code>asyncio.TaskGroup</code>; "
        f"{link('demo.mod.Thing.sync', 'the sync')} too."
    )
    thing = mod["Thing"]
    assert thing.docstring.value == (
        f"Use {link('demo.mod.Thing.sync', 'sync()')}, then {link('demo.mod.Thing.size', 'size')}."
    )
    assert thing["sync"].docstring.value == f"Like {link('demo.mod.helper', 'helper()')}."
    assert mod["helper"].docstring.value == f"Calls {link('demo.mod.Thing.sync', 'Thing.sync()')}."


def test_no_sphinx_role_is_left_in_nbflow_docstrings():
    # The API reference showed about 35 roles as literal text (issue #22).
    pkg = _load("nbflow", [str(ROOT)])
    left, stack, seen = [], [pkg], set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if obj.docstring is not None and ROLE_TEXT.search(obj.docstring.value):
            left.append(obj.path)
        stack.extend(m for m in obj.members.values() if not m.is_alias)
    assert left == []
