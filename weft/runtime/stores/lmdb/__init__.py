"""weft.runtime.stores.lmdb."""
