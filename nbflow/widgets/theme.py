"""The dashboard's look inside JupyterLab: CSS for the ipywidgets it is built from.

ipywidgets draws tabs as grey boxes and toggle buttons as raised buttons; inside an
``.nbflow-dashboard`` they are restyled flat, like the rest of the dashboard. The selectors
out-rank ipywidgets' own; colours are JupyterLab theme variables with light fallbacks, so the
dark theme works too. Everything else is styled inline (see :mod:`nbflow.widgets.panels`).
"""

from __future__ import annotations

_ACCENT = "#0072B2"
#: A ``<style>`` element; the dashboard puts it in its header widget.
STYLE = f"""<style>
.nbflow-dashboard .jupyter-widgets.widget-tab > .lm-TabBar {{
  border-bottom: 1px solid rgba(127,127,127,.25); min-height: 32px; padding-left: 8px; }}
.nbflow-dashboard .jupyter-widgets.widget-tab > .lm-TabBar .lm-TabBar-tab {{
  background: transparent; border: none; border-bottom: 2px solid transparent;
  flex: 0 0 auto; min-width: 0; max-width: none; margin: 0 4px 0 0; padding: 0 12px;
  min-height: 30px; line-height: 30px; transform: none; font-size: 12.5px;
  color: var(--jp-ui-font-color2, #6b7280); }}
.nbflow-dashboard .jupyter-widgets.widget-tab > .lm-TabBar .lm-TabBar-tab.lm-mod-current {{
  border-bottom-color: {_ACCENT}; color: var(--jp-ui-font-color0, #111827);
  font-weight: 600; background: transparent; }}
.nbflow-dashboard .jupyter-widgets.widget-tab > .lm-TabBar .lm-TabBar-tab:hover {{
  color: var(--jp-ui-font-color0, #111827); }}
.nbflow-dashboard .jupyter-widgets.widget-tab > .lm-TabBar .lm-TabBar-tab::before {{
  display: none; }}
.nbflow-dashboard .jupyter-widgets.widget-tab > .widget-tab-contents {{
  border: none; padding: 8px 10px 4px; background: transparent; }}
.nbflow-dashboard .widget-toggle-buttons .widget-toggle-button {{
  height: 26px; line-height: 24px; font-size: 12px; border-radius: 6px; padding: 0 10px;
  background: transparent; border: 1px solid rgba(127,127,127,.35); box-shadow: none;
  margin-right: 4px; color: inherit; }}
.nbflow-dashboard .widget-toggle-buttons .widget-toggle-button.mod-active {{
  background: {_ACCENT}; border-color: {_ACCENT}; color: #fff; }}
.nbflow-dashboard.widget-vbox {{
  border: 1px solid rgba(127,127,127,.28); border-radius: 4px; padding-bottom: 4px;
  margin: 6px 0; }}
.nbflow-dashboard .widget-html-content {{ line-height: normal; }}
</style>"""
