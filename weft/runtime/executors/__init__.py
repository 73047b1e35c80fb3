"""weft.runtime.executors."""
