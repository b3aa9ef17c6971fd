"""cafe: run a World Café live.

``create_app`` is imported lazily so that light modules (``cafe.serving``, read by the gunicorn config
before the server monkey-patches) do not pull in Flask and SQLAlchemy.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def create_app(config: Any = None) -> Any:
    """The app factory (see :func:`cafe.app.create_app`)."""
    from .app import create_app as _create_app

    return _create_app(config)
