"""The one error type services raise; handlers turn it into an error answer."""
from __future__ import annotations

from typing import Any

from ..domain.protocol import N_, ProtocolError


class ServiceError(ProtocolError):
    """A refused request: ``code`` is stable, ``message`` is for people, ``status`` for HTTP."""

    def __init__(self, code: str, message: str, status: int = 400, **params: Any) -> None:
        super().__init__(code, message, **params)
        self.status = status


def not_found(message: str = N_("No such café.")) -> ServiceError:
    return ServiceError("not_found", message, 404)


def forbidden(message: str = "You may not do that.") -> ServiceError:
    return ServiceError("forbidden", message, 403)
