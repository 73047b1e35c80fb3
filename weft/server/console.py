"""The web console's pages (being written: see the console's own module docstring once it lands)."""

from __future__ import annotations

from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    """Add the console's pages and static files to `app`."""
