"""The realtime protocol: one typed model per client command, and the protocol version.

Each model's ``parse`` turns an untrusted payload (whatever JSON the transport decoded) into a
validated, frozen object or raises :class:`ProtocolError` with a code and a message a client can show.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

PROTOCOL_VERSION = 1

NOTE_MAX_CHARS = 280
NAME_MAX_CHARS = 40
MAX_EXTEND_SECONDS = 3600
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")


class ProtocolError(Exception):
    """A payload that cannot be accepted; ``code`` is stable, ``message`` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, Any]:
        return {"ok": False, "error": {"code": self.code, "message": self.message}}


def _require_mapping(payload: Any) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise ProtocolError("invalid_payload", "The message must be a JSON object.")
    return payload


def _get(payload: dict[str, Any], key: str, required: bool) -> Any:
    if key not in payload or payload[key] is None:
        if required:
            raise ProtocolError("invalid_payload", f"'{key}' is required.")
        return None
    return payload[key]


def clean_text(value: str) -> str:
    """Strip control characters (keeping newlines and tabs) and surrounding white space."""
    return "".join(ch for ch in value if ch in "\n\t" or (ord(ch) >= 32 and ord(ch) != 127)).strip()


def text_field(payload: dict[str, Any], key: str, *, max_chars: int, required: bool = True,
               allow_empty: bool = False) -> str | None:
    value = _get(payload, key, required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError("invalid_payload", f"'{key}' must be text.")
    if len(value) > max_chars * 4:   # refuse absurd input before cleaning it
        raise ProtocolError("too_long", f"'{key}' is longer than {max_chars} characters.")
    value = clean_text(value)
    if len(value) > max_chars:
        raise ProtocolError("too_long", f"'{key}' is longer than {max_chars} characters.")
    if not value and not allow_empty:
        if required:
            raise ProtocolError("empty", f"'{key}' is empty.")
        return None
    return value


def int_field(payload: dict[str, Any], key: str, *, minimum: int, maximum: int,
              required: bool = True) -> int | None:
    value = _get(payload, key, required)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError("invalid_payload", f"'{key}' must be a whole number.")
    if not minimum <= value <= maximum:
        raise ProtocolError("out_of_range", f"'{key}' must be between {minimum} and {maximum}.")
    return value


def uuid_field(payload: dict[str, Any], key: str) -> str:
    value = _get(payload, key, True)
    if not isinstance(value, str) or len(value) > 64:
        raise ProtocolError("invalid_payload", f"'{key}' must be a UUID.")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ProtocolError("invalid_payload", f"'{key}' must be a UUID.") from None


def language_field(payload: dict[str, Any], key: str) -> str | None:
    value = _get(payload, key, False)
    if value is None:
        return None
    if not isinstance(value, str) or not LANGUAGE_RE.match(value):
        raise ProtocolError("invalid_payload", f"'{key}' must be a language code such as 'en'.")
    return value


def token_field(payload: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = _get(payload, key, required)
    if value is None:
        return None
    if not isinstance(value, str) or not 16 <= len(value) <= 128:
        raise ProtocolError("invalid_payload", f"'{key}' is not a valid token.")
    return value


M = TypeVar("M", bound="Command")


class Command:
    """Base of the command models: ``event`` is the Socket.IO event name."""

    event: ClassVar[str]

    @classmethod
    def parse(cls: type[M], payload: Any) -> M:  # pragma: no cover - overridden
        raise NotImplementedError

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class ParticipantJoin(Command):
    event: ClassVar[str] = "participant_join"
    join_code: str
    name: str | None = None
    language: str | None = None
    rejoin_token: str | None = None
    since_version: int | None = None

    @classmethod
    def parse(cls, payload: Any) -> ParticipantJoin:
        p = _require_mapping(payload)
        code = text_field(p, "join_code", max_chars=32)
        assert code is not None
        return cls(join_code=code,
                   name=text_field(p, "name", max_chars=NAME_MAX_CHARS, required=False),
                   language=language_field(p, "language"),
                   rejoin_token=token_field(p, "rejoin_token"),
                   since_version=int_field(p, "since_version", minimum=0, maximum=2**62, required=False))


@dataclass(frozen=True)
class ParticipantLeave(Command):
    event: ClassVar[str] = "participant_leave"

    @classmethod
    def parse(cls, payload: Any) -> ParticipantLeave:
        _require_mapping(payload)
        return cls()


@dataclass(frozen=True)
class NoteAdd(Command):
    event: ClassVar[str] = "note_add"
    client_id: str
    text: str
    lang: str | None = None

    @classmethod
    def parse(cls, payload: Any) -> NoteAdd:
        p = _require_mapping(payload)
        text = text_field(p, "text", max_chars=NOTE_MAX_CHARS)
        assert text is not None
        return cls(client_id=uuid_field(p, "client_id"), text=text, lang=language_field(p, "lang"))


@dataclass(frozen=True)
class NoteEdit(Command):
    event: ClassVar[str] = "note_edit"
    note_id: int
    text: str

    @classmethod
    def parse(cls, payload: Any) -> NoteEdit:
        p = _require_mapping(payload)
        note_id = int_field(p, "note_id", minimum=1, maximum=2**62)
        text = text_field(p, "text", max_chars=NOTE_MAX_CHARS)
        assert note_id is not None and text is not None
        return cls(note_id=note_id, text=text)


@dataclass(frozen=True)
class NoteDelete(Command):
    event: ClassVar[str] = "note_delete"
    note_id: int

    @classmethod
    def parse(cls, payload: Any) -> NoteDelete:
        p = _require_mapping(payload)
        note_id = int_field(p, "note_id", minimum=1, maximum=2**62)
        assert note_id is not None
        return cls(note_id=note_id)


@dataclass(frozen=True)
class CafeCommand(Command):
    """A facilitator command that names its café."""

    event: ClassVar[str] = ""
    cafe_id: int

    @classmethod
    def parse(cls, payload: Any) -> CafeCommand:
        p = _require_mapping(payload)
        cafe_id = int_field(p, "cafe_id", minimum=1, maximum=2**62)
        assert cafe_id is not None
        return cls(cafe_id=cafe_id)


@dataclass(frozen=True)
class FacilitatorJoin(CafeCommand):
    event: ClassVar[str] = "facilitator_join"
    since_version: int | None = None

    @classmethod
    def parse(cls, payload: Any) -> FacilitatorJoin:
        p = _require_mapping(payload)
        base = CafeCommand.parse(p)
        return cls(cafe_id=base.cafe_id,
                   since_version=int_field(p, "since_version", minimum=0, maximum=2**62, required=False))


@dataclass(frozen=True)
class RoundExtend(CafeCommand):
    event: ClassVar[str] = "round_extend"
    seconds: int = 60

    @classmethod
    def parse(cls, payload: Any) -> RoundExtend:
        p = _require_mapping(payload)
        base = CafeCommand.parse(p)
        seconds = int_field(p, "seconds", minimum=-MAX_EXTEND_SECONDS, maximum=MAX_EXTEND_SECONDS)
        assert seconds is not None
        if seconds == 0:
            raise ProtocolError("out_of_range", "'seconds' must not be 0.")
        return cls(cafe_id=base.cafe_id, seconds=seconds)


@dataclass(frozen=True)
class ParticipantRemove(CafeCommand):
    event: ClassVar[str] = "participant_remove"
    participant_id: int = 0

    @classmethod
    def parse(cls, payload: Any) -> ParticipantRemove:
        p = _require_mapping(payload)
        base = CafeCommand.parse(p)
        pid = int_field(p, "participant_id", minimum=1, maximum=2**62)
        assert pid is not None
        return cls(cafe_id=base.cafe_id, participant_id=pid)


#: Facilitator commands that carry only ``{cafe_id}``.
SIMPLE_CAFE_COMMANDS = ("round_start", "round_pause", "round_resume", "round_end", "cafe_end",
                        "joins_close", "joins_open")
