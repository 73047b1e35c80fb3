"""weft.sdk."""
