"""The harvest: notes become themes, people shape them, the room votes, priorities come out ranked."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..domain import clustering
from ..domain.protocol import N_
from ..domain.tally import Priority, ThemeScore, VoteError, check_allocation, rank, totals
from ..extensions import db
from ..models import Cafe, Note, PaperVote, Participant, Theme, Vote
from .cafes import bump_version, cafe_for_facilitator, cafe_state
from .errors import ServiceError
from .events import Outbox, Publisher, cafe_room, facilitators_room, table_room

HARVEST_PHASES = ("harvest", "voting", "results")
LABEL_MAX = 120
CpuRunner = Callable[..., Any]


def _inline(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


# -- reading --------------------------------------------------------------------------------------
def _notes(session: Session, cafe_id: int, include_hidden: bool) -> list[Note]:
    query = select(Note).where(Note.cafe_id == cafe_id, Note.deleted_at.is_(None))
    if not include_hidden:
        query = query.where(Note.hidden.is_(False))
    return list(session.scalars(query.order_by(Note.id)))


def _themes(session: Session, cafe_id: int) -> list[Theme]:
    return list(session.scalars(select(Theme).where(Theme.cafe_id == cafe_id).order_by(Theme.position, Theme.id)))


def _note_brief(note: Note) -> dict[str, Any]:
    return {"id": note.id, "text": note.text, "round": note.round, "table": note.table, "lang": note.lang,
            "hidden": note.hidden}


def themes_payload(session: Session, cafe: Cafe, *, full: bool) -> list[dict[str, Any]]:
    """Themes with their counts; ``full`` adds every note (with hidden ones) for facilitators."""
    notes = _notes(session, cafe.id, include_hidden=full)
    by_theme: dict[int | None, list[Note]] = defaultdict(list)
    for note in notes:
        by_theme[note.theme_id].append(note)
    out = []
    for theme in _themes(session, cafe.id):
        members = by_theme.get(theme.id, [])
        visible = [n for n in members if not n.hidden]
        representative = next((n for n in visible if n.id == theme.representative_note_id), visible[0] if visible else None)
        item: dict[str, Any] = {
            "id": theme.id, "label": theme.label, "keywords": theme.keywords, "by_hand": theme.by_hand,
            "representative": _note_brief(representative) if representative else None,
            "note_count": len(visible), "tables": len({n.table for n in visible}),
            "rounds": len({n.round for n in visible}),
        }
        if full:
            item["notes"] = [_note_brief(n) for n in members]
        out.append(item)
    if full:
        loose = by_theme.get(None, [])
        if loose:
            out.append({"id": None, "label": "", "keywords": [], "by_hand": False, "representative": None,
                        "note_count": len([n for n in loose if not n.hidden]), "tables": len({n.table for n in loose}),
                        "rounds": len({n.round for n in loose}), "notes": [_note_brief(n) for n in loose]})
    return out


def _allocations(session: Session, cafe_id: int) -> dict[int, dict[int, int]]:
    out: dict[int, dict[int, int]] = defaultdict(dict)
    for vote in session.scalars(select(Vote).where(Vote.cafe_id == cafe_id)):
        out[vote.participant_id][vote.theme_id] = vote.dots
    return out


def _paper(session: Session, cafe_id: int) -> dict[int, int]:
    return {p.theme_id: p.dots for p in session.scalars(select(PaperVote).where(PaperVote.cafe_id == cafe_id))}


def _sums(session: Session, cafe_id: int) -> dict[int, tuple[int, int]]:
    """Theme id -> (dots, phone voters), phone dots and paper dots together."""
    sums = dict(totals(list(_allocations(session, cafe_id).values())))
    for theme_id, dots in _paper(session, cafe_id).items():
        phone_dots, voters = sums.get(theme_id, (0, 0))
        sums[theme_id] = (phone_dots + dots, voters)
    return sums


def tally_payload(session: Session, cafe: Cafe) -> dict[str, Any]:
    allocations = _allocations(session, cafe.id)
    sums = _sums(session, cafe.id)
    paper = _paper(session, cafe.id)
    return {"tally": [{"theme_id": t, "dots": d, "voters": v, "paper": paper.get(t, 0)}
                      for t, (d, v) in sorted(sums.items()) if d or v],
            "voters": len([a for a in allocations.values() if any(a.values())]),
            "version": cafe.version}


def priorities(session: Session, cafe: Cafe) -> list[Priority]:
    """The ranked priorities from the current votes (final once voting has closed)."""
    sums = _sums(session, cafe.id)
    scores = []
    for theme in themes_payload(session, cafe, full=False):
        dots, voters = sums.get(theme["id"], (0, 0))
        scores.append(ThemeScore(theme["id"], dots, theme["tables"], theme["note_count"], voters))
    return rank(scores)


def priorities_payload(session: Session, cafe: Cafe) -> list[dict[str, Any]]:
    themes = {t["id"]: t for t in themes_payload(session, cafe, full=False)}
    return [{"rank": p.rank, "theme_id": p.theme_id, "label": themes[p.theme_id]["label"], "dots": p.dots,
             "voters": p.voters, "tables": p.tables, "notes": p.notes, "tied": p.tied}
            for p in priorities(session, cafe)]


def harvest_for_participant(session: Session, cafe: Cafe, participant_id: int) -> dict[str, Any]:
    if cafe.phase not in HARVEST_PHASES:
        return {}
    data: dict[str, Any] = {"themes": themes_payload(session, cafe, full=False)}
    mine = session.scalars(select(Vote).where(Vote.participant_id == participant_id)).all()
    data["my_votes"] = {str(v.theme_id): v.dots for v in mine}
    if cafe.show_tally or cafe.phase == "results":
        data["tally"] = tally_payload(session, cafe)
    if cafe.phase == "results":
        data["priorities"] = priorities_payload(session, cafe)
    return data


def harvest_for_facilitator(session: Session, cafe: Cafe) -> dict[str, Any]:
    if cafe.phase not in HARVEST_PHASES:
        return {}
    data = {"themes": themes_payload(session, cafe, full=True), "tally": tally_payload(session, cafe)}
    if cafe.phase == "results":
        data["priorities"] = priorities_payload(session, cafe)
    return data


# -- publishing -----------------------------------------------------------------------------------
def _publish_themes(outbox: Outbox, cafe: Cafe) -> None:
    version = cafe.version
    outbox.emit("themes_changed", {"themes": themes_payload(db.session, cafe, full=False), "version": version},
                cafe_room(cafe.id))
    outbox.emit("themes_changed", {"themes": themes_payload(db.session, cafe, full=True), "version": version},
                facilitators_room(cafe.id))


def _publish_state(outbox: Outbox, cafe: Cafe, now: float) -> None:
    outbox.emit("cafe_state", cafe_state(cafe, now), [cafe_room(cafe.id), facilitators_room(cafe.id)])


def _finish(cafe: Cafe, outbox: Outbox, publisher: Publisher, answer: dict[str, Any]) -> dict[str, Any]:
    db.session.commit()
    outbox.publish(publisher)
    return answer


def _harvest_cafe(facilitator_id: int, cafe_id: int, phases: tuple[str, ...] = ("harvest",)) -> Cafe:
    cafe = cafe_for_facilitator(cafe_id, facilitator_id, lock=True)
    if cafe.phase not in phases:
        if cafe.phase in ("voting", "results") and "voting" not in phases:
            raise ServiceError("wrong_phase", "Themes cannot change once voting has opened.", 409)
        raise ServiceError("wrong_phase", "Start the harvest first.", 409)
    return cafe


def _theme(cafe: Cafe, theme_id: int) -> Theme:
    theme = db.session.get(Theme, theme_id)
    if theme is None or theme.cafe_id != cafe.id:
        raise ServiceError("not_found", "No such theme.", 404)
    return theme


def _note(cafe: Cafe, note_id: int) -> Note:
    note = db.session.get(Note, note_id)
    if note is None or note.cafe_id != cafe.id or note.deleted_at is not None:
        raise ServiceError("not_found", "No such note.", 404)
    return note


def _clean_label(label: str) -> str:
    label = " ".join(label.split())
    if not label:
        raise ServiceError("empty", "A theme needs a name.")
    if len(label) > LABEL_MAX:
        raise ServiceError("too_long", "A theme name has at most %(num)s characters.", num=LABEL_MAX)
    return label


# -- themes ---------------------------------------------------------------------------------------
def _cluster_inputs(cafe: Cafe) -> tuple[list[clustering.NoteText], int]:
    """The notes the app may (re)group: every visible note not held by a theme people made or changed."""
    kept_ids = {t.id for t in _themes(db.session, cafe.id) if t.by_hand}
    notes = [n for n in _notes(db.session, cafe.id, include_hidden=False) if n.theme_id not in kept_ids]
    return _note_texts(notes), len(kept_ids)


def _note_texts(notes: list[Note]) -> list[clustering.NoteText]:
    return [clustering.NoteText(id=n.id, text=n.text, table=n.table, round=n.round, lang=n.lang) for n in notes]


def _apply_proposal(cafe: Cafe, proposed: list[clustering.ProposedTheme], now: float) -> None:
    """Replace the app's own themes by ``proposed``; themes people made or changed stay as they are."""
    themes = _themes(db.session, cafe.id)
    kept_ids = {t.id for t in themes if t.by_hand}
    old_auto = [t.id for t in themes if not t.by_hand]
    notes = {n.id: n for n in _notes(db.session, cafe.id, include_hidden=True)}
    if old_auto:
        for note in notes.values():
            if note.theme_id in old_auto:
                note.theme_id = None
        db.session.flush()
        db.session.execute(delete(Theme).where(Theme.id.in_(old_auto)))
    position = len(kept_ids)
    for item in proposed:
        fallback = notes[item.representative_id].text[:60] if item.representative_id in notes else "Theme"
        theme = Theme(cafe_id=cafe.id, label=item.label.strip()[:LABEL_MAX] or fallback,
                      keywords=list(item.keywords)[:8], representative_note_id=item.representative_id,
                      position=position, by_hand=False, created_at=now)
        position += 1
        db.session.add(theme)
        db.session.flush()
        for note_id in item.note_ids:
            note = notes.get(note_id)
            if note is not None and note.theme_id not in kept_ids:     # a note moved by hand meanwhile stays put
                note.theme_id = theme.id


def _propose_outside_transaction(cafe_id: int, facilitator_id: int, run: CpuRunner,
                                 pipeline: str | None) -> tuple[list[clustering.ProposedTheme], int]:
    """Read the notes, end the transaction, then cluster (CPU work, maybe in another thread)."""
    cafe = cafe_for_facilitator(cafe_id, facilitator_id)
    inputs, kept = _cluster_inputs(cafe)
    seed = cafe.id
    db.session.rollback()
    proposed = run(clustering.propose_themes, inputs, pipeline=pipeline, seed=seed) if inputs else []
    return proposed, kept


def prepare_themes(cafe_id: int, *, run: CpuRunner = _inline, pipeline: str | None = None) -> int:
    """Embed the café's notes ahead of the harvest (after the last round), so that proposing themes then
    only clusters: the multilingual model costs tens of milliseconds a note, the clustering a fraction of
    a second for the whole room. Vectors stay in the process's cache; returns how many notes were embedded."""
    inputs = _note_texts(_notes(db.session, cafe_id, include_hidden=False))
    db.session.rollback()                       # no transaction open while the model works
    return run(clustering.prepare_embeddings, inputs, pipeline=pipeline) if inputs else 0


def start_harvest(facilitator_id: int, cafe_id: int, now: float, publisher: Publisher, *,
                  run: CpuRunner = _inline, pipeline: str | None = None) -> dict[str, Any]:
    """After the rounds: propose themes from all the notes and show them to the room."""
    def startable(cafe: Cafe) -> None:
        if cafe.phase not in ("break", "ended"):
            raise ServiceError("wrong_phase", N_("End the round before the harvest.") if cafe.phase == "round"
                               else N_("The harvest starts after the rounds."), 409)
    startable(cafe_for_facilitator(cafe_id, facilitator_id))
    proposed, _kept = _propose_outside_transaction(cafe_id, facilitator_id, run, pipeline)
    cafe = cafe_for_facilitator(cafe_id, facilitator_id, lock=True)
    startable(cafe)
    cafe.phase = "harvest"
    cafe.harvest_started_at = now
    _apply_proposal(cafe, proposed, now)
    cafe.version = bump_version(db.session, cafe.id)
    outbox = Outbox()
    _publish_state(outbox, cafe, now)
    _publish_themes(outbox, cafe)
    return _finish(cafe, outbox, publisher, {"themes": themes_payload(db.session, cafe, full=True)})


def repropose(facilitator_id: int, cafe_id: int, confirm: bool, now: float, publisher: Publisher, *,
              run: CpuRunner = _inline, pipeline: str | None = None) -> dict[str, Any]:
    """Propose themes again. Themes people made or changed are kept; asks first if there are any."""
    cafe = _harvest_cafe(facilitator_id, cafe_id)
    by_hand = [t for t in _themes(db.session, cafe.id) if t.by_hand]
    if by_hand and not confirm:
        raise ServiceError("confirm_needed",
                           "Themes made or changed by hand: %(num)s. They will be kept with their notes, and every "
                           "other theme will be proposed again. Send again with confirm to go on.", 409,
                           num=len(by_hand))
    proposed, kept = _propose_outside_transaction(cafe_id, facilitator_id, run, pipeline)
    cafe = _harvest_cafe(facilitator_id, cafe_id)
    _apply_proposal(cafe, proposed, now)
    cafe.version = bump_version(db.session, cafe.id)
    outbox = Outbox()
    _publish_themes(outbox, cafe)
    return _finish(cafe, outbox, publisher, {"kept": kept, "themes": themes_payload(db.session, cafe, full=True)})


def _changed(cafe: Cafe, now: float, publisher: Publisher, answer: dict[str, Any] | None = None) -> dict[str, Any]:
    cafe.version = bump_version(db.session, cafe.id)
    db.session.flush()
    outbox = Outbox()
    _publish_themes(outbox, cafe)
    return _finish(cafe, outbox, publisher, answer or {})


def rename_theme(facilitator_id: int, cafe_id: int, theme_id: int, label: str, now: float,
                 publisher: Publisher) -> dict[str, Any]:
    cafe = _harvest_cafe(facilitator_id, cafe_id)
    theme = _theme(cafe, theme_id)
    theme.label = _clean_label(label)
    theme.by_hand = True
    return _changed(cafe, now, publisher, {"theme_id": theme.id})


def add_theme(facilitator_id: int, cafe_id: int, label: str, now: float, publisher: Publisher) -> dict[str, Any]:
    cafe = _harvest_cafe(facilitator_id, cafe_id)
    position = len(_themes(db.session, cafe.id))
    theme = Theme(cafe_id=cafe.id, label=_clean_label(label), keywords=[], position=position, by_hand=True,
                  created_at=now)
    db.session.add(theme)
    db.session.flush()
    return _changed(cafe, now, publisher, {"theme_id": theme.id})


def merge_themes(facilitator_id: int, cafe_id: int, theme_id: int, into_id: int, now: float,
                 publisher: Publisher) -> dict[str, Any]:
    cafe = _harvest_cafe(facilitator_id, cafe_id)
    if theme_id == into_id:
        raise ServiceError("invalid_payload", "Pick two different themes to merge.")
    source, target = _theme(cafe, theme_id), _theme(cafe, into_id)
    for note in db.session.scalars(select(Note).where(Note.theme_id == source.id)):
        note.theme_id = target.id
    target.by_hand = True
    target.keywords = list(dict.fromkeys(target.keywords + source.keywords))[:8]
    db.session.flush()
    db.session.delete(source)
    return _changed(cafe, now, publisher, {"theme_id": target.id})


def move_note(facilitator_id: int, cafe_id: int, note_id: int, theme_id: int, now: float,
              publisher: Publisher) -> dict[str, Any]:
    cafe = _harvest_cafe(facilitator_id, cafe_id)
    note, theme = _note(cafe, note_id), _theme(cafe, theme_id)
    old = db.session.get(Theme, note.theme_id) if note.theme_id else None
    note.theme_id = theme.id
    theme.by_hand = True
    if old is not None:
        old.by_hand = True
    return _changed(cafe, now, publisher, {"note_id": note.id, "theme_id": theme.id})


def split_theme(facilitator_id: int, cafe_id: int, theme_id: int, note_ids: list[int], label: str | None,
                now: float, publisher: Publisher) -> dict[str, Any]:
    """Move the chosen notes of a theme into a new theme of their own."""
    cafe = _harvest_cafe(facilitator_id, cafe_id)
    theme = _theme(cafe, theme_id)
    notes = [_note(cafe, nid) for nid in dict.fromkeys(note_ids)]
    if not notes or any(n.theme_id != theme.id for n in notes):
        raise ServiceError("invalid_payload", "Choose notes of that theme to split off.")
    members = db.session.scalars(select(Note).where(Note.theme_id == theme.id)).all()
    if len(notes) >= len(members):
        raise ServiceError("invalid_payload", "Leave at least one note in the theme you split.")
    new_label = _clean_label(label) if label else _clean_label(notes[0].text[:60])
    new = Theme(cafe_id=cafe.id, label=new_label, keywords=[], representative_note_id=notes[0].id,
                position=theme.position, by_hand=True, created_at=now)
    db.session.add(new)
    db.session.flush()
    for note in notes:
        note.theme_id = new.id
    theme.by_hand = True
    return _changed(cafe, now, publisher, {"theme_id": new.id})


def hide_note(facilitator_id: int, cafe_id: int, note_id: int, hidden: bool, now: float,
              publisher: Publisher) -> dict[str, Any]:
    """Moderation: hide an off-topic or abusive note from every public view (it is kept, not deleted)."""
    cafe = cafe_for_facilitator(cafe_id, facilitator_id, lock=True)
    note = _note(cafe, note_id)
    if note.hidden == hidden:
        return {"note_id": note.id, "hidden": hidden}
    note.hidden = hidden
    note.version = cafe.version = bump_version(db.session, cafe.id)
    db.session.flush()
    from .cafes import note_payload
    outbox = Outbox()
    outbox.emit("note_updated", {"note": note_payload(note) | {"hidden": hidden}, "version": note.version},
                facilitators_room(cafe.id))
    public = [table_room(cafe.id, note.round, note.table)]
    if cafe.phase in HARVEST_PHASES:
        public.append(cafe_room(cafe.id))
    if hidden:
        outbox.emit("note_deleted", {"note_id": note.id, "round": note.round, "table": note.table,
                                     "version": note.version}, public)
    else:
        outbox.emit("note_added", {"note": note_payload(note), "version": note.version}, public[0])
    if cafe.phase in HARVEST_PHASES:
        _publish_themes(outbox, cafe)
    return _finish(cafe, outbox, publisher, {"note_id": note.id, "hidden": hidden})


# -- voting ---------------------------------------------------------------------------------------
def open_voting(facilitator_id: int, cafe_id: int, *, budget: int | None, stacking: bool | None,
                show_tally: bool | None, now: float, publisher: Publisher) -> dict[str, Any]:
    cafe = _harvest_cafe(facilitator_id, cafe_id, ("harvest",))
    if not any(t["note_count"] or t["by_hand"] for t in themes_payload(db.session, cafe, full=False)):
        raise ServiceError("no_themes", "There are no themes to vote on yet.", 409)
    if budget is not None:
        cafe.vote_budget = budget
    if stacking is not None:
        cafe.vote_stacking = stacking
    if show_tally is not None:
        cafe.show_tally = show_tally
    cafe.phase = "voting"
    cafe.voting_opened_at = now
    cafe.version = bump_version(db.session, cafe.id)
    outbox = Outbox()
    _publish_state(outbox, cafe, now)
    return _finish(cafe, outbox, publisher, {"state": cafe_state(cafe, now)})


def set_tally_visible(facilitator_id: int, cafe_id: int, show: bool, now: float,
                      publisher: Publisher) -> dict[str, Any]:
    cafe = _harvest_cafe(facilitator_id, cafe_id, ("harvest", "voting"))
    cafe.show_tally = show
    cafe.version = bump_version(db.session, cafe.id)
    outbox = Outbox()
    _publish_state(outbox, cafe, now)
    if show and cafe.phase == "voting":
        outbox.emit("tally_changed", tally_payload(db.session, cafe), cafe_room(cafe.id))
    return _finish(cafe, outbox, publisher, {"state": cafe_state(cafe, now)})


def close_voting(facilitator_id: int, cafe_id: int, now: float, publisher: Publisher) -> dict[str, Any]:
    cafe = _harvest_cafe(facilitator_id, cafe_id, ("voting",))
    cafe.phase = "results"
    cafe.voting_closed_at = now
    cafe.version = bump_version(db.session, cafe.id)
    ranked = priorities_payload(db.session, cafe)
    tally = tally_payload(db.session, cafe)
    outbox = Outbox()
    _publish_state(outbox, cafe, now)
    outbox.emit("tally_changed", tally, [cafe_room(cafe.id), facilitators_room(cafe.id)])
    outbox.emit("priorities_ranked", {"priorities": ranked}, [cafe_room(cafe.id), facilitators_room(cafe.id)])
    return _finish(cafe, outbox, publisher, {"priorities": ranked, "state": cafe_state(cafe, now)})


def vote_operation(participant_id: int, allocation: dict[int, int], now: float, *, scribed: bool = False
                   ) -> Callable[[Session, Outbox], dict[str, Any]]:
    """Replace one participant's whole allocation (so two tabs can never exceed the budget)."""
    def op(session: Session, outbox: Outbox) -> dict[str, Any]:
        person = session.get(Participant, participant_id)
        if person is None or person.removed:
            raise ServiceError("not_joined", "Join a café first.", 403)
        cafe = session.get(Cafe, person.cafe_id)
        assert cafe is not None
        if cafe.phase != "voting":
            raise ServiceError("wrong_phase", N_("Voting is not open.") if cafe.phase != "results"
                               else N_("Voting has closed."), 409)
        theme_ids = set(session.scalars(select(Theme.id).where(Theme.cafe_id == cafe.id)))
        try:
            cleaned = check_allocation(allocation, budget=cafe.vote_budget, allow_stacking=cafe.vote_stacking,
                                       theme_ids=theme_ids)
        except VoteError as exc:
            raise ServiceError(exc.code, exc.template, 400, **exc.params) from None
        existing = {v.theme_id: v for v in session.scalars(select(Vote).where(Vote.participant_id == person.id))}
        for theme_id, vote in existing.items():
            if theme_id not in cleaned:
                session.delete(vote)
        for theme_id, dots in cleaned.items():
            if theme_id in existing:
                existing[theme_id].dots = dots
                existing[theme_id].updated_at = now
                existing[theme_id].scribed = scribed
            else:
                session.add(Vote(cafe_id=cafe.id, participant_id=person.id, theme_id=theme_id, dots=dots,
                                 updated_at=now, scribed=scribed))
        session.flush()
        bump_version(session, cafe.id)
        cafe_id, public = cafe.id, cafe.show_tally

        def publish_tally(batch_session: Session, batch_outbox: Outbox) -> None:
            batch_outbox.emit("tally_changed", tally_payload(batch_session, batch_session.get(Cafe, cafe_id)),
                              [facilitators_room(cafe_id)] + ([cafe_room(cafe_id)] if public else []))
        outbox.coalesce(("tally", cafe_id), publish_tally)
        return {"votes": {str(k): v for k, v in cleaned.items()}, "spent": sum(cleaned.values()),
                "budget": cafe.vote_budget}
    return op


def enter_paper_votes(facilitator_id: int, cafe_id: int, counts: dict[int, int], now: float,
                      publisher: Publisher) -> dict[str, Any]:
    """Dots counted on paper or by a show of hands, per theme; replaces the earlier paper counts."""
    cafe = _harvest_cafe(facilitator_id, cafe_id, ("voting",))
    theme_ids = {t.id for t in _themes(db.session, cafe.id)}
    if any(theme_id not in theme_ids for theme_id in counts):
        raise ServiceError("not_found", "One of those themes is not on the ballot.", 404)
    existing = {p.theme_id: p for p in db.session.scalars(select(PaperVote).where(PaperVote.cafe_id == cafe.id))}
    for theme_id, dots in counts.items():
        if theme_id in existing:
            existing[theme_id].dots = dots
            existing[theme_id].updated_at = now
        else:
            db.session.add(PaperVote(cafe_id=cafe.id, theme_id=theme_id, dots=dots, updated_at=now))
    db.session.flush()
    cafe.version = bump_version(db.session, cafe.id)
    tally = tally_payload(db.session, cafe)
    outbox = Outbox()
    outbox.emit("tally_changed", tally, [facilitators_room(cafe.id)] + ([cafe_room(cafe.id)] if cafe.show_tally else []))
    return _finish(cafe, outbox, publisher, {"tally": tally})
