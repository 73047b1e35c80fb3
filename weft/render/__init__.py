"""Drawing Plans and runs with Graphviz: `to_dot` (no Graphviz needed), `draw` (SVG, PNG, PDF) and `svg` (bytes)."""

from weft.render.graph import draw, svg, to_dot

__all__ = ["draw", "svg", "to_dot"]
