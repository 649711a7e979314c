"""The live Jupyter dashboard of a run, and the views it is drawn from.

``nbflow.widgets.Dashboard`` (also ``nf.Dashboard``) is the ipywidgets composite; it is
imported on first use, so ``nbflow.widgets.views`` and ``.panels`` (pure functions that the
static summary and ``flow.graph()`` use too) never import ipywidgets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbflow.widgets.dashboard import Dashboard, DashboardStats

__all__ = ["Dashboard", "DashboardStats"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from nbflow.widgets import dashboard

        return getattr(dashboard, name)
    raise AttributeError(f"module 'nbflow.widgets' has no attribute {name!r}")
