"""A Griffe extension for the API reference: Sphinx roles in docstrings become links.

Our docstrings say ``:class:`~nbflow.run.Run``` and ``:meth:`sync``` (Sphinx roles), which
mkdocstrings shows as literal text. Rather than edit every docstring, this extension rewrites
each role while the docs are built (mkdocs.yml lists it under the Python handler's
``extensions``):

- a target that Griffe can resolve, fully qualified or from the docstring's own scope (the
  object, its class, its module, what the module imports), becomes an *optional* autorefs
  cross-reference: a link where that object is documented, plain code where it is not;
- a target it cannot resolve (``asyncio.TaskGroup``, a typo) becomes plain code.

The display text follows Sphinx: ``~`` keeps only the last part, functions and methods get
``()``, ``:role:`text <target>``` shows ``text``. Nothing else in a docstring changes.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

# :class:`x`, :py:meth:`~x.y`, :func:`title <x.y>` (Sphinx's Python domain roles).
ROLE = re.compile(
    r":(?:py:)?(?P<role>class|func|meth|mod|data|attr|exc|obj|const|type):"
    r"`(?P<tilde>~?)(?:(?P<title>[^`<]*?)\s*<(?P<titled>[^`>]+)>|(?P<target>[^`]+))`"
)
_CALLABLE = {"func", "meth"}


def resolve(obj: griffe.Object | griffe.Alias, target: str, scoped: bool = True) -> str | None:
    """The path of the object ``target`` names in ``obj``'s docstring, or None.

    Tried in order: ``target`` as a full path, then (if ``scoped``) its first part looked up
    from ``obj``'s scope outwards (members, then parents, as Python code there would see it).
    """
    target = target.lstrip(".")
    collection = obj.modules_collection
    first, _, rest = target.partition(".")
    candidates = [target]
    try:
        found_in_scope = obj.resolve(first) if scoped else None
    except Exception:  # NameResolutionError, or an alias that cannot be followed
        found_in_scope = None
    if found_in_scope:
        candidates.append(f"{found_in_scope}.{rest}" if rest else found_in_scope)
    for path in candidates:
        try:
            found = collection[path]
        except Exception:  # KeyError, AliasResolutionError, CyclicAliasError
            continue
        try:
            return str(found.final_target.path if found.is_alias else found.path)
        except Exception:  # an alias to something not loaded (another package)
            continue
    return None


def rewrite(text: str, obj: griffe.Object | griffe.Alias) -> str:
    """``text`` with every Sphinx role replaced by a cross-reference or inline code."""

    def replace(match: re.Match[str]) -> str:
        target = (match["titled"] or match["target"]).strip()
        if match["title"]:
            shown = match["title"].strip()
        else:
            bare = target.lstrip(".~")
            shown = bare.rsplit(".", 1)[-1] if match["tilde"] else bare
            if match["role"] in _CALLABLE and not shown.endswith(")"):
                shown += "()"
        # A module is named in full (:mod:`logging` is the standard library's, not a
        # function of that name in the docstring's module).
        path = resolve(obj, target.lstrip("~"), scoped=match["role"] != "mod")
        code = f"<code>{html.escape(shown)}</code>"
        if path is None:
            return code
        return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'

    return ROLE.sub(replace, text)


class SphinxRoles(griffe.Extension):
    """Rewrite the Sphinx roles of every docstring of a package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        seen: set[int] = set()
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if obj.docstring is not None and ":" in obj.docstring.value:
                obj.docstring.value = rewrite(obj.docstring.value, obj)
            stack.extend(m for m in obj.members.values() if not m.is_alias)
