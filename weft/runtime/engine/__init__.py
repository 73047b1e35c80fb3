"""weft.runtime.engine."""
