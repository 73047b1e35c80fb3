"""weft.runtime.core."""
