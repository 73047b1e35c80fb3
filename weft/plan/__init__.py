"""weft.plan."""
