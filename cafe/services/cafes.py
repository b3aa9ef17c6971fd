"""Planning a café, reading its state, snapshots for each role, and the notes export."""
from __future__ import annotations

import csv
import functools
import io
import threading
import time
from datetime import datetime, timezone
from typing import Any, Iterable

from sqlalchemy import Float, Select, Update, bindparam, func, select, true, union_all, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from ..domain.clock import RoundClock
from ..domain.codes import format_join_code, new_join_code
from ..domain.protocol import LANGUAGE_RE
from ..extensions import db
from ..models import Cafe, Note, Participant, Seat
from .errors import ServiceError, forbidden, not_found

PHASES = ("lobby", "round", "break", "harvest", "voting", "results", "ended")
MAX_QUESTION = 500
MAX_TITLE = 200


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


# -- planning -------------------------------------------------------------------------------------
def _validated_settings(data: dict[str, Any]) -> dict[str, Any]:
    """Check a café's settings from a form or the API; raise ServiceError naming the field."""
    def whole(key: str, default: int, lo: int, hi: int) -> int:
        value = data.get(key, default)
        if value in (None, ""):
            return default
        if isinstance(value, bool):
            raise ServiceError("invalid", "'%(key)s' must be a whole number.", key=key)
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ServiceError("invalid", "'%(key)s' must be a whole number.", key=key) from None
        if isinstance(value, float) and value != number:
            raise ServiceError("invalid", "'%(key)s' must be a whole number.", key=key)
        if not lo <= number <= hi:
            raise ServiceError("invalid", "'%(key)s' must be between %(lo)s and %(hi)s.", key=key, lo=lo, hi=hi)
        return number

    title = data.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ServiceError("invalid", "The café needs a title.")
    if len(title.strip()) > MAX_TITLE:
        raise ServiceError("invalid", "The title is longer than %(num)s characters.", num=MAX_TITLE)
    questions = data.get("questions") or []
    if isinstance(questions, str):
        questions = [q for q in questions.splitlines()]
    if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
        raise ServiceError("invalid", "'questions' must be a list of texts.")
    questions = [q.strip() for q in questions if q.strip()]
    if any(len(q) > MAX_QUESTION for q in questions):
        raise ServiceError("invalid", "A question is longer than %(num)s characters.", num=MAX_QUESTION)
    translations = data.get("question_translations") or {}
    if not isinstance(translations, dict):
        raise ServiceError("invalid", "'question_translations' must map language codes to lists of questions.")
    cleaned_translations: dict[str, list[str]] = {}
    for lang, items in translations.items():
        if not isinstance(lang, str) or not LANGUAGE_RE.match(lang):
            raise ServiceError("invalid", "'question_translations' must map language codes to lists of questions.")
        if isinstance(items, str):
            items = items.splitlines()
        if not isinstance(items, list) or not all(isinstance(q, str) for q in items):
            raise ServiceError("invalid", "The questions in '%(lang)s' must be a list of texts.", lang=lang)
        items = [q.strip() for q in items if q.strip()]
        if any(len(q) > MAX_QUESTION for q in items):
            raise ServiceError("invalid", "A question is longer than %(num)s characters.", num=MAX_QUESTION)
        if items:
            cleaned_translations[lang] = items
    rounds = whole("rounds", 3, 1, 12)
    if len(questions) > rounds:
        raise ServiceError("invalid", "There are more questions than rounds.")
    round_minutes = whole("round_minutes", 20, 1, 180)
    seats = whole("seats_per_table", 5, 2, 12)
    fixed_tables = data.get("tables")
    fixed = None if fixed_tables in (None, "", 0, "0") else whole("tables", 0, 1, 500)
    hosts = data.get("hosts", True)
    if isinstance(hosts, str):
        word = hosts.strip().lower()
        if word not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
            raise ServiceError("invalid", "'hosts' must be true or false.")
        hosts = word in ("1", "true", "yes", "on")
    if not isinstance(hosts, bool):
        raise ServiceError("invalid", "'hosts' must be true or false.")
    return {"title": title.strip(), "questions": questions, "question_translations": cleaned_translations or None,
            "rounds": rounds,
            "round_seconds": round_minutes * 60, "seats_per_table": seats, "fixed_tables": fixed, "hosts": hosts}


def create_cafe(facilitator_id: int, data: dict[str, Any]) -> Cafe:
    settings = _validated_settings(data)
    for _ in range(20):
        code = new_join_code()
        if not db.session.scalar(select(Cafe.id).where(Cafe.join_code == code)):
            break
    cafe = Cafe(facilitator_id=facilitator_id, join_code=code, created_at=_utcnow(), phase="lobby",
                current_round=0, version=1, participant_seq=0, joins_open=True, table_count=0,
                round_duration=0.0, paused_total=0.0, **settings)
    db.session.add(cafe)
    db.session.commit()
    return cafe


def cafe_for_facilitator(cafe_id: int, facilitator_id: int, session: Session | None = None,
                         lock: bool = False) -> Cafe:
    """The café, if this facilitator runs it; otherwise not found (no hint that it exists)."""
    session = session or db.session
    query = select(Cafe).where(Cafe.id == cafe_id)
    if lock:
        query = query.with_for_update()
    cafe = session.scalar(query)
    if cafe is None:
        raise not_found()
    if cafe.facilitator_id != facilitator_id:
        raise forbidden("This café is run by another facilitator.")
    return cafe


def cafes_of(facilitator_id: int) -> list[Cafe]:
    return list(db.session.scalars(select(Cafe).where(Cafe.facilitator_id == facilitator_id)
                                   .order_by(Cafe.id.desc())))


@functools.cache
def _bump_statement() -> Update:
    table = Cafe.__table__
    return (update(table).where(table.c.id == bindparam("cafe_id"))
            .values(version=table.c.version + bindparam("by")).returning(table.c.version))


def bump_version(session: Session, cafe_id: int, by: int = 1) -> int:
    """Atomically add to the café's version and return the new value (safe across workers).

    A plain SQL update, built once (on the note path the ORM's bulk-update machinery, and then building the
    statement anew, cost more than running it); a café already loaded in the session gets the new value,
    as the ORM's update would have given it."""
    version = session.execute(_bump_statement(), {"cafe_id": cafe_id, "by": by}).scalar_one()
    loaded = session.identity_map.get(identity_key(Cafe, cafe_id))
    if loaded is not None:
        set_committed_value(loaded, "version", version)
    return version


# -- state ----------------------------------------------------------------------------------------
def question_for(cafe: Cafe, round_no: int) -> str:
    if not cafe.questions:
        return ""
    index = max(1, round_no) - 1
    return cafe.questions[min(index, len(cafe.questions) - 1)]


def questions_i18n(cafe: Cafe, round_no: int) -> dict[str, str]:
    """The question of a round in every language it was given in."""
    out = {}
    for lang, items in (cafe.question_translations or {}).items():
        if items:
            out[lang] = items[min(max(1, round_no) - 1, len(items) - 1)]
    return out


def clock_of(cafe: Cafe) -> RoundClock | None:
    if cafe.round_started_at is None:
        return None
    return RoundClock(cafe.round_started_at, cafe.round_duration, cafe.paused_at, cafe.paused_total)


_stamps = {"last": 0.0}
_stamp_lock = threading.Lock()


def _local_stamp() -> float:
    """Now, in seconds since the epoch, and never less than the last stamp this process gave (SQLite: one
    process serves the café)."""
    with _stamp_lock:
        stamp = _stamps["last"] = max(time.time(), _stamps["last"] + 1e-6)
    return stamp


@functools.cache
def _counts_statement(dialect: str) -> Select:
    """Counts, and when they were read: on PostgreSQL the server's clock when the statement began (one
    clock for every worker; the statement's snapshot is taken after it), elsewhere a stamp bound in."""
    person = Participant.__table__
    present = (person.c.cafe_id == bindparam("cafe_id")) & person.c.removed.is_(False) & person.c.left_at.is_(None)
    stamp = (func.extract("epoch", func.statement_timestamp()) if dialect == "postgresql"
             else bindparam("at", type_=Float))
    return select(func.count(person.c.id).label("count"),
                  func.count(person.c.id).filter(person.c.connected.is_(True)).label("connected"),
                  stamp.label("counted_at")).where(present)


def _counts_params(session: Session, cafe_id: int) -> tuple[str, dict[str, Any]]:
    dialect = session.get_bind().dialect.name
    return dialect, {"cafe_id": cafe_id} if dialect == "postgresql" else {"cafe_id": cafe_id, "at": _local_stamp()}


def _counts(count: int | None, connected: int | None, counted_at: Any) -> dict[str, Any]:
    return {"count": count or 0, "connected": connected or 0, "counted_at": float(counted_at)}


def participant_counts(session: Session, cafe_id: int) -> dict[str, Any]:
    """Who has joined (and not left), and how many of them are connected: one query, built once (it runs on
    every join and leave, and building it cost about as much as running it).

    ``counted_at`` says when the counts were read (seconds since the epoch: see :func:`_counts_statement`).
    Changes committed side by side (on several workers) reach a dashboard in any order, and each counts
    only what had committed when it read: a dashboard keeps the latest read. That is right once every
    change to presence reads its counts *after* its commit (see :func:`presence_after_commit`): the latest
    read then began after every such commit."""
    dialect, params = _counts_params(session, cafe_id)
    return _counts(*session.execute(_counts_statement(dialect), params).one())


@functools.cache
def _presence_statement(dialect: str, with_cafe: bool, many: bool = False) -> Select:
    counts = _counts_statement(dialect).subquery()
    person = Participant.__table__
    joined = person.join(counts, true())
    if with_cafe:
        joined = joined.join(Cafe, Cafe.id == person.c.cafe_id)
    who = (person.c.id.in_(bindparam("participant_ids", expanding=True)) if many
           else person.c.id == bindparam("participant_id"))
    return (select(*([Cafe] if with_cafe else []), person.c.id, person.c.cafe_id, person.c.number, person.c.name,
                   person.c.language, person.c.connected, person.c.fixed, person.c.can_scribe, person.c.left_at,
                   person.c.removed, counts.c["count"], counts.c.connected.label("connected_count"),
                   counts.c.counted_at)
            .select_from(joined).where(who))


def _presence_row(session: Session, cafe_id: int, participant_id: int, with_cafe: bool) -> Any:
    dialect, params = _counts_params(session, cafe_id)
    return session.execute(_presence_statement(dialect, with_cafe), params | {"participant_id": participant_id}).one()


def _presence(row: Any) -> tuple[dict[str, Any], Participant]:
    person = Participant(id=row.id, cafe_id=row.cafe_id, number=row.number, name=row.name, language=row.language,
                         connected=row.connected, fixed=row.fixed, can_scribe=row.can_scribe, left_at=row.left_at,
                         removed=row.removed)
    return _counts(row.count, row.connected_count, row.counted_at), person


def presence_after_commit(session: Session, cafe_id: int, participant_id: int) -> tuple[dict[str, Any], Participant]:
    """The room's counts and one participant as they are now, in one statement: what a change to that
    participant's presence publishes, read after its commit (see :func:`participant_counts`). The
    participant comes back as a detached object (not in the session: nothing loads it again)."""
    return _presence(_presence_row(session, cafe_id, participant_id, with_cafe=False))


def presence_of_many(session: Session, cafe_id: int,
                     participant_ids: Iterable[int]) -> list[tuple[dict[str, Any], Participant]]:
    """:func:`presence_after_commit` for several participants of one café, in one statement (the counts read
    once): the counts with each of them, in id order."""
    dialect, params = _counts_params(session, cafe_id)
    rows = session.execute(_presence_statement(dialect, False, many=True),
                           params | {"participant_ids": sorted(participant_ids)})
    return sorted((_presence(row) for row in rows), key=lambda pair: pair[1].id)


def presence_and_cafe(session: Session, cafe_id: int,
                      participant_id: int) -> tuple[dict[str, Any], Participant, Cafe]:
    """:func:`presence_after_commit`, and the café itself (loaded into the session), in the same statement:
    what a join's answer starts from, one round trip instead of two."""
    row = _presence_row(session, cafe_id, participant_id, with_cafe=True)
    return (*_presence(row), row.Cafe)


def cafe_state(cafe: Cafe, now: float, session: Session | None = None,
               counts: dict[str, int] | None = None) -> dict[str, Any]:
    """The ``cafe_state`` payload: what every screen needs to draw the café's phase and clock."""
    session = session or db.session
    clock = clock_of(cafe) if cafe.phase == "round" else None
    upcoming = cafe.current_round + (1 if cafe.phase == "lobby" else 0)
    return {
        "cafe_id": cafe.id,
        "title": cafe.title,
        "phase": cafe.phase,
        "round": cafe.current_round,
        "rounds": cafe.rounds,
        "question": question_for(cafe, upcoming or 1),
        "question_i18n": questions_i18n(cafe, upcoming or 1),
        "next_question": question_for(cafe, cafe.current_round + 1) if cafe.current_round < cafe.rounds else None,
        "ends_at": clock.ends_at(now) if clock else None,
        "remaining": clock.remaining(now) if clock else None,
        "duration": cafe.round_duration if clock else cafe.round_seconds,
        "paused": bool(clock and clock.paused),
        "time_up": bool(clock and clock.time_up(now)),
        "server_time": now,
        "version": cafe.version,
        "participants": counts if counts is not None else participant_counts(session, cafe.id),
        "tables": cafe.table_count,
        "joins_open": cafe.joins_open,
        "vote_budget": cafe.vote_budget,
        "vote_stacking": cafe.vote_stacking,
        "show_tally": cafe.show_tally,
        "join_code": cafe.join_code,
        "join_code_display": format_join_code(cafe.join_code),
    }


def note_payload(note: Note, mine: bool | None = None) -> dict[str, Any]:
    data = {"id": note.id, "client_id": note.client_id, "round": note.round, "table": note.table,
            "text": note.text, "lang": note.lang, "created_at": note.created_at, "updated_at": note.updated_at,
            "version": note.version, "scribed": note.scribed}
    if mine is not None:
        data["mine"] = mine
    return data


def seating_payload(session: Session, cafe: Cafe) -> dict[str, Any]:
    """The table map of the current round, for facilitators: names (or "Guest N") per table."""
    rows = session.execute(select(Seat.table, Seat.is_host, Participant.id, Participant.name, Participant.number,
                                  Participant.connected)
                           .join(Participant, Seat.participant_id == Participant.id)
                           .where(Seat.cafe_id == cafe.id, Seat.round == cafe.current_round)
                           .order_by(Seat.table, Seat.is_host.desc(), Participant.number)).all()
    return seating_map(cafe, rows)       # columns only: no ORM objects per seat


def seating_map(cafe: Cafe, rows: Iterable[tuple[int, bool, int, str | None, int, bool]]) -> dict[str, Any]:
    """The ``seating`` payload from ``(table, is_host, participant id, name, number, connected)`` rows in
    table order, hosts first, then by number."""
    tables: dict[int, list[dict[str, Any]]] = {t: [] for t in range(1, cafe.table_count + 1)}
    for table, is_host, pid, name, number, connected in rows:
        tables.setdefault(table, []).append({"id": pid, "name": name or f"Guest {number}", "is_host": is_host,
                                             "connected": connected})
    return {"round": cafe.current_round,
            "tables": [{"table": t, "members": members} for t, members in sorted(tables.items())]}


def person_payload(person: Participant) -> dict[str, Any]:
    """A participant as the facilitator's pages list them."""
    return {"id": person.id, "name": person.display_name, "connected": person.connected, "fixed": person.fixed,
            "can_scribe": person.can_scribe, "left": person.left_at is not None or person.removed}


def facilitator_snapshot(cafe: Cafe, now: float, session: Session | None = None) -> dict[str, Any]:
    session = session or db.session
    # The counts are read before the people: a page then knows that a participant's change read before
    # ``counted_at`` is older than what the list shows (see static/js/live.js).
    counts = participant_counts(session, cafe.id)
    people = session.scalars(select(Participant).where(Participant.cafe_id == cafe.id)
                             .order_by(Participant.number)).all()
    notes = session.scalars(select(Note).where(Note.cafe_id == cafe.id, Note.deleted_at.is_(None))
                            .order_by(Note.id)).all()
    return {
        "state": cafe_state(cafe, now, session, counts),
        "participants": [person_payload(p) for p in people],
        "seating": seating_payload(session, cafe),
        "notes": [note_payload(n) | {"hidden": n.hidden} for n in notes],
    }


def current_seat(session: Session, cafe: Cafe, participant_id: int) -> Seat | None:
    if cafe.current_round == 0:
        return None
    return session.scalar(select(Seat).where(Seat.cafe_id == cafe.id, Seat.round == cafe.current_round,
                                             Seat.participant_id == participant_id))


@functools.cache
def _seat_and_hosting_statement() -> Select:
    # A participant is in one café: their seats are found through the index on participant_id.
    return select(Seat).where(Seat.participant_id == bindparam("participant_id"),
                              (Seat.round == bindparam("round")) | Seat.is_host.is_(True))


def seat_and_hosting(session: Session, cafe: Cafe, participant_id: int) -> tuple[Seat | None, bool]:
    """:func:`current_seat`, and whether the participant hosts a table (hosts stay at one table every round), in
    one query: their seat this round and their seats as host, a handful of rows at most (one seat a round).
    Before the first round no one has a seat (a round's seats are written when it starts)."""
    if cafe.current_round == 0:
        return None, False
    seats = session.scalars(_seat_and_hosting_statement(),
                            {"participant_id": participant_id, "round": cafe.current_round}).all()
    seat = next((s for s in seats if s.round == cafe.current_round), None)
    return seat, any(s.is_host for s in seats)


def visible_notes(session: Session, cafe: Cafe, participant: Participant, seat: Seat | None) -> list[Note]:
    """What a participant may read: their own notes, their current table's notes this round, and,
    for a table host, everything written at their table in earlier rounds (``seat``: their seat this
    round, as :func:`current_seat` gives it)."""
    # The rows of three parts that share none, each found through an index of its own (the participant's
    # notes through the unique index on participant_id and client_id; a table's through cafe_id, round,
    # table), and nothing joined. As one OR, SQLite read every note of the café for each phone (12,000 per
    # rejoin after 30 s of notes from 2,000 phones); as ``id IN (the parts)``, PostgreSQL, whose statistics
    # still saw the young café's table as empty, ran the parts once for every note of the café (a nested
    # loop semi-join: 311 ms per phone at 12,000 notes, and a reconnect storm of 2,000 phones on 2 workers
    # told 1,640 of them to try again later).
    # Their own notes need no café (a participant is in one), and naming it made SQLite choose the index
    # on cafe_id alone.
    params: dict[str, Any] = {"participant_id": participant.id}
    if seat is not None:
        params |= {"cafe_id": cafe.id, "table": seat.table, "round": cafe.current_round}
    return list(session.scalars(_visible_notes_statement(seat is not None, bool(seat and seat.is_host)), params))


@functools.cache
def _visible_notes_statement(seated: bool, hosting: bool) -> Any:
    """The statement of :func:`visible_notes` for each shape, built once: building it took 0.2 ms a call
    (2,000 calls in one process), on a path every phone coming back takes."""
    shown = Note.deleted_at.is_(None) & Note.hidden.is_(False)
    parts = [select(Note).where(shown, Note.participant_id == bindparam("participant_id"))]
    if seated:
        others = (shown & (Note.cafe_id == bindparam("cafe_id")) & (Note.table == bindparam("table"))
                  & Note.participant_id.is_distinct_from(bindparam("participant_id")))
        parts.append(select(Note).where(others, Note.round == bindparam("round")))
        if hosting:
            parts.append(select(Note).where(others, Note.round < bindparam("round")))
    if len(parts) == 1:
        return parts[0].order_by(Note.id)
    rows = union_all(*parts)
    return select(Note).from_statement(rows.order_by(rows.selected_columns.id))


def seat_payload(cafe: Cafe, seat: Seat | None) -> dict[str, Any] | None:
    if seat is None:
        return None
    return {"round": seat.round, "table": seat.table, "is_host": seat.is_host, "tables": cafe.table_count}


def can_scribe(session: Session, cafe: Cafe, participant: Participant) -> bool:
    """Table hosts, and anyone the facilitator allowed, may write notes for others at their table."""
    if participant.can_scribe:
        return True
    return seat_and_hosting(session, cafe, participant.id)[1]


def participant_snapshot(cafe: Cafe, participant: Participant, now: float,
                         session: Session | None = None, counts: dict[str, int] | None = None,
                         newcomer: bool = False) -> dict[str, Any]:
    """What a phone needs to draw the café. ``newcomer``: the participant was made just now, so until a
    round seats them they host no table, may not write for others and have no notes to read (a query fewer
    for each of a crowd joining)."""
    session = session or db.session
    seat, hosting = seat_and_hosting(session, cafe, participant.id)
    unseated_newcomer = newcomer and seat is None
    return {
        "state": cafe_state(cafe, now, session, counts),
        "seat": seat_payload(cafe, seat),
        "can_scribe": not unseated_newcomer and (participant.can_scribe or hosting),
        "notes": [] if unseated_newcomer else [note_payload(n, mine=n.participant_id == participant.id)
                                               for n in visible_notes(session, cafe, participant, seat)],
    }


# -- export ---------------------------------------------------------------------------------------
def _cell(value: Any) -> Any:
    """Keep spreadsheet programs from running a note as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def notes_csv(cafe: Cafe, include_names: bool = False) -> str:
    rows = db.session.execute(select(Note, Participant).outerjoin(Participant, Note.participant_id == Participant.id)
                              .where(Note.cafe_id == cafe.id, Note.deleted_at.is_(None), Note.hidden.is_(False))
                              .order_by(Note.round, Note.table, Note.id)).all()
    out = io.StringIO()
    writer = csv.writer(out)
    header = ["round", "table", "question", "text", "time", "language", "scribed"]
    if include_names:
        header.append("name")
    writer.writerow(header)
    for note, person in rows:
        when = datetime.fromtimestamp(note.created_at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        row = [note.round, note.table, _cell(question_for(cafe, note.round)), _cell(note.text), when, note.lang or "",
               "yes" if note.scribed else ""]
        if include_names:
            row.append(_cell(person.display_name if person else ""))
        writer.writerow(row)
    return out.getvalue()


def delete_cafe(cafe_id: int, facilitator_id: int) -> None:
    """Delete a café and everything in it (participants, seats, notes, themes, votes): nothing is kept."""
    from sqlalchemy import delete as sql_delete

    from ..models import PaperVote, Theme, Vote
    cafe = cafe_for_facilitator(cafe_id, facilitator_id, lock=True)
    for model in (Vote, PaperVote, Note, Theme, Seat, Participant):
        db.session.execute(sql_delete(model).where(model.cafe_id == cafe.id))
    db.session.delete(cafe)
    db.session.commit()
