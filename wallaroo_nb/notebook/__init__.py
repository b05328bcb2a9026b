"""Notebook layer: live latency dashboard, HTML report, IPython extension.

Deliberately empty: import the submodule you need (`.dashboard.dashboard`,
`.report.write_report`), so loading one piece, such as the extension, does not
pull in bokeh and ipywidgets.
"""
