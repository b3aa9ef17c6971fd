"""The one error type services raise; handlers turn it into an error answer."""
from __future__ import annotations

from ..domain.protocol import ProtocolError


class ServiceError(ProtocolError):
    """A refused request: ``code`` is stable, ``message`` is for people, ``status`` for HTTP."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(code, message)
        self.status = status


def not_found(what: str = "café") -> ServiceError:
    return ServiceError("not_found", f"No such {what}.", 404)


def forbidden(message: str = "You may not do that.") -> ServiceError:
    return ServiceError("forbidden", message, 403)
