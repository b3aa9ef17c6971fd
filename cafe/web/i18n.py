"""Error messages in the asker's language: services keep the English template, the edge translates it."""
from __future__ import annotations

from typing import Any

from flask_babel import force_locale, gettext

from ..domain.protocol import ProtocolError


def error_message(exc: ProtocolError, language: str | None = None) -> str:
    """The message of ``exc`` translated (into ``language`` when given, else the request's locale)."""
    def translate() -> str:
        translated = gettext(exc.template, **exc.params) if exc.params else gettext(exc.template)
        return translated or exc.message
    if language:
        with force_locale(language):
            return translate()
    return translate()


def error_answer(exc: ProtocolError, language: str | None = None) -> dict[str, Any]:
    return {"ok": False, "error": {"code": exc.code, "message": error_message(exc, language)}}
