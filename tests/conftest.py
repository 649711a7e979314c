"""Shared pytest configuration for the whole test suite.

Markers (browser, notebook, dask, slow), the default timeout and strict markers are declared
in ``pyproject.toml``. The real-browser fixtures live in ``tests/browser/conftest.py``.
Keep this file small: only what several test folders share belongs here.
"""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path, monkeypatch):
    """Every flow's default store is a fresh SQLite file of this test (never the repo's)."""
    monkeypatch.setenv("NBFLOW_STORE", str(tmp_path / "nbflow.db"))
    yield
    store = sys.modules.get("nbflow.store")
    if store is not None:
        store.close_all()  # stop this test's writer thread and release its files
