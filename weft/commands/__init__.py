"""Implementations of the `weft` sub-commands, imported on demand by weft.cli."""
