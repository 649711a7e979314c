"""Shared pytest configuration for the whole test suite.

Markers (browser, notebook, dask, slow), the default timeout and strict markers are declared
in ``pyproject.toml``. The real-browser fixtures live in ``tests/browser/conftest.py``.
Keep this file small: only what several test folders share belongs here.
"""

from __future__ import annotations
