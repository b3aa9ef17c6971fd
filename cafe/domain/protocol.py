"""The realtime protocol: one typed model per client command, and the protocol version.

Each model's ``parse`` turns an untrusted payload (whatever JSON the transport decoded) into a
validated, frozen object or raises :class:`ProtocolError` with a code and a message a client can show.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

PROTOCOL_VERSION = 1

NOTE_MAX_CHARS = 280
NAME_MAX_CHARS = 40
MAX_EXTEND_SECONDS = 3600
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")


def N_(message: str) -> str:
    """Marks a message for translation where it is written; it is translated where it is sent."""
    return message


class ProtocolError(Exception):
    """A payload that cannot be accepted; ``code`` is stable, ``message`` is for people.

    ``template`` and ``params`` keep the untranslated message (``%(name)s`` placeholders) so that the web
    layer can answer in the asker's language.
    """

    def __init__(self, code: str, message: str, **params: Any) -> None:
        self.template = message
        self.params = params
        self.message = message % params if params else message
        super().__init__(self.message)
        self.code = code

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
            raise ProtocolError("invalid_payload", "'%(key)s' is required.", key=key)
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
        raise ProtocolError("invalid_payload", "'%(key)s' must be text.", key=key)
    if len(value) > max_chars * 4:   # refuse absurd input before cleaning it
        raise ProtocolError("too_long", "'%(key)s' is longer than %(num)s characters.", key=key, num=max_chars)
    value = clean_text(value)
    if len(value) > max_chars:
        raise ProtocolError("too_long", "'%(key)s' is longer than %(num)s characters.", key=key, num=max_chars)
    if not value and not allow_empty:
        if required:
            raise ProtocolError("empty", "'%(key)s' is empty.", key=key)
        return None
    return value


def int_field(payload: dict[str, Any], key: str, *, minimum: int, maximum: int,
              required: bool = True) -> int | None:
    value = _get(payload, key, required)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError("invalid_payload", "'%(key)s' must be a whole number.", key=key)
    if not minimum <= value <= maximum:
        raise ProtocolError("out_of_range", "'%(key)s' must be between %(lo)s and %(hi)s.", key=key, lo=minimum,
                            hi=maximum)
    return value


def uuid_field(payload: dict[str, Any], key: str) -> str:
    value = _get(payload, key, True)
    if not isinstance(value, str) or len(value) > 64:
        raise ProtocolError("invalid_payload", "'%(key)s' must be a UUID.", key=key)
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ProtocolError("invalid_payload", "'%(key)s' must be a UUID.", key=key) from None


def language_field(payload: dict[str, Any], key: str) -> str | None:
    value = _get(payload, key, False)
    if value is None:
        return None
    if not isinstance(value, str) or not LANGUAGE_RE.match(value):
        raise ProtocolError("invalid_payload", "'%(key)s' must be a language code such as 'en'.", key=key)
    return value


def token_field(payload: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = _get(payload, key, required)
    if value is None:
        return None
    if not isinstance(value, str) or not 16 <= len(value) <= 128:
        raise ProtocolError("invalid_payload", "'%(key)s' is not a valid token.", key=key)
    return value


M = TypeVar("M", bound="Command")


class Command:
    """Base of the command models: ``event`` is the Socket.IO event name."""

    event: ClassVar[str]

    @classmethod
    def parse(cls: type[M], payload: Any) -> M:  # pragma: no cover - overridden
        raise NotImplementedError


@dataclass(frozen=True)
class ParticipantJoin(Command):
    event: ClassVar[str] = "participant_join"
    join_code: str
    name: str | None = None
    language: str | None = None
    rejoin_token: str | None = None
    since_version: int | None = None
    languages: tuple[str, ...] | None = None     # languages they can talk in at a table (seating)
    stay_put: bool | None = None                 # needs to stay at one table (seating)

    @classmethod
    def parse(cls, payload: Any) -> ParticipantJoin:
        p = _require_mapping(payload)
        code = text_field(p, "join_code", max_chars=32)
        assert code is not None
        raw = _get(p, "languages", False)
        languages = None
        if raw is not None:
            if not isinstance(raw, list) or len(raw) > 10:
                raise ProtocolError("invalid_payload", "'%(key)s' must be a list of language codes.", key="languages")
            codes = [language_field({"languages": item}, "languages") for item in raw]
            languages = tuple(dict.fromkeys(code for code in codes if code))
        stay = _get(p, "stay_put", False)
        if stay is not None and not isinstance(stay, bool):
            raise ProtocolError("invalid_payload", "'%(key)s' must be true or false.", key="stay_put")
        return cls(join_code=code,
                   name=text_field(p, "name", max_chars=NAME_MAX_CHARS, required=False),
                   language=language_field(p, "language"),
                   rejoin_token=token_field(p, "rejoin_token"),
                   since_version=int_field(p, "since_version", minimum=0, maximum=2**62, required=False),
                   languages=languages, stay_put=stay)


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
    scribed: bool = False

    @classmethod
    def parse(cls, payload: Any) -> NoteAdd:
        p = _require_mapping(payload)
        text = text_field(p, "text", max_chars=NOTE_MAX_CHARS)
        assert text is not None
        scribed = _get(p, "scribed", False)
        if scribed is not None and not isinstance(scribed, bool):
            raise ProtocolError("invalid_payload", "'scribed' must be true or false.")
        return cls(client_id=uuid_field(p, "client_id"), text=text, lang=language_field(p, "lang"),
                   scribed=bool(scribed))


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




def bool_field(payload: dict[str, Any], key: str, required: bool = False) -> bool | None:
    value = _get(payload, key, required)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ProtocolError("invalid_payload", "'%(key)s' must be true or false.", key=key)
    return value


def id_field(payload: dict[str, Any], key: str) -> int:
    value = int_field(payload, key, minimum=1, maximum=2**62)
    assert value is not None
    return value


def theme_counts(payload: dict[str, Any], key: str, *, maximum: int) -> tuple[tuple[int, int], ...]:
    """``{"<theme_id>": dots, ...}`` -> sorted ``((theme_id, dots), ...)``, each dots 0..maximum."""
    raw = _get(payload, key, True)
    if not isinstance(raw, dict) or len(raw) > MAX_VOTE_ENTRIES:
        raise ProtocolError("invalid_payload", "'%(key)s' must map theme ids to numbers of dots.", key=key)
    counts = []
    for theme, dots in raw.items():
        if not isinstance(theme, str) or not theme.isdigit() or len(theme) > 18:
            raise ProtocolError("invalid_payload", "'%(key)s' must map theme ids to numbers of dots.", key=key)
        if isinstance(dots, bool) or not isinstance(dots, int) or not 0 <= dots <= maximum:
            raise ProtocolError("out_of_range", "'%(key)s' must be between %(lo)s and %(hi)s.", key=key, lo=0,
                                hi=maximum)
        counts.append((int(theme), dots))
    return tuple(sorted(counts))


THEME_LABEL_MAX = 120
MAX_VOTE_ENTRIES = 100
MAX_SPLIT_NOTES = 1000


@dataclass(frozen=True)
class ThemesPropose(CafeCommand):
    event: ClassVar[str] = "themes_propose"
    confirm: bool = False

    @classmethod
    def parse(cls, payload: Any) -> ThemesPropose:
        p = _require_mapping(payload)
        return cls(cafe_id=CafeCommand.parse(p).cafe_id, confirm=bool(bool_field(p, "confirm")))


@dataclass(frozen=True)
class ThemeRename(CafeCommand):
    event: ClassVar[str] = "theme_rename"
    theme_id: int = 0
    label: str = ""

    @classmethod
    def parse(cls, payload: Any) -> ThemeRename:
        p = _require_mapping(payload)
        label = text_field(p, "label", max_chars=THEME_LABEL_MAX)
        assert label is not None
        return cls(cafe_id=CafeCommand.parse(p).cafe_id, theme_id=id_field(p, "theme_id"), label=label)


@dataclass(frozen=True)
class ThemeAdd(CafeCommand):
    event: ClassVar[str] = "theme_add"
    label: str = ""

    @classmethod
    def parse(cls, payload: Any) -> ThemeAdd:
        p = _require_mapping(payload)
        label = text_field(p, "label", max_chars=THEME_LABEL_MAX)
        assert label is not None
        return cls(cafe_id=CafeCommand.parse(p).cafe_id, label=label)


@dataclass(frozen=True)
class ThemeMerge(CafeCommand):
    event: ClassVar[str] = "theme_merge"
    theme_id: int = 0
    into_id: int = 0

    @classmethod
    def parse(cls, payload: Any) -> ThemeMerge:
        p = _require_mapping(payload)
        return cls(cafe_id=CafeCommand.parse(p).cafe_id, theme_id=id_field(p, "theme_id"),
                   into_id=id_field(p, "into_id"))


@dataclass(frozen=True)
class NoteMove(CafeCommand):
    event: ClassVar[str] = "note_move"
    note_id: int = 0
    theme_id: int = 0

    @classmethod
    def parse(cls, payload: Any) -> NoteMove:
        p = _require_mapping(payload)
        return cls(cafe_id=CafeCommand.parse(p).cafe_id, note_id=id_field(p, "note_id"),
                   theme_id=id_field(p, "theme_id"))


@dataclass(frozen=True)
class ThemeSplit(CafeCommand):
    event: ClassVar[str] = "theme_split"
    theme_id: int = 0
    note_ids: tuple[int, ...] = ()
    label: str | None = None

    @classmethod
    def parse(cls, payload: Any) -> ThemeSplit:
        p = _require_mapping(payload)
        raw = _get(p, "note_ids", True)
        if not isinstance(raw, list) or not raw or len(raw) > MAX_SPLIT_NOTES:
            raise ProtocolError("invalid_payload", "'note_ids' must be a non-empty list of note ids.")
        ids = tuple(id_field({"note_id": v}, "note_id") for v in raw)
        return cls(cafe_id=CafeCommand.parse(p).cafe_id, theme_id=id_field(p, "theme_id"), note_ids=ids,
                   label=text_field(p, "label", max_chars=THEME_LABEL_MAX, required=False))


@dataclass(frozen=True)
class NoteHide(CafeCommand):
    event: ClassVar[str] = "note_hide"
    note_id: int = 0
    hidden: bool = True

    @classmethod
    def parse(cls, payload: Any) -> NoteHide:
        p = _require_mapping(payload)
        hidden = bool_field(p, "hidden")
        return cls(cafe_id=CafeCommand.parse(p).cafe_id, note_id=id_field(p, "note_id"),
                   hidden=True if hidden is None else hidden)


@dataclass(frozen=True)
class VotingOpen(CafeCommand):
    event: ClassVar[str] = "voting_open"
    budget: int | None = None
    stacking: bool | None = None
    show_tally: bool | None = None

    @classmethod
    def parse(cls, payload: Any) -> VotingOpen:
        p = _require_mapping(payload)
        return cls(cafe_id=CafeCommand.parse(p).cafe_id,
                   budget=int_field(p, "budget", minimum=1, maximum=10, required=False),
                   stacking=bool_field(p, "stacking"), show_tally=bool_field(p, "show_tally"))


@dataclass(frozen=True)
class TallyShow(CafeCommand):
    event: ClassVar[str] = "tally_show"
    show: bool = True

    @classmethod
    def parse(cls, payload: Any) -> TallyShow:
        p = _require_mapping(payload)
        show = bool_field(p, "show", required=True)
        assert show is not None
        return cls(cafe_id=CafeCommand.parse(p).cafe_id, show=show)


@dataclass(frozen=True)
class VoteSet(Command):
    """A participant's whole allocation: ``{"votes": {"<theme_id>": dots, ...}}``."""

    event: ClassVar[str] = "vote_set"
    votes: tuple[tuple[int, int], ...] = ()

    @classmethod
    def parse(cls, payload: Any) -> VoteSet:
        p = _require_mapping(payload)
        return cls(votes=theme_counts(p, "votes", maximum=10))


MAX_PAPER_NOTES = 200


@dataclass(frozen=True)
class NotesEnter(CafeCommand):
    """The facilitator types in notes written on paper at a table (one text each)."""

    event: ClassVar[str] = "notes_enter"
    round: int = 1
    table: int = 1
    texts: tuple[str, ...] = ()
    lang: str | None = None

    @classmethod
    def parse(cls, payload: Any) -> NotesEnter:
        p = _require_mapping(payload)
        raw = _get(p, "texts", True)
        if not isinstance(raw, list) or not raw or len(raw) > MAX_PAPER_NOTES:
            raise ProtocolError("invalid_payload", "'texts' must be a list of 1 to %(num)s notes.", num=MAX_PAPER_NOTES)
        texts = []
        for item in raw:
            text = text_field({"text": item}, "text", max_chars=NOTE_MAX_CHARS, required=False)
            if text:
                texts.append(text)
        if not texts:
            raise ProtocolError("empty", "There is no note to enter.")
        round_no = int_field(p, "round", minimum=1, maximum=100)
        table = int_field(p, "table", minimum=1, maximum=10_000)
        assert round_no is not None and table is not None
        return cls(cafe_id=CafeCommand.parse(p).cafe_id, round=round_no, table=table, texts=tuple(texts),
                   lang=language_field(p, "lang"))


@dataclass(frozen=True)
class ScribeAllow(CafeCommand):
    event: ClassVar[str] = "scribe_allow"
    participant_id: int = 0
    allowed: bool = True

    @classmethod
    def parse(cls, payload: Any) -> ScribeAllow:
        p = _require_mapping(payload)
        allowed = bool_field(p, "allowed")
        return cls(cafe_id=CafeCommand.parse(p).cafe_id, participant_id=id_field(p, "participant_id"),
                   allowed=True if allowed is None else allowed)


@dataclass(frozen=True)
class VotesEnter(CafeCommand):
    """Dots counted on paper or by a show of hands: ``{"counts": {"<theme_id>": dots}}`` (replaces)."""

    event: ClassVar[str] = "votes_enter"
    counts: tuple[tuple[int, int], ...] = ()

    @classmethod
    def parse(cls, payload: Any) -> VotesEnter:
        p = _require_mapping(payload)
        return cls(cafe_id=CafeCommand.parse(p).cafe_id, counts=theme_counts(p, "counts", maximum=100_000))


@dataclass(frozen=True)
class ParticipantFixed(CafeCommand):
    """The facilitator marks someone who needs to stay at one table (or no longer does)."""

    event: ClassVar[str] = "participant_fixed"
    participant_id: int = 0
    fixed: bool = True

    @classmethod
    def parse(cls, payload: Any) -> ParticipantFixed:
        p = _require_mapping(payload)
        fixed = bool_field(p, "fixed")
        return cls(cafe_id=CafeCommand.parse(p).cafe_id, participant_id=id_field(p, "participant_id"),
                   fixed=True if fixed is None else fixed)
