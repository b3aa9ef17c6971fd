"""The note writer's PostgreSQL connection waits for each answer briefly without yielding to the event loop.

Under eventlet or gevent, psycopg waits for the database by handing control to the event loop, and gets it
back only once the loop has served everything else that was ready: under load, milliseconds for an answer
PostgreSQL gives in well under one. The note writer is a single task, and every note of its batch waits for
it. So on the writer's own connection each wait first blocks for real (the unpatched ``select``) for up to
``grace`` seconds, and only if the answer is not there by then (a lock wait, a slow server) waits the usual
cooperative way. The loop is held at most ``grace`` per round trip, and a slow answer never holds it longer.

Off by default (``NOTE_WRITER_BLOCKING_WAIT_MS`` = 0). It paid while the note statement was planned at every
batch: side by side (2 workers, PostgreSQL + Redis, 1,000 phones at 200 notes/s, eventlet, three pairs),
note-to-dashboard p95 10.8 / 11.6 / 16.5 ms without, 7.5 / 9.6 / 10.7 ms with a grace of 2 ms. Once the
writer planned each statement once (see ``cafe.services.batching``), the answer comes sooner than the loop
would be held for, and holding the loop delays the notes that the other worker relays: 2 workers, 2,000 phones
at 400 notes/s, twelve pairs over two sessions (both servers), p95 lower without the grace in eleven (this
session's eight: 8.1 / 7.5 / 9.6 / 10.2 / 22.2 / 8.8 / 8.0 / 12.5 ms without, 11.0 / 8.1 / 13.8 / 11.0 / 9.7 /
11.1 / 10.7 / 17.3 ms with 2 ms; p99 lower in seven of those eight).

This relies on psycopg 3's ``Connection.wait(gen, interval, timeout)`` and its wait generators, which
``psycopg.waiting`` documents for alternative wait functions; anything else is left alone.
"""
from __future__ import annotations

import math
import select
import sys
import time
from typing import Any, Callable

try:
    from psycopg import waiting
    from psycopg.waiting import Ready, Wait
except ImportError:  # pragma: no cover - psycopg is a dependency
    waiting = None


def _unpatched_poll() -> Callable[[], Any]:
    """``select.poll`` as it was before eventlet or gevent patched the module (neither is imported here).
    ``poll``, not ``select``: a server holding thousands of phones has descriptors beyond select's 1,024."""
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None and patcher.is_monkey_patched("select"):
        return patcher.original("select").poll
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("select"):
        return monkey.get_original("select", "poll")
    return select.poll


def _resume(gen: Any, state: Any) -> Any:
    """A generator that yields ``state`` first, then continues ``gen``: how the cooperative wait takes over."""
    ready = yield state
    while True:
        try:
            state = gen.send(ready)
        except StopIteration as done:
            return done.value
        ready = yield state


def install(dbapi_connection: Any, grace: float) -> None:
    """Make ``dbapi_connection`` (psycopg 3) wait up to ``grace`` seconds per answer without yielding. Any
    other connection, or a grace of 0, is left as it is."""
    if waiting is None or grace <= 0 or not hasattr(dbapi_connection, "pgconn"):
        return
    make_poll = _unpatched_poll()

    def wait(gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        fileno = dbapi_connection.pgconn.socket
        deadline = time.monotonic() + grace
        try:
            state = next(gen)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                poll = make_poll()
                poll.register(fileno, (select.POLLIN if state & Wait.R else 0)
                              | (select.POLLOUT if state & Wait.W else 0))
                events = poll.poll(max(1, math.ceil(left * 1000)))
                if not events:
                    break
                mask = events[0][1]
                ready = Ready.NONE
                if mask & (select.POLLIN | select.POLLERR | select.POLLHUP):
                    ready |= Ready.R
                if mask & (select.POLLOUT | select.POLLERR | select.POLLHUP):
                    ready |= Ready.W
                state = gen.send(ready)
        except StopIteration as done:
            return done.value
        return waiting.wait(_resume(gen, state), fileno, interval=interval, timeout=timeout)

    dbapi_connection.wait = wait


def uninstall(dbapi_connection: Any) -> None:
    """Back to psycopg's own wait (before the connection goes back to the pool)."""
    try:
        del dbapi_connection.wait
    except AttributeError:
        pass
