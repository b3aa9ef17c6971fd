"""SQLAlchemy 2 typed models. Table invariants only: behaviour lives in services and domain."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db


class Facilitator(db.Model):
    __tablename__ = "facilitator"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="facilitator", cascade="all, delete-orphan")


class ApiToken(db.Model):
    """A facilitator's API token; only its SHA-256 is stored."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    facilitator_id: Mapped[int] = mapped_column(ForeignKey("facilitator.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(80), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    facilitator: Mapped[Facilitator] = relationship(back_populates="tokens")


class Cafe(db.Model):
    __tablename__ = "cafe"

    id: Mapped[int] = mapped_column(primary_key=True)
    facilitator_id: Mapped[int] = mapped_column(ForeignKey("facilitator.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    join_code: Mapped[str] = mapped_column(String(16), unique=True)
    questions: Mapped[list[str]] = mapped_column(JSON)
    # The questions in other languages: {"es": ["...", ...], ...}, same order as ``questions``.
    question_translations: Mapped[dict[str, list[str]] | None] = mapped_column(JSON, nullable=True)
    rounds: Mapped[int] = mapped_column(Integer, default=3)
    round_seconds: Mapped[int] = mapped_column(Integer, default=1200)
    seats_per_table: Mapped[int] = mapped_column(Integer, default=5)
    fixed_tables: Mapped[int | None] = mapped_column(Integer, nullable=True)
    hosts: Mapped[bool] = mapped_column(Boolean, default=True)
    # lobby -> round -> break -> round ... -> ended
    phase: Mapped[str] = mapped_column(String(16), default="lobby")
    current_round: Mapped[int] = mapped_column(Integer, default=0)
    table_count: Mapped[int] = mapped_column(Integer, default=0)
    # The round clock, as timestamps (epoch seconds): see cafe.domain.clock.
    round_started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    round_duration: Mapped[float] = mapped_column(Float, default=0.0)
    paused_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    paused_total: Mapped[float] = mapped_column(Float, default=0.0)
    version: Mapped[int] = mapped_column(Integer, default=0)
    participant_seq: Mapped[int] = mapped_column(Integer, default=0)
    joins_open: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # The harvest: themes, then a vote with a budget of dots per person.
    vote_budget: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    vote_stacking: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    show_tally: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    harvest_started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    voting_opened_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    voting_closed_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Participant(db.Model):
    """A resident's phone in one café. The rejoin token is the only identity; only its hash is kept."""

    __tablename__ = "participant"
    __table_args__ = (UniqueConstraint("cafe_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cafe_id: Mapped[int] = mapped_column(ForeignKey("cafe.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)           # "Guest N"
    name: Mapped[str | None] = mapped_column(String(40), nullable=True)
    language: Mapped[str] = mapped_column(String(16), default="en")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    joined_at: Mapped[float] = mapped_column(Float)
    last_seen_at: Mapped[float] = mapped_column(Float)
    connected: Mapped[bool] = mapped_column(Boolean, default=False)
    sid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    left_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    removed: Mapped[bool] = mapped_column(Boolean, default=False)
    fixed: Mapped[bool] = mapped_column(Boolean, default=False)
    # Languages this person can talk in at a table, if they said (seating keeps nobody alone in theirs).
    languages: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # May write notes for others at the table (table hosts always may).
    can_scribe: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")

    @property
    def display_name(self) -> str:
        return self.name or f"Guest {self.number}"


class Seat(db.Model):
    """Who sits where in one round; the seating history is the source of truth for planning."""

    __tablename__ = "seat"
    # The unique index leads with cafe_id, so it serves every look-up by café (and the cascade from it): no
    # index of cafe_id alone (dropped in 0005; it only slowed the write of each round's 2,000 seats, 29.4 -> 27.8 ms).
    __table_args__ = (UniqueConstraint("cafe_id", "round", "participant_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cafe_id: Mapped[int] = mapped_column(ForeignKey("cafe.id", ondelete="CASCADE"))
    round: Mapped[int] = mapped_column(Integer)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id", ondelete="CASCADE"), index=True)
    table: Mapped[int] = mapped_column(Integer)            # 1-based, as people say it
    is_host: Mapped[bool] = mapped_column(Boolean, default=False)


class Note(db.Model):
    """A sticky note. Deleting by its author keeps the row (deleted_at) so nothing accepted is lost."""

    __tablename__ = "note"
    __table_args__ = (
        UniqueConstraint("participant_id", "client_id"),
        Index("ix_note_cafe_round_table", "cafe_id", "round", "table"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    cafe_id: Mapped[int] = mapped_column(ForeignKey("cafe.id", ondelete="CASCADE"), index=True)
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participant.id", ondelete="SET NULL"),
                                                       nullable=True)
    client_id: Mapped[str] = mapped_column(String(36))
    round: Mapped[int] = mapped_column(Integer)
    table: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    lang: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    deleted_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    hidden: Mapped[bool] = mapped_column(Boolean, default=False)
    # Written on behalf of someone else: by a scribe at the table, or entered by the facilitator from paper.
    scribed: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    version: Mapped[int] = mapped_column(Integer, default=0)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    theme_id: Mapped[int | None] = mapped_column(ForeignKey("theme.id", ondelete="SET NULL"), nullable=True,
                                                 index=True)


class Theme(db.Model):
    """A pattern across tables: proposed by the app from the notes, shaped by people."""

    __tablename__ = "theme"

    id: Mapped[int] = mapped_column(primary_key=True)
    cafe_id: Mapped[int] = mapped_column(ForeignKey("cafe.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(120))
    keywords: Mapped[list[str]] = mapped_column(JSON, default=list)
    representative_note_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    by_hand: Mapped[bool] = mapped_column(Boolean, default=False)   # made or changed by a person
    created_at: Mapped[float] = mapped_column(Float)


class Vote(db.Model):
    """Dots one participant put on one theme (their whole allocation is the set of their rows)."""

    __tablename__ = "vote"
    __table_args__ = (UniqueConstraint("participant_id", "theme_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cafe_id: Mapped[int] = mapped_column(ForeignKey("cafe.id", ondelete="CASCADE"), index=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id", ondelete="CASCADE"), index=True)
    theme_id: Mapped[int] = mapped_column(ForeignKey("theme.id", ondelete="CASCADE"), index=True)
    dots: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[float] = mapped_column(Float)
    # Votes a scribe entered for people without a phone are marked so (issue: people without a phone).
    scribed: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class PaperVote(db.Model):
    """Dots counted on paper or by a show of hands and entered by the facilitator, per theme."""

    __tablename__ = "paper_vote"
    __table_args__ = (UniqueConstraint("cafe_id", "theme_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cafe_id: Mapped[int] = mapped_column(ForeignKey("cafe.id", ondelete="CASCADE"), index=True)
    theme_id: Mapped[int] = mapped_column(ForeignKey("theme.id", ondelete="CASCADE"))
    dots: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[float] = mapped_column(Float)
