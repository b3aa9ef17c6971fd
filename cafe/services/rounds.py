"""Running the café: rounds, the round clock, seating, and the end of the café."""
from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from sqlalchemy import Row, insert, select

from ..domain.clock import RoundClock
from ..domain.protocol import N_
from ..domain.seating import RoundPlan, SeatingProblem, plan_round, table_count
from ..extensions import db
from ..models import Cafe, Participant, Seat
from .cafes import bump_version, cafe_for_facilitator, cafe_state, clock_of, seating_map
from .errors import ServiceError
from .events import Outbox, Publisher, cafe_room, facilitators_room, participant_room, table_room

#: Runs CPU-bound planning off the event loop where the server can (eventlet's tpool); by default inline.
CpuRunner = Callable[..., Any]


def _inline(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


#: Starts ``fn`` as a task of the server (a greenlet under eventlet or gevent, else a thread), lets it run until
#: it first waits, and returns it (``join()`` waits for its end); by default ``fn`` simply runs at once.
Spawner = Callable[[Callable[[], None]], Any]


class _Ran:
    @staticmethod
    def join() -> None:
        return None


def _at_once(fn: Callable[[], None]) -> _Ran:
    fn()
    return _Ran()


class PlanCache:
    """The last plan made for each café, kept with the problem it solved (a bounded, per-process cache).

    A round change waits for its plan: with 2,000 people, 20-50 ms of CPU on a quiet machine and two or three
    times that under load, while the whole room waits for its seats. The plan for the coming round is made
    ahead instead, when the round before ends (see :func:`prepare_next_round`) and whenever the control view
    asks for a preview; starting the round uses it when the problem is still the same one (same people
    present, same tables, history, hosts and needs), and plans afresh otherwise. So the preview the
    facilitator saw is also the seating the room gets. A plan is kept per process: a start handled by
    another worker simply plans again."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._plans: OrderedDict[int, tuple[SeatingProblem, int, RoundPlan]] = OrderedDict()
        self._lock = threading.Lock()     # held for dictionary work only, never across a wait

    def get(self, cafe_id: int, problem: SeatingProblem, rounds_left: int) -> RoundPlan | None:
        with self._lock:
            kept = self._plans.get(cafe_id)
        if kept is None or kept[1] != rounds_left or kept[0] != problem:
            return None
        return kept[2]

    def put(self, cafe_id: int, problem: SeatingProblem, rounds_left: int, plan: RoundPlan) -> None:
        with self._lock:
            self._plans[cafe_id] = (problem, rounds_left, plan)
            self._plans.move_to_end(cafe_id)
            while len(self._plans) > self.size:
                self._plans.popitem(last=False)

    def drop(self, cafe_id: int) -> None:
        with self._lock:
            self._plans.pop(cafe_id, None)

    def clear(self) -> None:
        with self._lock:
            self._plans.clear()

    def __contains__(self, cafe_id: object) -> bool:
        with self._lock:
            return cafe_id in self._plans


plans = PlanCache()


def _plan(cafe_id: int, problem: SeatingProblem, rounds_left: int, time_limit: float, run: CpuRunner) -> RoundPlan:
    """The plan for ``problem``: the one made ahead if it solved this very problem, else a new one (kept)."""
    plan = plans.get(cafe_id, problem, rounds_left)
    if plan is None:
        plan = run(plan_round, problem, time_limit=time_limit, rounds_left=rounds_left)
        plans.put(cafe_id, problem, rounds_left, plan)
    return plan


def _broadcast_state(outbox: Outbox, cafe: Cafe, now: float) -> None:
    outbox.emit("cafe_state", cafe_state(cafe, now), [cafe_room(cafe.id), facilitators_room(cafe.id)])


def _present(cafe: Cafe, now: float, grace: float) -> list[Row[Any]]:
    """Who gets a seat: joined, not gone, and connected or seen within the grace period. Rows of the columns
    planning and the table map need (a café of thousands: no ORM object per person)."""
    people = db.session.execute(select(
        Participant.id, Participant.number, Participant.name, Participant.connected, Participant.last_seen_at,
        Participant.fixed, Participant.languages, Participant.joined_at).where(
        Participant.cafe_id == cafe.id, Participant.removed.is_(False), Participant.left_at.is_(None))
        .order_by(Participant.number)).all()
    return [p for p in people if p.connected or now - p.last_seen_at <= grace]


def _history(cafe: Cafe) -> tuple[list[list[list[int]]], dict[int, int]]:
    """Past rounds as table lists (0-based table index) and the hosts (participant -> 0-based table).
    The last entry is the current (or just ended) round: seats are only ever written for the next round."""
    seats = db.session.execute(select(Seat.round, Seat.table, Seat.participant_id, Seat.is_host)
                               .where(Seat.cafe_id == cafe.id).order_by(Seat.round, Seat.table, Seat.id)).all()
    by_round: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    hosts: dict[int, int] = {}
    for round_no, table, participant_id, is_host in seats:     # thousands a round: unpacked, not by name
        by_round[round_no][table - 1].append(participant_id)
        if is_host:
            hosts[participant_id] = table - 1
    history = []
    for round_no in sorted(by_round):
        tables = by_round[round_no]
        width = max(tables) + 1 if tables else 0
        history.append([tables.get(t, []) for t in range(width)])
    return history, hosts


def _problem(cafe: Cafe, present: list[Row[Any]]) -> SeatingProblem:
    history, hosts = _history(cafe)
    ids = [p.id for p in present]
    present_ids = set(ids)
    if cafe.fixed_tables:
        tables = cafe.fixed_tables
    else:
        tables = table_count(len(ids), cafe.seats_per_table)
        if cafe.table_count and cafe.hosts:
            # Keep every table whose host is still here.
            tables = max(tables, min(cafe.table_count, 1 + max((t for p, t in hosts.items() if p in present_ids),
                                                                 default=-1)))
    tables = max(1, min(tables, len(ids)))
    return SeatingProblem(
        participants=tuple(ids), tables=tables,
        history=tuple(tuple(tuple(t) for t in rnd) for rnd in history),
        hosts={p: t for p, t in hosts.items() if p in present_ids and t < tables},
        fixed=frozenset(p.id for p in present if p.fixed),
        # Only people who said which languages they can talk in: nobody is left alone in theirs.
        languages={p.id: frozenset(p.languages) for p in present if p.languages},
        seed=cafe.id)


def _choose_hosts(plan_tables: list[list[int]], present: list[Row[Any]]) -> set[int]:
    """Round 1 with hosts: at each table, a person who cannot move hosts if there is one, else the one who
    joined first (they have been in the room longest)."""
    by_id = {p.id: p for p in present}
    hosts = set()
    for members in plan_tables:
        if members:
            hosts.add(min(members, key=lambda pid: (not by_id[pid].fixed, by_id[pid].joined_at, pid)))
    return hosts


def seating_preview(facilitator_id: int, cafe_id: int, now: float, grace: float, time_limit: float,
                    run: CpuRunner = _inline) -> dict[str, Any]:
    """For the control view: the coming round's repeats and the proven minimum."""
    cafe = cafe_for_facilitator(cafe_id, facilitator_id)
    present = _present(cafe, now, grace)
    if cafe.phase not in ("lobby", "break") or not present or cafe.current_round >= cafe.rounds:
        db.session.rollback()
        return {"round": None, "present": len(present)}
    problem = _problem(cafe, present)
    next_round, rounds_left = cafe.current_round + 1, cafe.rounds - cafe.current_round
    db.session.rollback()          # no transaction open while planning
    plan = _plan(cafe.id, problem, rounds_left, time_limit, run)
    return {"round": next_round, "present": len(present), "tables": problem.tables,
            "repeats": plan.repeats, "lower_bound": plan.lower_bound, "warnings": plan.warnings}


def prepare_next_round(facilitator_id: int, cafe_id: int, now: float, grace: float, time_limit: float,
                       run: CpuRunner = _inline) -> None:
    """Plan the coming round ahead (run in the background when a round ends), so that starting it only
    writes the seats and tells every phone. Kept in :data:`plans`; nothing is written."""
    seating_preview(facilitator_id, cafe_id, now, grace, time_limit, run)


def _check_can_start(cafe: Cafe) -> None:
    if cafe.phase not in ("lobby", "break"):
        raise ServiceError("wrong_phase", N_("A round is already running; end it first.") if cafe.phase == "round"
                           else N_("Rounds are over."), 409)
    if cafe.current_round >= cafe.rounds:
        raise ServiceError("no_more_rounds", "All planned rounds are done.", 409)


def start_round(facilitator_id: int, cafe_id: int, now: float, publisher: Publisher, *, grace: float,
                time_limit: float, run: CpuRunner = _inline, spawn: Spawner = _at_once) -> dict[str, Any]:
    """Start the next round (the first from the lobby): seat everyone present and start the clock.

    Planning is CPU work that may run in another thread; no transaction is open meanwhile (a lock held
    across it would stall every other writer, and under eventlet the whole server). The write then
    re-checks, under the café's row lock, that no one started the round in between. The round's messages
    are made while the database writes the seats (see :func:`_seats_written`).
    """
    cafe = cafe_for_facilitator(cafe_id, facilitator_id)
    _check_can_start(cafe)
    present = _present(cafe, now, grace)
    if not present:
        raise ServiceError("nobody_here", "Nobody has joined yet.", 409)
    problem = _problem(cafe, present)
    planned_round = cafe.current_round
    rounds_left = cafe.rounds - cafe.current_round
    db.session.rollback()
    # Planning the remaining rounds together (and keeping to that plan while attendance holds) reaches
    # the zero-repeat constructions that round-by-round greedy planning misses. Usually made ahead.
    plan = _plan(cafe_id, problem, rounds_left, time_limit, run)

    cafe = cafe_for_facilitator(cafe_id, facilitator_id, lock=True)
    _check_can_start(cafe)
    if cafe.current_round != planned_round:
        raise ServiceError("wrong_phase", "That round was already started.", 409)
    # Connections now (a phone may have reconnected while planning); not anyone removed meanwhile. The
    # rooms to leave are last round's tables, already read with the history (the round is unchanged).
    old_round = cafe.current_round
    sids: dict[int, str | None] = {pid: sid for pid, sid in db.session.execute(
        select(Participant.id, Participant.sid).where(Participant.cafe_id == cafe.id,
                                                      Participant.removed.is_(False)))}
    old_tables = {pid: index + 1 for index, members in enumerate(problem.history[-1] if old_round else ())
                  for pid in members}
    round_no = cafe.current_round + 1
    host_ids = set(problem.hosts)
    if round_no == 1 and cafe.hosts:
        host_ids = _choose_hosts(plan.tables, present)
    rows = [{"cafe_id": cafe.id, "round": round_no, "participant_id": pid, "table": index + 1,
             "is_host": pid in host_ids}
            for index, members in enumerate(plan.tables) for pid in members if pid in sids]
    cafe.phase = "round"
    cafe.current_round = round_no
    cafe.table_count = len(plan.tables)
    cafe.round_started_at = now
    cafe.round_duration = float(cafe.round_seconds)
    cafe.paused_at = None
    cafe.paused_total = 0.0
    db.session.flush()
    cafe.version = bump_version(db.session, cafe.id)
    state = cafe_state(cafe, now)
    info = {p.id: p for p in present}
    with _seats_written(rows, spawn):
        outbox = Outbox()
        # A seated phone gets its seat and the new state in one message (one to send, one to draw, at the
        # moment the whole room is waiting); the state alone goes to the facilitators and to anyone not seated.
        for row in rows:
            pid = row["participant_id"]
            if sids[pid]:
                leave = [table_room(cafe.id, old_round, old_tables[pid])] if pid in old_tables else []
                outbox.move(sids[pid], leave, [table_room(cafe.id, round_no, row["table"])])
            outbox.emit("seat_assigned", {"cafe_id": cafe.id, "round": round_no, "table": row["table"],
                                          "is_host": row["is_host"], "tables": cafe.table_count, "state": state,
                                          "version": cafe.version},
                        participant_room(pid))
        seated = {row["participant_id"] for row in rows}
        outbox.emit("cafe_state", state, [facilitators_room(cafe.id)] +
                    [participant_room(pid) for pid in sids if pid not in seated])
        table_map = seating_map(cafe, sorted(
            ((r["table"], r["is_host"], r["participant_id"], info[r["participant_id"]].name,
              info[r["participant_id"]].number, info[r["participant_id"]].connected) for r in rows),
            key=lambda m: (m[0], not m[1], m[4])))
        outbox.emit("seating_changed", table_map | {
            "repeats": plan.repeats, "lower_bound": plan.lower_bound, "warnings": plan.warnings},
            facilitators_room(cafe.id))
        publish = outbox.prepared(publisher)       # sent after the commit
    db.session.commit()
    plans.drop(cafe.id)            # used: the next round's problem has this round in its history
    publish()
    return {"state": state, "repeats": plan.repeats, "lower_bound": plan.lower_bound, "warnings": plan.warnings}


_SEAT_COLUMNS = 'seat (cafe_id, round, participant_id, "table", is_host)'
_SEATS_FROM_ARRAYS = (f"INSERT INTO {_SEAT_COLUMNS} SELECT %s, %s, * "
                      "FROM unnest(%s::integer[], %s::integer[], %s::boolean[])")


@contextmanager
def _seats_written(rows: list[dict[str, Any]], spawn: Spawner) -> Iterator[None]:
    """A round's seats are written by the end of the block, which must not use the session meanwhile.

    On PostgreSQL the seats go in as one statement, sent by a task of its own (``spawn``), and the block runs
    while the database inserts them and checks their keys: the round's messages are made and encoded then,
    where the phones waited for the one after the other (2,000 seats, 2 workers under the load benchmark:
    the insert 61-95 ms, the messages 40-70 ms). Elsewhere the seats are written first (:func:`_insert_seats`).
    """
    connection = db.session.connection()
    if not rows or connection.dialect.name != "postgresql":
        _insert_seats(rows)
        yield
        return
    raw = connection.connection.driver_connection
    failed: list[BaseException] = []

    def write() -> None:          # a round's seats: one café, one round
        try:
            raw.execute(_SEATS_FROM_ARRAYS, (rows[0]["cafe_id"], rows[0]["round"],
                                             [r["participant_id"] for r in rows], [r["table"] for r in rows],
                                             [bool(r["is_host"]) for r in rows]))
        except BaseException as exc:   # raised in the caller, once the task is over
            failed.append(exc)

    task = spawn(write)
    try:
        yield
    finally:
        task.join()
    if failed:
        raise failed[0]


def _insert_seats(rows: list[dict[str, Any]]) -> None:
    """Write a round's seats in one go (PostgreSQL: see :func:`_seats_written`): SQLite's own executemany
    (2,000 seats: 16 ms, where SQLAlchemy's ORM bulk insert took 35 and its Core insert 24, side by side),
    elsewhere one executemany through SQLAlchemy."""
    if not rows:
        return
    connection = db.session.connection()
    if connection.dialect.name == "sqlite":
        # In the session's transaction, on its connection.
        connection.connection.driver_connection.executemany(
            f"INSERT INTO {_SEAT_COLUMNS} VALUES (?, ?, ?, ?, ?)",
            [(r["cafe_id"], r["round"], r["participant_id"], r["table"], r["is_host"]) for r in rows])
    else:
        db.session.execute(insert(Seat), rows)


def _commit_state(cafe: Cafe, now: float, publisher: Publisher) -> dict[str, Any]:
    """Commit a change of the café's phase or clock, then tell every screen."""
    outbox = Outbox()
    _broadcast_state(outbox, cafe, now)
    state = cafe_state(cafe, now)
    db.session.commit()
    outbox.publish(publisher)
    return {"state": state}


def _change_clock(facilitator_id: int, cafe_id: int, now: float, publisher: Publisher,
                  change: Callable[[RoundClock], RoundClock]) -> dict[str, Any]:
    cafe = cafe_for_facilitator(cafe_id, facilitator_id, lock=True)
    clock = clock_of(cafe)
    if cafe.phase != "round" or clock is None:
        raise ServiceError("wrong_phase", "No round is running.", 409)
    new = change(clock)
    if new != clock:
        cafe.round_duration, cafe.paused_at, cafe.paused_total = new.duration, new.paused_at, new.paused_total
        cafe.version = bump_version(db.session, cafe.id)
    return _commit_state(cafe, now, publisher)


def pause(facilitator_id: int, cafe_id: int, now: float, publisher: Publisher) -> dict[str, Any]:
    return _change_clock(facilitator_id, cafe_id, now, publisher, lambda c: c.pause(now))


def resume(facilitator_id: int, cafe_id: int, now: float, publisher: Publisher) -> dict[str, Any]:
    return _change_clock(facilitator_id, cafe_id, now, publisher, lambda c: c.resume(now))


def extend(facilitator_id: int, cafe_id: int, seconds: int, now: float, publisher: Publisher) -> dict[str, Any]:
    def change(clock: RoundClock) -> RoundClock:
        if seconds < 0 and clock.remaining(now) + seconds < 0:
            raise ServiceError("out_of_range", "There is less time left than that.")
        return clock.extend(seconds, now)
    return _change_clock(facilitator_id, cafe_id, now, publisher, change)


def end_round(facilitator_id: int, cafe_id: int, now: float, publisher: Publisher) -> dict[str, Any]:
    cafe = cafe_for_facilitator(cafe_id, facilitator_id, lock=True)
    if cafe.phase != "round":
        raise ServiceError("wrong_phase", "No round is running.", 409)
    cafe.phase = "break"
    cafe.paused_at = None
    cafe.version = bump_version(db.session, cafe.id)
    return _commit_state(cafe, now, publisher)


def end_cafe(facilitator_id: int, cafe_id: int, now: float, publisher: Publisher) -> dict[str, Any]:
    cafe = cafe_for_facilitator(cafe_id, facilitator_id, lock=True)
    if cafe.phase == "ended":
        raise ServiceError("wrong_phase", "This café has already ended.", 409)
    cafe.phase = "ended"
    cafe.paused_at = None
    cafe.ended_at = datetime.now(timezone.utc).replace(tzinfo=None)
    cafe.version = bump_version(db.session, cafe.id)
    return _commit_state(cafe, now, publisher)


def set_joins_open(facilitator_id: int, cafe_id: int, is_open: bool, now: float,
                   publisher: Publisher) -> dict[str, Any]:
    cafe = cafe_for_facilitator(cafe_id, facilitator_id, lock=True)
    if cafe.joins_open != is_open:
        cafe.joins_open = is_open
        cafe.version = bump_version(db.session, cafe.id)
    return _commit_state(cafe, now, publisher)
