"""Socket.IO handlers: parse the payload, check who is asking, call one service, answer.

Every command is acknowledged with ``{"ok": true, ...}`` or ``{"ok": false, "error": {code, message}}``;
no handler lets an exception reach the transport.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import wraps
from typing import Any, Callable

from flask import current_app, request

from ..domain import protocol as p
from ..extensions import db, socketio
from ..serving import collections_deferred
from ..services import accounts, harvest, notes, participants, rounds
from ..services.cafes import cafe_for_facilitator
from ..services.errors import ServiceError
from . import context as ctx
from .i18n import error_answer
from .transport import UNREADABLE


def cmd_language(payload: Any) -> str | None:
    """A joining phone's language, before it has an identity (its first errors already speak it)."""
    if isinstance(payload, dict) and isinstance(payload.get("language"), str) and \
            p.LANGUAGE_RE.match(payload["language"]) and payload["language"] in current_app.config["LANGUAGES"]:
        return payload["language"]
    return None

log = logging.getLogger(__name__)

NOTES_PER_MINUTE = 30
FAILED_JOINS_PER_MINUTE = 20


@dataclass(slots=True)
class Identity:
    facilitator_id: int | None = None
    participant_id: int | None = None
    cafe_id: int | None = None
    language: str | None = None         # a phone's chosen language: its error answers speak it


def _identities() -> dict[str, Identity]:
    return current_app.extensions.setdefault("cafe.identities", {})


def _identity() -> Identity:
    return _identities().setdefault(request.sid, Identity())  # type: ignore[attr-defined]


def _error(code: str, message: str, **params: Any) -> dict[str, Any]:
    ident = _identities().get(request.sid)  # type: ignore[attr-defined]
    return error_answer(p.ProtocolError(code, message, **params), ident.language if ident else None)


def command(event: str, model: type[p.Command] | None, role: str | None) -> Callable[[Callable[..., Any]], Any]:
    """Register a validated, authorized, always-answering handler for ``event``."""
    def decorate(fn: Callable[..., dict[str, Any] | None]) -> Callable[..., Any]:
        @wraps(fn)
        def handler(*args: Any) -> dict[str, Any]:
            try:
                payload = args[0] if args else None
                cmd = model.parse(payload) if model is not None else None
                ident = _identity()
                if role == "facilitator" and ident.facilitator_id is None:
                    raise ServiceError("unauthorized", "Only a signed-in facilitator can do that.", 401)
                if role == "participant" and ident.participant_id is None:
                    raise ServiceError("not_joined", "Join a café first.", 403)
                result = fn(cmd, ident) or {}
                return {"ok": True, **result}
            except p.ProtocolError as exc:
                db.session.rollback()
                ident = _identities().get(request.sid)  # type: ignore[attr-defined]
                language = (ident.language if ident else None) or (
                    cmd_language(args[0] if args else None))
                return error_answer(exc, language)
            except Exception:
                log.exception("handler %s failed", event)
                db.session.rollback()
                return _error("internal", "Something went wrong on the server. Please try again.")
            finally:
                db.session.remove()
        socketio.on_event(event, handler)
        return handler
    return decorate


@socketio.on("connect")
def on_connect(auth: Any = None) -> bool:
    ident = Identity()
    try:
        token = auth.get("token") if isinstance(auth, dict) else None
        if isinstance(token, str):
            fac = accounts.facilitator_for_token(token)
            if fac is None:
                return False          # a wrong token is refused outright
            ident.facilitator_id = fac.id
        else:
            ident.facilitator_id = ctx.session_facilitator_id()
    finally:
        db.session.remove()
    _identities()[request.sid] = ident  # type: ignore[attr-defined]
    return True


@socketio.on("disconnect")
def on_disconnect(*_args: Any) -> None:
    ident = _identities().pop(request.sid, None)  # type: ignore[attr-defined]
    if ident is None or ident.participant_id is None:
        return
    try:
        participants.disconnect(ctx.committer(), ident.participant_id, request.sid, ctx.now())  # type: ignore[attr-defined]
    except Exception:
        log.exception("disconnect bookkeeping failed")
        db.session.rollback()
    finally:
        db.session.remove()


@socketio.on(UNREADABLE)
def on_unreadable(*_args: Any) -> dict[str, Any]:
    return _error("invalid_payload", "The message could not be read.")


@socketio.on("*")
def on_unknown(event: str, *_args: Any) -> dict[str, Any]:
    return _error("unknown_event", "There is no '%(event)s' command.", event=str(event)[:40])


# -- phones -------------------------------------------------------------------------------------------
@command("participant_join", p.ParticipantJoin, role=None)
def participant_join(cmd: p.ParticipantJoin, ident: Identity) -> dict[str, Any]:
    address = ctx.client_address()
    failures = ctx.limiter("failed_joins", FAILED_JOINS_PER_MINUTE, 60.0)
    now = ctx.now()
    if not failures.allowed(address, now) and cmd.rejoin_token is None:
        # Guessing codes is what this stops; a phone coming back with its (unguessable) token still gets in.
        raise ServiceError("rate_limited", "Too many wrong codes from this network; wait a minute and try again.", 429)
    try:
        with ctx.join_slot():
            result = participants.join(cmd, request.sid, now, ctx.publisher())  # type: ignore[attr-defined]
    except ServiceError as exc:
        if exc.code in ("unknown_code", "bad_token"):
            failures.hit(address, now)
        raise
    ident.participant_id = result.participant.id
    ident.cafe_id = result.participant.cafe_id
    ident.language = result.participant.language
    return result.answer()


@command("participant_leave", p.ParticipantLeave, role="participant")
def participant_leave(_cmd: p.ParticipantLeave, ident: Identity) -> dict[str, Any]:
    assert ident.participant_id is not None
    participants.leave(ident.participant_id, ctx.now(), ctx.publisher())
    return {}


@command("note_add", p.NoteAdd, role="participant")
def note_add(cmd: p.NoteAdd, ident: Identity) -> dict[str, Any]:
    assert ident.participant_id is not None
    if not ctx.limiter("notes", NOTES_PER_MINUTE, 60.0).hit(ident.participant_id, ctx.now()):
        raise ServiceError("rate_limited", "That is a lot of notes at once; wait a moment and try again.", 429)
    return notes.add(ctx.committer(), ident.participant_id, cmd, ctx.now())


@command("note_edit", p.NoteEdit, role="participant")
def note_edit(cmd: p.NoteEdit, ident: Identity) -> dict[str, Any]:
    assert ident.participant_id is not None
    return notes.edit(ctx.committer(), ident.participant_id, cmd, ctx.now())


@command("note_delete", p.NoteDelete, role="participant")
def note_delete(cmd: p.NoteDelete, ident: Identity) -> dict[str, Any]:
    assert ident.participant_id is not None
    return notes.delete(ctx.committer(), ident.participant_id, cmd, ctx.now())


# -- facilitators --------------------------------------------------------------------------------------
@command("facilitator_join", p.FacilitatorJoin, role="facilitator")
def facilitator_join(cmd: p.FacilitatorJoin, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    cafe = cafe_for_facilitator(cmd.cafe_id, ident.facilitator_id)
    return participants.facilitator_join(cafe, request.sid, cmd.since_version, ctx.now(),  # type: ignore[attr-defined]
                                         ctx.publisher())


@command("round_start", p.CafeCommand, role="facilitator")
def round_start(cmd: p.CafeCommand, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    with collections_deferred(socketio.start_background_task):
        return rounds.start_round(ident.facilitator_id, cmd.cafe_id, ctx.now(), ctx.publisher(),
                                  grace=ctx.grace(), time_limit=current_app.config["SEATING_TIME_LIMIT"],
                                  run=ctx.cpu_runner(), spawn=ctx.spawner())


@command("round_pause", p.CafeCommand, role="facilitator")
def round_pause(cmd: p.CafeCommand, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return rounds.pause(ident.facilitator_id, cmd.cafe_id, ctx.now(), ctx.publisher())


@command("round_resume", p.CafeCommand, role="facilitator")
def round_resume(cmd: p.CafeCommand, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return rounds.resume(ident.facilitator_id, cmd.cafe_id, ctx.now(), ctx.publisher())


@command("round_extend", p.RoundExtend, role="facilitator")
def round_extend(cmd: p.RoundExtend, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return rounds.extend(ident.facilitator_id, cmd.cafe_id, cmd.seconds, ctx.now(), ctx.publisher())


@command("round_end", p.CafeCommand, role="facilitator")
def round_end(cmd: p.CafeCommand, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    answer = rounds.end_round(ident.facilitator_id, cmd.cafe_id, ctx.now(), ctx.publisher())
    if answer["state"]["round"] >= answer["state"]["rounds"]:
        # The harvest comes next: its notes are embedded now, while the room gathers.
        ctx.in_background(harvest.prepare_themes, cmd.cafe_id, run=ctx.cpu_runner(), pipeline=_theme_model())
    else:
        # The next round is planned now, while people move: starting it then only seats them.
        ctx.in_background(rounds.prepare_next_round, ident.facilitator_id, cmd.cafe_id, ctx.now(), ctx.grace(),
                          current_app.config["SEATING_TIME_LIMIT"], run=ctx.cpu_runner())
    return answer


@command("cafe_end", p.CafeCommand, role="facilitator")
def cafe_end(cmd: p.CafeCommand, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return rounds.end_cafe(ident.facilitator_id, cmd.cafe_id, ctx.now(), ctx.publisher())


@command("joins_close", p.CafeCommand, role="facilitator")
def joins_close(cmd: p.CafeCommand, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return rounds.set_joins_open(ident.facilitator_id, cmd.cafe_id, False, ctx.now(), ctx.publisher())


@command("joins_open", p.CafeCommand, role="facilitator")
def joins_open(cmd: p.CafeCommand, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return rounds.set_joins_open(ident.facilitator_id, cmd.cafe_id, True, ctx.now(), ctx.publisher())


@command("seating_preview", p.CafeCommand, role="facilitator")
def seating_preview(cmd: p.CafeCommand, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return rounds.seating_preview(ident.facilitator_id, cmd.cafe_id, ctx.now(), ctx.grace(),
                                  current_app.config["SEATING_TIME_LIMIT"], run=ctx.cpu_runner())


@command("participant_remove", p.ParticipantRemove, role="facilitator")
def participant_remove(cmd: p.ParticipantRemove, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return participants.remove(ident.facilitator_id, cmd.cafe_id, cmd.participant_id, ctx.now(), ctx.publisher())


# -- the harvest -------------------------------------------------------------------------------------
def _theme_model() -> str | None:
    return current_app.config.get("THEME_MODEL")


@command("harvest_start", p.CafeCommand, role="facilitator")
def harvest_start(cmd: p.CafeCommand, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return harvest.start_harvest(ident.facilitator_id, cmd.cafe_id, ctx.now(), ctx.publisher(),
                                 run=ctx.cpu_runner(), pipeline=_theme_model())


@command("themes_propose", p.ThemesPropose, role="facilitator")
def themes_propose(cmd: p.ThemesPropose, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return harvest.repropose(ident.facilitator_id, cmd.cafe_id, cmd.confirm, ctx.now(), ctx.publisher(),
                             run=ctx.cpu_runner(), pipeline=_theme_model())


@command("theme_rename", p.ThemeRename, role="facilitator")
def theme_rename(cmd: p.ThemeRename, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return harvest.rename_theme(ident.facilitator_id, cmd.cafe_id, cmd.theme_id, cmd.label, ctx.now(),
                                ctx.publisher())


@command("theme_add", p.ThemeAdd, role="facilitator")
def theme_add(cmd: p.ThemeAdd, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return harvest.add_theme(ident.facilitator_id, cmd.cafe_id, cmd.label, ctx.now(), ctx.publisher())


@command("theme_merge", p.ThemeMerge, role="facilitator")
def theme_merge(cmd: p.ThemeMerge, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return harvest.merge_themes(ident.facilitator_id, cmd.cafe_id, cmd.theme_id, cmd.into_id, ctx.now(),
                                ctx.publisher())


@command("note_move", p.NoteMove, role="facilitator")
def note_move(cmd: p.NoteMove, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return harvest.move_note(ident.facilitator_id, cmd.cafe_id, cmd.note_id, cmd.theme_id, ctx.now(),
                             ctx.publisher())


@command("theme_split", p.ThemeSplit, role="facilitator")
def theme_split(cmd: p.ThemeSplit, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return harvest.split_theme(ident.facilitator_id, cmd.cafe_id, cmd.theme_id, list(cmd.note_ids), cmd.label,
                               ctx.now(), ctx.publisher())


@command("note_hide", p.NoteHide, role="facilitator")
def note_hide(cmd: p.NoteHide, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return harvest.hide_note(ident.facilitator_id, cmd.cafe_id, cmd.note_id, cmd.hidden, ctx.now(), ctx.publisher())


@command("voting_open", p.VotingOpen, role="facilitator")
def voting_open(cmd: p.VotingOpen, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return harvest.open_voting(ident.facilitator_id, cmd.cafe_id, budget=cmd.budget, stacking=cmd.stacking,
                               show_tally=cmd.show_tally, now=ctx.now(), publisher=ctx.publisher())


@command("tally_show", p.TallyShow, role="facilitator")
def tally_show(cmd: p.TallyShow, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return harvest.set_tally_visible(ident.facilitator_id, cmd.cafe_id, cmd.show, ctx.now(), ctx.publisher())


@command("voting_close", p.CafeCommand, role="facilitator")
def voting_close(cmd: p.CafeCommand, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return harvest.close_voting(ident.facilitator_id, cmd.cafe_id, ctx.now(), ctx.publisher())


@command("vote_set", p.VoteSet, role="participant")
def vote_set(cmd: p.VoteSet, ident: Identity) -> dict[str, Any]:
    assert ident.participant_id is not None
    op = harvest.vote_operation(ident.participant_id, dict(cmd.votes), ctx.now())
    return ctx.committer().submit(op)


@command("participant_fixed", p.ParticipantFixed, role="facilitator")
def participant_fixed(cmd: p.ParticipantFixed, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return participants.set_fixed(ident.facilitator_id, cmd.cafe_id, cmd.participant_id, cmd.fixed, ctx.now(),
                                  ctx.publisher())


@command("notes_enter", p.NotesEnter, role="facilitator")
def notes_enter(cmd: p.NotesEnter, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return notes.enter_from_paper(ident.facilitator_id, cmd, ctx.now(), ctx.publisher())


@command("scribe_allow", p.ScribeAllow, role="facilitator")
def scribe_allow(cmd: p.ScribeAllow, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return participants.allow_scribe(ident.facilitator_id, cmd.cafe_id, cmd.participant_id, cmd.allowed, ctx.now(),
                                     ctx.publisher())


@command("votes_enter", p.VotesEnter, role="facilitator")
def votes_enter(cmd: p.VotesEnter, ident: Identity) -> dict[str, Any]:
    assert ident.facilitator_id is not None
    return harvest.enter_paper_votes(ident.facilitator_id, cmd.cafe_id, dict(cmd.counts), ctx.now(), ctx.publisher())


def register(app: Any) -> None:
    """Handlers are bound to the shared SocketIO object at import; each app keeps its own identities."""
    app.extensions["cafe.identities"] = {}
