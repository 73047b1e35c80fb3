"""weft.runtime.stores."""
