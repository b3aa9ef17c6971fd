"""Reads that every phone makes when it comes back stay cheap however many notes the café holds, and
however young its tables' statistics are (a café's tables grow from nothing within minutes, faster than
PostgreSQL's autovacuum analyses them)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import text

from tests.conftest import Actions, both_databases, statements_run

ROUND = 2           # the café is in its second round
TABLES = 10
HOST_TABLE = 3
PEOPLE = 1000       # their seats fill many pages: a planner that reads them all has much to read


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node] + [n for child in node.get("Plans", []) for n in _plan_nodes(child)]


def _assert_read_through_indexes(connection: Any, statement: str, parameters: Any, table: str,
                                 sqlite_indexes: tuple[str, ...]) -> None:
    """The statement runs each plan node once and never scans ``table`` (PostgreSQL); SQLite searches it
    through one of ``sqlite_indexes``."""
    if connection.dialect.name == "postgresql":
        plan = connection.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters).scalar()[0]["Plan"]
        # Each node once: as ``id IN (the parts)`` the notes' parts ran once for each of the café's notes.
        loops = [(n["Node Type"], n.get("Index Name"), n["Actual Loops"]) for n in _plan_nodes(plan)]
        assert all(n == 1 for *_node, n in loops), loops
        reads = [n for n in _plan_nodes(plan) if n.get("Relation Name") == table]
        assert reads and all(n["Node Type"] != "Seq Scan" for n in reads), reads
    else:
        details = [row[-1] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
        reads = [d for d in details if f" {table} " in f"{d} "]
        assert reads and all(d.startswith("SEARCH") and any(i in d for i in sqlite_indexes) for d in reads), details


@both_databases
def test_the_seats_and_notes_a_phone_coming_back_reads_are_read_once_through_indexes_however_stale_the_statistics(
        actions: Actions) -> None:
    from cafe.extensions import db
    from cafe.models import Cafe, Note, Participant, Seat
    from cafe.services.cafes import seat_and_hosting, visible_notes

    fac = actions.facilitator()
    cafe_id = actions.cafe(fac)["id"]
    with actions.app.app_context():
        session = db.session
        postgres = session.get_bind().dialect.name == "postgresql"
        if postgres:    # as a young café's tables are: analysed while empty, then filled
            for table in ("note", "seat"):
                session.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
                session.execute(text(f"ANALYZE {table}"))
            session.commit()
        people = [Participant(cafe_id=cafe_id, number=n, language="en", token_hash=f"{n:064d}", joined_at=0.0,
                              last_seen_at=0.0, connected=True) for n in range(1, PEOPLE + 1)]
        session.add_all(people)
        session.flush()
        host, guest, unseated = people[0], people[1], people[-1]
        tables = {}         # (round, participant id) -> table
        for round_no in (1, ROUND):
            for i, person in enumerate(people[:-1]):
                table = HOST_TABLE if person is host else 1 + (i * round_no) % TABLES
                if person is guest:
                    table = HOST_TABLE if round_no == ROUND else HOST_TABLE + 1    # moved to the host's table
                tables[round_no, person.id] = table
                session.add(Seat(cafe_id=cafe_id, round=round_no, participant_id=person.id, table=table,
                                 is_host=person is host))
        notes = []
        for n in range(2000):
            writer = people[n % len(people)]
            round_no = 1 + n % ROUND
            table = tables.get((round_no, writer.id), 1 + n % TABLES)
            notes.append(Note(cafe_id=cafe_id, participant_id=writer.id, client_id=f"c{n}", round=round_no,
                              table=table, text=f"note {n}", lang="en", created_at=0.0, updated_at=0.0,
                              version=n, hidden=n % 97 == 0, scribed=False,
                              deleted_at=1.0 if n % 89 == 0 else None))
        session.add_all(notes)
        cafe = session.get(Cafe, cafe_id)
        cafe.phase, cafe.current_round, cafe.table_count = "round", ROUND, TABLES
        session.commit()
        shown = [n for n in notes if not n.hidden and n.deleted_at is None]

        def expected(person: Participant, table: int | None, is_host: bool) -> list[int]:
            return [n.id for n in shown if n.participant_id == person.id or (
                n.table == table and (n.round == ROUND or (is_host and n.round < ROUND)))]

        engine = session.get_bind()
        for person, is_host in ((host, True), (guest, False), (unseated, False)):
            person_id, _round = person.id, cafe.current_round      # loaded again after the commit: not counted
            with statements_run(engine) as statements:
                seat, hosting = seat_and_hosting(session, cafe, person_id)
            table = tables.get((ROUND, person.id))
            assert (seat.table if seat else None) == table and hosting is is_host
            assert len(statements) == 1
            # their seats through the index on participant_id, not the café's through the unique index
            # that leads with cafe_id
            _assert_read_through_indexes(session.connection(), *statements[0], "seat", ("ix_seat_participant_id",))
            with statements_run(engine) as statements:
                seen = [n.id for n in visible_notes(session, cafe, person, seat)]
            # their own notes (the guest's from another table last round too), their table's this round,
            # and for the host, their table's earlier rounds; never a hidden or deleted one
            assert seen == expected(person, table, is_host) and seen
            assert len(statements) == 1
            # Through the unique index on (participant_id, client_id) or the one on (cafe_id, round, table):
            # never a scan, nor every note of the café through the index on cafe_id alone.
            _assert_read_through_indexes(session.connection(), *statements[0], "note",
                                         ("sqlite_autoindex_note_1", "ix_note_cafe_round_table"))
        session.rollback()
