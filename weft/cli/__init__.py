"""weft.cli."""
