"""Group commit: many small writes, one transaction, each writer answered after its commit.

A socket handler must never stall the server's event loop on a commit per note. Writers submit an
*operation* (a function of the session and an outbox) and wait; one background task takes everything
queued, runs the operations of a kind that can run in bulk (new notes) together, each other one
inside its own savepoint, commits once, publishes the events, and only then wakes each writer with its
result. So "acknowledged" always means "committed", and one bad operation never spoils the others in
its batch: a bulk run that fails is rolled back and its operations run again one by one.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from sqlalchemy.orm import Session

from .errors import ServiceError
from .events import Outbox, Publisher

log = logging.getLogger(__name__)

Operation = Callable[[Session, Outbox], Any]


@dataclass
class _Pending:
    op: Operation
    done: Any                       # an Event of the server's async mode
    result: Any = None
    error: ServiceError | None = None
    outbox: Outbox = field(default_factory=Outbox)


class GroupCommitter:
    """One writer task per process. ``submit`` blocks the calling task (not the loop) until committed."""

    def __init__(self, app: Any, socketio: Any, publisher: Publisher, *, window: float, max_batch: int) -> None:
        self.app = app
        self.socketio = socketio
        self.publisher = publisher
        self.window = window
        self.max_batch = max_batch
        self._queue: Any = None
        self._empty: type[BaseException] = Exception
        self._started = False
        self._stopping = False
        self.batches = 0
        self.operations = 0

    # -- the writers' side ------------------------------------------------------------------------
    def submit(self, op: Operation, timeout: float = 30.0) -> Any:
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
        self._started = True
        self.socketio.start_background_task(self._run)

    def stop(self) -> None:
        self._stopping = True

    # -- the writer task --------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping:
            try:
                first = self._queue.get(timeout=0.5)
            except self._empty:
                continue
            batch = [first]
            deadline = time.monotonic() + self.window
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    batch.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
                except self._empty:
                    if remaining <= 0:
                        break
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

    def _commit(self, batch: list[_Pending]) -> None:
        from ..extensions import db

        derived = Outbox()
        with self.app.app_context():
            session = db.session
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
                    log.exception("group commit: commit failed")
                    session.rollback()
                    for pending in batch:
                        if pending.error is None:
                            pending.error = ServiceError("storage_unavailable",
                                                         "Could not save; your phone will try again.", 503)
                    derived = Outbox()
                self.batches += 1
                self.operations += len(batch)
            finally:
                db.session.remove()
        # The whole batch's events go out together (across workers: one message), in operation order,
        # then the derived ones; senders are answered after that.
        combined = Outbox()
        for pending in batch:
            if pending.error is None:
                combined.extend(pending.outbox)
        combined.extend(derived)
        try:
            combined.publish(self.publisher)
        except Exception:  # pragma: no cover
            log.exception("publishing after commit failed")
        for pending in batch:
            pending.done.set()
