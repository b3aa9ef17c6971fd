"""Group commit: many small writes, one transaction, each writer answered after its commit.

A socket handler must never stall the server's event loop on a commit per note. Writers submit an
*operation* (a function of the session and an outbox) and wait; one background task takes everything
queued, runs the operations of a kind that can run in bulk (new notes) together, each other one
inside its own savepoint, commits once, publishes the events, and only then wakes each writer with its
result. So "acknowledged" always means "committed", and one bad operation never spoils the others in
its batch: a bulk run that fails is rolled back and its operations run again one by one.

On PostgreSQL, operations that can write without a transaction (new notes: see
``cafe.services.notes._add_at_once``) run first, each statement committing itself: one round trip
instead of five, and no lock on the café's row held across a round trip. Whatever they leave (a resent
note, a round that ended meanwhile) runs in the transaction after them.

The writer keeps a database connection of its own while batches keep coming (see ``_connect``): every
round trip a batch makes is a wait for all its writers, and the pool's checkout ping and check-in rollback
were two of them. The note path's statements are built once (see ``cafe.services.notes``) for the same
reason: building them cost more than running them. On PostgreSQL the writer's connection can be made to wait
briefly for each answer without yielding to the event loop (``NOTE_WRITER_BLOCKING_WAIT_MS``, off by default:
see ``cafe.services.pgwait``).
"""
from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from sqlalchemy.orm import Session

from . import pgwait
from .errors import ServiceError
from .events import Outbox, Publisher

log = logging.getLogger(__name__)

Operation = Callable[[Session, Outbox], Any]
# The note writer's session settings on PostgreSQL (see GroupCommitter._connect), in one round trip, and
# what undoes them before the connection goes back to the pool (psycopg forgets its statements' names with
# DEALLOCATE ALL).
_PLAN_ONCE = ("SELECT set_config('plan_cache_mode', 'force_generic_plan', false), "
              "set_config('enable_seqscan', 'off', false)")
_PLAN_UNDO = ("RESET plan_cache_mode", "RESET enable_seqscan", "DEALLOCATE ALL")
IDLE_RECONNECT = 5.0    # seconds: the writer's connection goes back to the pool after this long unused


@contextmanager
def _autocommit(connection: Any) -> Iterator[None]:
    """On PostgreSQL, the connection without a transaction inside the block: each statement commits itself
    (client-side settings: nothing is sent). Elsewhere nothing changes."""
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.execution_options(isolation_level="AUTOCOMMIT")
    try:
        yield
    finally:
        connection.execution_options(isolation_level=connection.default_isolation_level)


@dataclass
class _Pending:
    op: Operation
    done: Any                       # an Event of the server's async mode
    queued_at: float = field(default_factory=time.perf_counter)     # when submitted
    result: Any = None
    error: ServiceError | None = None
    outbox: Outbox = field(default_factory=Outbox)


class _StageTimes:
    """Where each operation's time in the writer went, for the load benchmark (``NOTE_WRITER_STATS``): per
    operation, when its batch began (wall clock), the batch's size, and seconds spent waiting for the writer
    (the batch before still in flight), in the database (statements, commit, reads after it) and publishing
    (events out) before its sender was answered. Appended to ``<path>.<pid>.jsonl``, one JSON list per
    operation, once the writer has been idle for a moment (or holds ``SAVE_AT`` of them, or stops), so that
    writing the file does not hold up the notes being measured."""

    SAVE_AT = 100_000

    def __init__(self, path: str) -> None:
        self.path = path
        self.rows: list[tuple[float, int, float, float, float]] = []

    def add(self, batch: list[_Pending], began: float, committed: float, published: float) -> None:
        at = time.time() - (time.perf_counter() - began)
        self.rows.extend((at, len(batch), began - p.queued_at, committed - began, published - committed)
                         for p in batch)
        if len(self.rows) >= self.SAVE_AT:
            self.save()

    def save(self) -> None:
        if self.rows:
            rows, self.rows = self.rows, []
            with open(f"{self.path}.{os.getpid()}.jsonl", "a", encoding="utf-8") as fh:   # this worker's pid
                fh.writelines(json.dumps(row) + "\n" for row in rows)


class GroupCommitter:
    """One writer task per process. ``submit`` blocks the calling task (not the loop) until committed."""

    def __init__(self, app: Any, socketio: Any, publisher: Publisher, *, window: float, max_batch: int,
                 blocking_wait: float = 0.0, stats_path: str | None = None) -> None:
        self.app = app
        self.blocking_wait = blocking_wait   # see cafe.services.pgwait
        self.socketio = socketio
        self.publisher = publisher
        self.window = window
        self.max_batch = max_batch
        self._queue: Any = None
        self._empty: type[BaseException] = Exception
        self._started = False
        self._stopping = False
        self._stopped: Any = None       # set by the writer task when it has finished
        self.batches = 0
        self.operations = 0
        self._connection: Any = None    # the writer's own database connection, kept between batches
        self._last_used = 0.0
        self.stats = _StageTimes(stats_path) if stats_path else None

    # -- the writers' side ------------------------------------------------------------------------
    def submit(self, op: Operation, timeout: float = 30.0) -> Any:
        if self._stopping:          # nothing would ever take it
            raise ServiceError("storage_unavailable", "Could not save; your phone will try again.", 503)
        self._ensure_started()
        pending = _Pending(op=op, done=self.socketio.server.eio.create_event())
        self._queue.put(pending)
        if not pending.done.wait(timeout):
            raise ServiceError("timeout", "The server is busy; your phone will try again.", 503)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _ensure_started(self) -> None:
        if self._started:
            return
        eio = self.socketio.server.eio
        self._queue = eio.create_queue()
        self._empty = eio.get_queue_empty_exception()
        self._stopped = eio.create_event()
        self._started = True
        self.socketio.start_background_task(self._run)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the writer task after its current batch, and wait (up to ``timeout``) until it has given its
        connection back: whoever disposes of the engine next must not find it still held."""
        self._stopping = True
        if self._started:
            self._queue.put(None)                   # wakes the writer up at once
            self._stopped.wait(timeout)

    # -- the writer's connection ------------------------------------------------------------------
    def _connect(self, engine: Any) -> Any:
        """The writer's own connection. Under load every batch reuses it: taking one from the
        pool would cost a ping (``pool_pre_ping``) and giving it back a rollback, two round trips that the
        whole batch waits for. After a quiet spell it goes back to the pool and a fresh, pinged one is taken,
        so a connection the database dropped meanwhile is never used."""
        if self._connection is not None and (self._connection.invalidated or self._idle()):
            self._release()
        if self._connection is None:
            self._connection = engine.connect()
            dbapi_connection = self._connection.connection.dbapi_connection
            if self._connection.dialect.name == "postgresql":
                # Each statement is planned once, for good, as one using the indexes. The note statement (a
                # CTE: checks, the café's version, the insert) took 1.31 ms planned each time, and 0.43 ms
                # planned once (side by side, 10,000 notes one by one into an empty table, quiet machine).
                # 2 workers, 2,000 phones, 400 notes/s, two pairs of runs: note-to-dashboard p95 12.5 ->
                # 7.8-8.2 ms, PostgreSQL and Redis 45% -> 15-25% of a core. Left to itself, PostgreSQL keeps
                # the plan it would choose while the café's tables are a page or two, a full read of `note`
                # at every note (2 workers, 25 s at 400 notes/s: 4,027 full reads of 18.6 million rows);
                # with sequential reads ruled out the plan uses the indexes, and every statement here looks
                # rows up by key. Only on this connection, and undone before it goes back to the pool:
                # forcing custom plans for every connection made each foreign-key check of a round's 2,000
                # seats slower (+50 ms to their insert).
                self._connection.exec_driver_sql(_PLAN_ONCE)
                self._connection.commit()
            pgwait.install(dbapi_connection, self.blocking_wait)
        self._last_used = time.monotonic()
        return self._connection

    def _idle(self) -> bool:
        return time.monotonic() - self._last_used > IDLE_RECONNECT

    def _release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                pgwait.uninstall(connection.connection.dbapi_connection)
                if connection.dialect.name == "postgresql":
                    connection.rollback()
                    for statement in _PLAN_UNDO:
                        connection.exec_driver_sql(statement)
                    connection.commit()
            except Exception:  # pragma: no cover - a connection already gone
                connection.invalidate()
            try:
                connection.close()
            except Exception:  # pragma: no cover - a broken connection: the pool discards it
                log.warning("closing the writer's connection failed", exc_info=True)

    # -- the writer task --------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._serve()
        finally:
            self._release()
            if self.stats is not None:
                self.stats.save()
            self._stopped.set()

    def _serve(self) -> None:
        while not self._stopping:
            try:
                first = self._queue.get(timeout=0.5)
            except self._empty:
                if self._connection is not None and self._idle():
                    self._release()
                if self.stats is not None:
                    self.stats.save()
                continue
            if first is None:                       # stop() woke us up
                continue
            batch = [first]
            deadline = time.monotonic() + self.window
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except self._empty:
                    if remaining <= 0:
                        break
                    continue
                if item is not None:
                    batch.append(item)
            try:
                self._commit(batch)
            except Exception:  # pragma: no cover - last resort: never let the writer task die
                log.exception("group commit failed")
                for pending in batch:
                    if pending.error is None:
                        pending.error = ServiceError("storage_unavailable", "Could not save; your phone will try again.", 503)
                    pending.done.set()

    @staticmethod
    def _run_bulk(session: Session, batch: list[_Pending]) -> list[_Pending]:
        """Run operations that know how to run many at once (``op.bulk(session, ops, outboxes)`` returning one
        result or ServiceError per op) in one savepoint per kind; return the others, and any whose bulk
        run failed, to be run one by one."""
        groups: dict[Any, list[_Pending]] = {}
        singles: list[_Pending] = []
        for pending in batch:
            bulk = getattr(pending.op, "bulk", None)
            (groups.setdefault(bulk, []) if bulk is not None else singles).append(pending)
        first = True
        for bulk, group in groups.items():
            # A group of one runs this way too: its bulk form takes fewer statements (measured: batches of
            # a single note were most batches at 400 notes/s, and each paid for a savepoint and ten queries).
            # The first group runs straight in the transaction (a savepoint is two more round trips to the
            # database for the whole batch to wait on): if it fails, rolling back loses nothing else.
            savepoint = None if first else session.begin_nested()
            first = False
            try:
                outcomes = bulk(session, [p.op for p in group], [p.outbox for p in group])
                if savepoint is not None:
                    savepoint.commit()
            except Exception:
                if savepoint is not None:
                    savepoint.rollback()
                else:
                    session.rollback()
                log.warning("bulk operation failed; running its %d operations one by one", len(group), exc_info=True)
                for pending in group:
                    pending.outbox = Outbox()
                singles.extend(group)
                continue
            for pending, outcome in zip(group, outcomes):
                if isinstance(outcome, ServiceError):
                    pending.error = outcome
                else:
                    pending.result = outcome
        return singles

    @staticmethod
    def _run_at_once(connection: Any, batch: list[_Pending]) -> tuple[list[_Pending], list[_Pending]]:
        """PostgreSQL: run operations that can write without a transaction (``op.at_once(connection, ops,
        outboxes)``, one result per op, or None to leave the op to the transaction) with the connection in
        autocommit, each statement committing itself. Returns (the ops done so, the others)."""
        groups: dict[Any, list[_Pending]] = {}
        rest: list[_Pending] = []
        for pending in batch:
            at_once = getattr(pending.op, "at_once", None)
            (groups.setdefault(at_once, []) if at_once is not None else rest).append(pending)
        if not groups:
            return [], batch
        done: list[_Pending] = []
        with _autocommit(connection):
            for at_once, group in groups.items():
                try:
                    outcomes = at_once(connection, [p.op for p in group], [p.outbox for p in group])
                    connection.commit()
                except Exception:
                    # e.g. a unique clash with the same note from a second tab on another worker: the statement
                    # wrote nothing, and the transaction's checks answer these operations
                    connection.rollback()
                    log.info("operations of a batch failed outside the transaction; running them inside it",
                             exc_info=True)
                    outcomes = [None] * len(group)
                for pending, outcome in zip(group, outcomes):
                    if outcome is None:
                        pending.outbox = Outbox()
                        rest.append(pending)
                    else:
                        (setattr(pending, "error", outcome) if isinstance(outcome, ServiceError)
                         else setattr(pending, "result", outcome))
                        done.append(pending)
        order = {id(p): n for n, p in enumerate(batch)}
        rest.sort(key=lambda p: order[id(p)])
        return done, rest

    def _commit(self, batch: list[_Pending]) -> None:
        from ..extensions import db

        derived = Outbox()
        self.batches += 1
        self.operations += len(batch)
        began = time.perf_counter()
        with self.app.app_context():
            connection = self._connect(db.engine)
            done: list[_Pending] = []
            rest = batch
            if connection.dialect.name == "postgresql":
                try:
                    done, rest = self._run_at_once(connection, batch)
                except Exception:
                    self._release()
                    raise
            if rest:
                derived = self._transaction(Session(bind=connection), rest)
            derived.extend(self._read_after_commit(connection, done + rest))
        committed = time.perf_counter()
        # The batch's events go out together (across workers: one message): first those written outside the
        # transaction, which committed first, then the transaction's in operation order, then the derived
        # ones, so that versions rise; senders are answered after that.
        combined = Outbox()
        for pending in done + rest:
            if pending.error is None:
                combined.extend(pending.outbox)
        combined.extend(derived)
        try:
            combined.publish(self.publisher)
        except Exception:  # pragma: no cover
            log.exception("publishing after commit failed")
        if self.stats is not None:
            self.stats.add(batch, began, committed, time.perf_counter())
        for pending in batch:
            pending.done.set()

    def _read_after_commit(self, connection: Any, batch: list[_Pending]) -> Outbox:
        """The events that the batch's committed operations asked to be read after the commit (each reader
        once), on PostgreSQL without a transaction (one round trip each). A reader that fails costs its
        events only: the writes have committed, and their writers are answered."""
        readers = {id(r): r for pending in batch if pending.error is None for r in pending.outbox.readers}
        read = Outbox()
        if not readers:
            return read
        with _autocommit(connection), Session(bind=connection) as session:
            for reader in readers.values():
                try:
                    reader(session, read)
                except Exception:
                    session.rollback()
                    log.exception("reading after the commit failed")
        return read

    def _transaction(self, session: Session, batch: list[_Pending]) -> Outbox:
        """Run ``batch`` in one transaction and commit it; return the derived events."""
        derived = Outbox()
        failed = False
        try:
            singles = self._run_bulk(session, batch)
            for pending in singles:
                savepoint = session.begin_nested()
                try:
                    pending.result = pending.op(session, pending.outbox)
                    savepoint.commit()
                except ServiceError as exc:
                    savepoint.rollback()
                    pending.error = exc
                except Exception:
                    savepoint.rollback()
                    log.exception("operation failed in group commit")
                    pending.error = ServiceError("internal", "Something went wrong on the server.", 500)
            builders: dict[Any, Any] = {}
            for pending in batch:
                if pending.error is None:
                    builders.update(pending.outbox.coalesced)
            for builder in builders.values():     # once per batch, e.g. one tally per café
                builder(session, derived)
            try:
                session.commit()
            except Exception:
                failed = True
                log.exception("group commit: commit failed")
                session.rollback()
                for pending in batch:
                    if pending.error is None:
                        pending.error = ServiceError("storage_unavailable",
                                                     "Could not save; your phone will try again.", 503)
                derived = Outbox()
        except BaseException:
            failed = True
            raise
        finally:
            session.close()
            if failed:                            # start the next batch on a fresh connection
                self._release()
        return derived
