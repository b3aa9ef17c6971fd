"""The community's priorities, gathered for export: every theme ranked, with the notes behind it."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import func, select

from ..extensions import db
from ..models import Cafe, Note, Participant, Seat
from .cafes import question_for
from .harvest import priorities, themes_payload

SCHEMA = "cafe.priorities/1"


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else None


def priorities_report(cafe: Cafe, include_names: bool = False) -> dict[str, Any]:
    """The report every export format is drawn from (see docs/priorities.md for the schema)."""
    session = db.session
    themes = {t["id"]: t for t in themes_payload(session, cafe, full=True) if t["id"] is not None}
    names: dict[int, str] = {}
    if include_names:
        names = {p.id: p.display_name for p in session.scalars(select(Participant).where(Participant.cafe_id == cafe.id))}
    author = {n.id: n.participant_id for n in session.scalars(select(Note).where(Note.cafe_id == cafe.id))}
    took_part = session.scalar(select(func.count(func.distinct(Seat.participant_id))).where(Seat.cafe_id == cafe.id)) or 0
    joined = session.scalar(select(func.count(Participant.id)).where(Participant.cafe_id == cafe.id,
                                                                     Participant.removed.is_(False))) or 0
    ranked = []
    for p in priorities(session, cafe):
        theme = themes[p.theme_id]
        notes = [n for n in theme["notes"] if not n["hidden"]]
        ranked.append({
            "rank": p.rank, "tied": p.tied, "theme": theme["label"], "keywords": theme["keywords"],
            "dots": p.dots, "voters": p.voters,
            "tables": sorted({n["table"] for n in notes}), "rounds": sorted({n["round"] for n in notes}),
            "table_conversations": len({(n["round"], n["table"]) for n in notes}),
            "notes": [{"text": n["text"], "round": n["round"], "table": n["table"], "language": n["lang"]}
                      | ({"name": names.get(author.get(n["id"]) or 0, "")} if include_names else {})
                      for n in notes],
        })
    date = cafe.voting_closed_at or cafe.harvest_started_at or cafe.round_started_at
    return {
        "schema": SCHEMA,
        "cafe": {"id": cafe.id, "title": cafe.title,
                 "questions": [question_for(cafe, r) for r in range(1, cafe.rounds + 1)] if cafe.questions else [],
                 "date": (_iso(date) or cafe.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"))[:10],
                 "rounds": cafe.current_round, "tables": cafe.table_count,
                 "participants": took_part, "joined": joined},
        "voting": {"status": {"results": "closed", "voting": "open"}.get(cafe.phase, "not_started"),
                   "budget": cafe.vote_budget, "stacking": cafe.vote_stacking,
                   "closed_at": _iso(cafe.voting_closed_at),
                   "voters": len({v for v in _voters(cafe)})},
        "names_included": include_names,
        "priorities": ranked,
    }


def _voters(cafe: Cafe) -> list[int]:
    from ..models import Vote
    return list(db.session.scalars(select(Vote.participant_id).where(Vote.cafe_id == cafe.id, Vote.dots > 0)))
