"""The dataflow picture as a bokeh figure: boxes for sources, steps and sinks, arrows.

`GraphPlot(topology)` holds the figure and the two data sources that change:
the nodes' numbers (`nodes`, column "stats") and the edges' labels
(`edge_labels`, column "text"). The live view and the HTML report draw the same
figure; only how often the numbers change differs. Routing hops (key_by, one
partition) are dashed red arrows; fused steps (direct calls) solid grey ones.
"""

from __future__ import annotations

from typing import Any

from bokeh.models import Arrow, ColumnDataSource, HoverTool, Range1d, VeeHead
from bokeh.plotting import figure

from .topology import Topology

COLUMN_PX = 200  # horizontal distance between columns, while the picture fits
MAX_WIDTH_PX, MIN_COLUMN_PX = 800, 170  # a notebook's output area; wider ones get narrower
ROW_PX = 120  # vertical distance between nodes of a column
NODE_W, NODE_H = 0.64, 0.6  # box size in columns / rows
COLOURS = {"source": "#d9f0d3", "sink": "#e0e0e0", "window": "#e5d8f0",
           "state": "#fde0c5", "state_multi": "#fde0c5"}
COMPUTATION_COLOUR = "#d6e6f5"
ERROR_LINE, LINE = "#d62728", "#555555"
HOP_STYLE = {"fused": ("#777777", "solid"), "key_by": ("#d62728", "dashed"),
             "one partition": ("#9467bd", "dashed")}
NODES_NAME, EDGES_NAME = "wallaroo-graph-nodes", "wallaroo-graph-edges"


class GraphPlot:
    """The figure for one topology and the sources to update its numbers."""

    def __init__(self, topo: Topology, title: str = "dataflow") -> None:
        self.topo = topo
        self.nodes = ColumnDataSource(self.node_columns({}), name=NODES_NAME)
        self.edge_labels = ColumnDataSource(self.edge_columns({}), name=EDGES_NAME)
        self.figure = self._figure(title)

    # -- the numbers ----------------------------------------------------------------------

    def node_columns(self, stats: dict) -> dict:
        """Columns of `nodes` for stats {node key: (text, errors)}."""
        cols: dict = {k: [] for k in ("x", "y", "name", "kind", "pipeline", "colour",
                                      "line", "stats")}
        for n in self.topo.nodes:
            text, errors = stats.get(n.key, ("", 0))
            cols["x"].append(float(n.column))
            cols["y"].append(float(n.row))
            cols["name"].append(n.name)
            cols["kind"].append(n.label)
            cols["pipeline"].append(n.pipeline)
            cols["colour"].append(COLOURS.get(n.kind, COMPUTATION_COLOUR))
            cols["line"].append(ERROR_LINE if errors else LINE)
            cols["stats"].append(text)
        return cols

    def edge_columns(self, labels: dict) -> dict:
        """Columns of `edge_labels` for labels {(src key, dst key): text}."""
        cols: dict = {"x": [], "y": [], "text": [], "hop": []}
        for e in self.topo.edges:
            (x0, y0), (x1, y1) = self._end_points(e)
            cols["x"].append((x0 + x1) / 2)
            cols["y"].append((y0 + y1) / 2)
            cols["text"].append(labels.get((e.src, e.dst), ""))
            cols["hop"].append(e.hop)
        return cols

    def set_numbers(self, stats: dict, labels: dict) -> None:
        """Replace the numbers (call under the document's lock when the plot is live)."""
        self.nodes.data = self.node_columns(stats)
        self.edge_labels.data = self.edge_columns(labels)

    # -- drawing ------------------------------------------------------------------------

    def _end_points(self, e: Any) -> tuple:
        a, b = self.topo.node(e.src), self.topo.node(e.dst)
        return (a.column + NODE_W / 2, a.row), (b.column - NODE_W / 2, b.row)

    def _figure(self, title: str) -> Any:
        cols, rows = self.topo.columns, self.topo.rows
        column_px = max(MIN_COLUMN_PX, min(COLUMN_PX, MAX_WIDTH_PX // cols))
        fig = figure(
            title=title, width=max(360, cols * column_px), height=max(170, rows * ROW_PX + 60),
            x_range=Range1d(-0.5, cols - 0.5), y_range=Range1d(-rows / 2, rows / 2),
            tools="save", toolbar_location=None,
        )
        fig.axis.visible = False
        fig.grid.visible = False
        fig.outline_line_color = None
        for hop, (colour, dash) in HOP_STYLE.items():
            self._arrows(fig, hop, colour, dash)
        boxes = fig.rect("x", "y", width=NODE_W, height=NODE_H, source=self.nodes,
                         fill_color="colour", line_color="line", line_width=2)
        fig.add_tools(HoverTool(renderers=[boxes], tooltips=[
            ("step", "@name"), ("kind", "@kind"), ("pipeline", "@pipeline"), ("now", "@stats")]))
        fig.text("x", "y", text="name", source=self.nodes, text_align="center",
                 text_baseline="bottom", y_offset=-14, text_font_size="11px",
                 text_font_style="bold")
        fig.text("x", "y", text="kind", source=self.nodes, text_align="center",
                 text_baseline="bottom", y_offset=-2, text_font_size="9px",
                 text_color="#555555")
        fig.text("x", "y", text="stats", source=self.nodes, text_align="center",
                 text_baseline="top", y_offset=2, text_font_size="9px", text_line_height=1.3)
        fig.text("x", "y", text="text", source=self.edge_labels, text_align="center",
                 text_baseline="bottom", y_offset=-4, text_font_size="9px",
                 text_color="#333333", text_line_height=1.3)
        return fig

    def _arrows(self, fig: Any, hop: str, colour: str, dash: str) -> None:
        ends = [self._end_points(e) for e in self.topo.edges if e.hop == hop]
        if not ends:
            return
        src = ColumnDataSource({"x0": [a[0] for a, _ in ends], "y0": [a[1] for a, _ in ends],
                                "x1": [b[0] for _, b in ends], "y1": [b[1] for _, b in ends]})
        fig.add_layout(Arrow(
            source=src, x_start="x0", y_start="y0", x_end="x1", y_end="y1",
            end=VeeHead(size=9, fill_color=colour, line_color=colour),
            line_color=colour, line_dash=dash, line_width=2))
