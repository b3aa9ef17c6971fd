"""What handlers need from the app: the clock, the publisher, the committer, limiters, the caller."""
from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Iterator

from flask import current_app, request, session

from ..domain.ratelimit import SlidingWindowLimiter
from ..services import accounts
from ..services.batching import GroupCommitter
from ..services.errors import ServiceError
from ..services.events import Publisher


def now() -> float:
    return time.time()


def publisher() -> Publisher:
    return current_app.extensions["cafe.publisher"]


def committer() -> GroupCommitter:
    return current_app.extensions["cafe.committer"]


def cpu_runner() -> Any:
    runner = current_app.extensions.get("cafe.cpu_runner")
    return runner or (lambda fn, *a, **kw: fn(*a, **kw))


def in_background(fn: Any, *args: Any, **kwargs: Any) -> None:
    """Run ``fn`` after the answer, as a task of the server (with the app, without the request); a failure
    is logged, never raised into the server."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def task() -> None:
        with app.app_context():
            try:
                fn(*args, **kwargs)
            except Exception:  # noqa: BLE001 - a background task must not die loudly
                app.logger.exception("background task %s failed", getattr(fn, "__name__", fn))

    app.extensions["socketio"].start_background_task(task)


def spawner() -> Any:
    """Start ``fn`` as a task of the server and let it run until it first waits (for the database, say), so
    that the caller's next steps overlap that wait; returns the task (``join()`` waits for it to end)."""
    socketio = current_app.extensions["socketio"]

    def spawn(fn: Any) -> Any:
        task = socketio.start_background_task(fn)
        socketio.sleep(0)
        return task
    return spawn


def limiter(name: str, limit: int, window: float) -> SlidingWindowLimiter:
    """A per-process limiter by name (created on first use)."""
    key = f"cafe.limiter.{name}"
    if key not in current_app.extensions:
        current_app.extensions[key] = SlidingWindowLimiter(limit, window)
    return current_app.extensions[key]


@contextlib.contextmanager
def join_slot() -> Iterator[None]:
    """Hold one of the process's ``JOIN_CONCURRENCY`` join slots while a join runs.

    A crowd scanning the QR code at once sends hundreds of joins together; on PostgreSQL each one yields
    to the others at every query, they all queue for the café's row and the connection pool, and a few
    phones waited 5-10 s (2,000 phones, 1 worker: join p99 5.1-8.4 s; with 16 slots 0.53-0.75 s, and all
    of them in as soon). Waiters go in about the order they came; one still waiting after
    ``JOIN_WAIT_SECONDS`` is answered ``busy`` (nothing was done, so the phone can simply ask again).
    The semaphore is made on first use, after the server has patched ``threading`` to its own kind."""
    gate = current_app.extensions.get("cafe.join_gate")
    if gate is None:
        gate = current_app.extensions.setdefault(
            "cafe.join_gate", threading.BoundedSemaphore(current_app.config["JOIN_CONCURRENCY"]))
    if not gate.acquire(timeout=current_app.config["JOIN_WAIT_SECONDS"]):
        raise ServiceError("busy", "The server is busy; your phone will try again.", 503)
    try:
        yield
    finally:
        gate.release()


def client_address() -> str:
    """The caller's address, for rate limits only (never stored). Behind a proxy, set TRUST_PROXY=1."""
    if current_app.config.get("TRUST_PROXY") and request.headers.get("X-Forwarded-For"):
        return request.headers["X-Forwarded-For"].split(",")[0].strip()
    return request.remote_addr or "?"


def session_facilitator_id() -> int | None:
    fid = session.get("facilitator_id")
    return fid if isinstance(fid, int) else None


def bearer_facilitator_id() -> int | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        fac = accounts.facilitator_for_token(header[7:].strip())
        return fac.id if fac else None
    return None


def grace() -> float:
    return float(current_app.config["PRESENCE_GRACE_SECONDS"])


def join_url(code: str) -> str:
    base = current_app.config.get("PUBLIC_URL") or request.host_url.rstrip("/")
    return f"{base.rstrip('/')}/j/{code}"
