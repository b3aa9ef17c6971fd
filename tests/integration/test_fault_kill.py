"""SIGKILL fault test: the real server (``python wsgi.py``, eventlet) is killed mid-round and started again.

50 simulated phones (python-socketio clients, :mod:`tests.fault_phones`) write notes continuously through
an outbox, as the web phone does. The server is killed with SIGKILL at seeded random moments, and
started again on the same port and database after a short pause. Phones reconnect by themselves, rejoin
with their token and last version, and resend what was waiting. To exercise the resend of a note that
was committed but whose acknowledgement never arrived (rare at a random SIGKILL: the gap between commit
and answer is short), each phone also ignores a seeded 5 % of first acknowledgements, as if its connection
had dropped at that moment; those notes stay waiting and must come back as ``"duplicate": true``.

Checked, on SQLite and PostgreSQL:
- while the server lies dead after each kill, the database holds every note acknowledged so far (nothing
  acknowledged is lost) and nothing that no phone wrote;
- at the end, after every phone has flushed its outbox, the database holds exactly the notes acknowledged
  plus those that were still waiting, once each (no duplicate rows, no duplicate texts), and every
  acknowledgement of a note (first or resent) names the same stored note;
- the round clock survives: ``ends_at`` is the same after a restart when the round was running, and a
  round paused before a kill is still paused after it, with the same time left.
"""
from __future__ import annotations

import sqlite3
import time
from collections import Counter
from pathlib import Path
from random import Random
from typing import Any

import pytest

from tests.fault_phones import Facilitator, KillableServer, Phone, set_up_cafe

PHONES = 50
KILLS = 4
SEED = 20240611
NOTE_INTERVAL = (1.5, 3.5)    # seconds between a phone's notes: ~24 a minute, under the 30/minute limit
UPTIME = (3.0, 7.0)           # seconds the server runs before each kill
DOWNTIME = (0.2, 1.5)         # seconds it stays dead before the restart
DROP_ACKS = 0.05              # share of first acknowledgements a phone "loses", to resend those notes
PAUSED_KILL = 2               # the round is paused before this kill (0-based) and resumed after it


def _deadline_wait(predicate: Any, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def stored_notes(url: str, cafe_id: int) -> list[tuple[int, str, str]]:
    """(participant_id, client_id, text) of every note row, read straight from the database."""
    query = "SELECT participant_id, client_id, text FROM note WHERE cafe_id = {p}"
    if url.startswith("sqlite:///"):
        con = sqlite3.connect(url[len("sqlite:///"):], timeout=30)
        try:
            return [tuple(r) for r in con.execute(query.format(p="?"), (cafe_id,)).fetchall()]
        finally:
            con.close()
    import psycopg
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(query.format(p="%s"), (cafe_id,)).fetchall()]


def stored_clock(url: str, cafe_id: int) -> tuple[Any, ...]:
    query = ("SELECT phase, current_round, round_started_at, round_duration, paused_at, paused_total "
             "FROM cafe WHERE id = {p}")
    if url.startswith("sqlite:///"):
        con = sqlite3.connect(url[len("sqlite:///"):], timeout=30)
        try:
            return tuple(con.execute(query.format(p="?"), (cafe_id,)).fetchone())
        finally:
            con.close()
    import psycopg
    with psycopg.connect(url) as conn:
        row = conn.execute(query.format(p="%s"), (cafe_id,)).fetchone()
        assert row is not None
        return tuple(row)


def _keys(phones: list[Phone], which: str) -> dict[tuple[int, str], str]:
    out: dict[tuple[int, str], str] = {}
    for phone in phones:
        assert phone.participant_id is not None
        notes = phone.acknowledged() if which == "acked" else phone.waiting() if which == "waiting" \
            else dict(phone.written)
        out.update({(phone.participant_id, cid): text for cid, text in notes.items()})
    return out


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_sigkill_mid_round_loses_no_acknowledged_note_and_stores_none_twice(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    began = time.monotonic()
    url: str = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_url")
    rng = Random(SEED)
    cafe = set_up_cafe(url, rounds=3, round_minutes=20, seats_per_table=5, hosts=False)
    server = KillableServer(tmp_path, url)
    phones: list[Phone] = []
    fac: Facilitator | None = None
    kill_checks: list[dict[str, Any]] = []
    clock_problems: list[str] = []
    start_times: list[float] = []
    try:
        start_times.append(server.start())
        phones = [Phone(i, server.url, cafe["join_code"], seed=SEED * 1000 + i, interval=NOTE_INTERVAL,
                        drop_acks=DROP_ACKS)
                  for i in range(PHONES)]
        for phone in phones:
            phone.connect()
            phone.start()
        assert _deadline_wait(lambda: all(p.joined() for p in phones), 30), "not every phone joined"

        fac = Facilitator(server.url, cafe["token"], cafe["id"])
        fac.connect()
        assert fac.command("facilitator_join")["ok"]
        started = fac.command("round_start")
        assert started["ok"], started
        state = started["state"]
        assert state["phase"] == "round" and state["round"] == 1 and not state["paused"]
        ends_at = state["ends_at"]
        valid_ends_at = {round(ends_at, 3)}
        assert _deadline_wait(lambda: all(p.version is not None and p.version >= state["version"] for p in phones), 10)
        for phone in phones:
            phone.writing.set()

        for k in range(KILLS):
            time.sleep(rng.uniform(*UPTIME))
            paused_remaining = None
            if k == PAUSED_KILL:
                paused = fac.command("round_pause")
                assert paused["ok"], paused
                paused_remaining = paused["state"]["remaining"]
                time.sleep(rng.uniform(0.5, 1.5))
            clock_before = stored_clock(url, cafe["id"])
            server.kill()
            # The server is dead: nothing writes the database now. Every acknowledgement a phone holds
            # (even one read late from the socket's buffers) must name a committed note.
            time.sleep(0.2)
            acked = _keys(phones, "acked")
            written = _keys(phones, "written")
            rows = stored_notes(url, cafe["id"])
            stored = {(pid, cid) for pid, cid, _t in rows}
            kill_checks.append({"kill": k + 1, "acked": len(acked), "stored": len(rows),
                                "lost": sorted(set(acked) - stored), "phantom": sorted(stored - set(written)),
                                "in_flight": len(stored - set(acked))})
            clock_after = stored_clock(url, cafe["id"])
            if clock_after != clock_before:
                clock_problems.append(f"kill {k + 1}: persisted clock {clock_before} became {clock_after}")
            time.sleep(rng.uniform(*DOWNTIME))
            start_times.append(server.start())

            state = fac.state_after_reconnect()
            if state["phase"] != "round" or state["round"] != 1:
                clock_problems.append(f"kill {k + 1}: phase {state['phase']} round {state['round']} after restart")
            if paused_remaining is not None:
                if not state["paused"] or abs(state["remaining"] - paused_remaining) > 1e-3:
                    clock_problems.append(f"kill {k + 1}: paused with {paused_remaining:.3f}s left, after the "
                                          f"restart paused={state['paused']} remaining={state['remaining']:.3f}")
                resumed = fac.command("round_resume")
                assert resumed["ok"], resumed
                state = resumed["state"]
                if abs(state["remaining"] - paused_remaining) > 1.0:
                    clock_problems.append(f"kill {k + 1}: resumed with {state['remaining']:.3f}s left, "
                                          f"paused with {paused_remaining:.3f}s")
                ends_at = state["ends_at"]
                valid_ends_at.add(round(ends_at, 3))
            elif state["paused"] or abs(state["ends_at"] - ends_at) > 1e-3:
                clock_problems.append(f"kill {k + 1}: ends_at {ends_at} became {state['ends_at']} "
                                      f"(paused={state['paused']})")

        time.sleep(rng.uniform(*UPTIME))
        for phone in phones:
            phone.writing.clear()
        time.sleep(0.3)    # a phone that was just writing puts that note in its outbox
        acked_at_stop = _keys(phones, "acked")
        waiting_at_stop = _keys(phones, "waiting")
        written = _keys(phones, "written")
        refused = {(p.participant_id, cid): err for p in phones for cid, err in p.refused.items()}

        flushed = _deadline_wait(lambda: all(p.joined() and not p.waiting() for p in phones), 40, 0.2)
        acked = _keys(phones, "acked")
        still_waiting = _keys(phones, "waiting")
        for phone in phones:
            phone.close()
        fac.close()
        fac = None
        server.stop()

        rows = stored_notes(url, cafe["id"])
        stored = {(pid, cid): text for pid, cid, text in rows}
        duplicate_rows = sum(n - 1 for n in Counter((pid, cid) for pid, cid, _t in rows).values() if n > 1)
        duplicate_texts = sum(n - 1 for n in Counter(text for _p, _c, text in rows).values() if n > 1)
        expected = set(acked_at_stop) | set(waiting_at_stop)
        lost = set(acked) - set(stored)
        errors = [e for p in phones for e in p.errors]
        came_back = sum(1 for p in phones if p.joins >= 2)
        phone_clock = [(p.index, e) for p in phones for e, paused in p.ends_at_seen
                       if not paused and round(e, 3) not in valid_ends_at]
        log = server.tail(200_000)
        summary = (f"fault[{backend}]: kills survived {len(kill_checks)}/{KILLS}, notes written {len(written)}, "
                   f"acknowledged {len(acked)} ({len(acked_at_stop)} before the flush), waiting at stop "
                   f"{len(waiting_at_stop)}, found in db {len(rows)}, duplicates {duplicate_rows} rows / "
                   f"{duplicate_texts} texts, lost {len(lost)}, lost at kills "
                   f"{len({key for c in kill_checks for key in c['lost']})}, phantom {len(set(stored) - set(written))}, "
                   f"resends {sum(p.resends for p in phones)}, acks dropped by phones "
                   f"{sum(p.dropped_acks for p in phones)}, duplicate acks "
                   f"{sum(p.duplicate_acks for p in phones)}, rejoins with snapshot "
                   f"{sum(p.snapshots for p in phones)} / up to date {sum(p.up_to_date for p in phones)}, "
                   f"server starts {['%.1fs' % s for s in start_times]}, wall {time.monotonic() - began:.1f}s")
        print("\n" + summary)
        for check in kill_checks:
            print(f"  kill {check['kill']}: acked {check['acked']}, stored {check['stored']} "
                  f"(committed, not acknowledged yet: {check['in_flight']}), lost {len(check['lost'])}, "
                  f"phantom {len(check['phantom'])}")

        assert not errors, errors[:10]
        assert not refused, list(refused.items())[:10]
        assert flushed, f"{len(still_waiting)} notes still waiting after the flush"
        assert len(kill_checks) == KILLS
        for check in kill_checks:
            assert not check["lost"], f"kill {check['kill']}: acknowledged notes missing: {check['lost'][:10]}"
            assert not check["phantom"], f"kill {check['kill']}: notes nobody wrote: {check['phantom'][:10]}"
        assert set(written) == expected | set(refused), "a written note is neither acknowledged nor waiting"
        assert set(stored) == expected, (f"missing {sorted(expected - set(stored))[:10]}, "
                                         f"extra {sorted(set(stored) - expected)[:10]}")
        assert not lost
        dropped, duplicate_acks = sum(p.dropped_acks for p in phones), sum(p.duplicate_acks for p in phones)
        assert 0 < dropped <= duplicate_acks, "every ignored acknowledgement comes back as a duplicate"
        assert duplicate_rows == 0 and duplicate_texts == 0
        assert all(stored[key] == text for key, text in acked.items()), "a stored text differs from the phone's"
        assert came_back == PHONES, "a phone never came back after a kill"
        assert not clock_problems, clock_problems
        assert not phone_clock, f"phones saw another ends_at after a rejoin: {phone_clock[:5]}"
        assert "group commit" not in log and "Traceback" not in log, log[-3000:]
        assert len(written) >= 300, "too few notes to mean anything"
    finally:
        for phone in phones:
            phone.close()
        if fac is not None:
            fac.close()
        server.stop()
