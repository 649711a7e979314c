"""Running code the way IPython runs notebook cells, for tests of notebook semantics.

IPython compiles each execution of a cell under a fresh file name (``<ipython-input-N-…>``)
and keeps the cell's text in :mod:`linecache`, which is where ``inspect.getsource`` finds a
notebook function's source. :class:`Cells` does the same, in one namespace (``__main__``
by default, like a kernel's), so a test can define, run, edit and re-run cells as a user does.
"""

from __future__ import annotations

import contextlib
import hashlib
import linecache
import sys
import textwrap
import types
from collections.abc import Iterator
from typing import Any


class Cells:
    """A kernel's namespace and its execution counter."""

    def __init__(self, name: str = "__main__", namespace: dict[str, Any] | None = None) -> None:
        self.namespace: dict[str, Any] = namespace if namespace is not None else {}
        self.namespace.setdefault("__name__", name)
        self.count = 0

    def run(self, source: str) -> dict[str, Any]:
        """Execute ``source`` as the next cell; return the namespace."""
        source = textwrap.dedent(source)
        self.count += 1
        digest = hashlib.sha1(source.encode()).hexdigest()[:12]
        filename = f"<ipython-input-{self.count}-{digest}>"
        lines = source.splitlines(keepends=True)
        linecache.cache[filename] = (len(source), None, lines, filename)
        exec(compile(source, filename, "exec"), self.namespace)  # the test's own code
        return self.namespace

    def __getitem__(self, name: str) -> Any:
        return self.namespace[name]


@contextlib.contextmanager
def kernel() -> Iterator[Cells]:
    """Cells in a fresh ``__main__`` module, for the duration: as in a Jupyter kernel, what
    they define is an attribute of ``sys.modules["__main__"]``, so an instance of a class
    they define pickles (by its class's name), as it does in a notebook. (A :class:`Cells`
    of its own namespace has no module: such an instance does not pickle.)"""
    saved = sys.modules["__main__"]
    main = types.ModuleType("__main__")
    sys.modules["__main__"] = main
    try:
        yield Cells(namespace=main.__dict__)
    finally:
        sys.modules["__main__"] = saved
