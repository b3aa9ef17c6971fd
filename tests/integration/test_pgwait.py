"""The note writer's PostgreSQL connection under eventlet and gevent: a quick answer is waited for without
yielding to the event loop, a slow one (a lock, a busy server) holds the loop no longer than the grace and
is then waited for cooperatively, and the connection gives correct answers either way."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, os, sys, time
server, url, grace = sys.argv[1], sys.argv[2], float(sys.argv[3])
if server == "eventlet":
    os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")    # as wsgi.py sets it
    import eventlet
    eventlet.monkey_patch()
    spawn, sleep = eventlet.spawn, eventlet.sleep
else:
    from gevent import monkey
    monkey.patch_all()
    import gevent
    spawn, sleep = gevent.spawn, gevent.sleep
import psycopg
from psycopg import waiting
from cafe.services import pgwait

cooperative = []
psycopg_wait = waiting.wait
def counted(*args, **kwargs):
    cooperative.append(1)
    return psycopg_wait(*args, **kwargs)
waiting.wait = counted

conn = psycopg.connect(url, autocommit=True)
pgwait.install(conn, grace)
ticks, running = [], [True]
def ticker():
    while running[0]:
        ticks.append(time.monotonic())
        sleep(0.001)
spawn(ticker)
sleep(0.02)
quick = [conn.execute("SELECT %s::int", (n,)).fetchone()[0] for n in range(20)]
quick_cooperative = len(cooperative)
started = time.monotonic()
slow = conn.execute("SELECT 7 FROM pg_sleep(0.4)").fetchone()[0]
slow_took = time.monotonic() - started
running[0] = False
gaps = [b - a for a, b in zip(ticks, ticks[1:]) if b >= started] or [slow_took]  # no tick: held throughout
pgwait.uninstall(conn)
after = conn.execute("SELECT 8").fetchone()[0]
print(json.dumps({"quick": quick, "quick_cooperative": quick_cooperative, "slow": slow, "slow_took": slow_took,
                  "longest_gap": max(gaps), "after": after, "slow_cooperative": len(cooperative) - quick_cooperative}))
"""


@pytest.mark.parametrize("server", ["eventlet", "gevent"])
def test_the_writer_connection_waits_briefly_without_yielding_and_never_holds_the_loop_longer(
        server: str, postgres_url: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", SCRIPT, server, postgres_url, "0.05"], capture_output=True,
                         text=True, timeout=60, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["quick"] == list(range(20)) and seen["slow"] == 7 and seen["after"] == 8, seen
    assert seen["quick_cooperative"] == 0, seen        # answered within the grace: the loop was not asked
    assert seen["slow_cooperative"] >= 1, seen         # not within it: waited the cooperative way
    assert seen["slow_took"] >= 0.4, seen
    # the loop went on while PostgreSQL slept 0.4 s: held only for the 0.05 s grace (and a tick's slack)
    assert seen["longest_gap"] < 0.2, seen


def test_a_grace_of_0_or_a_connection_not_of_psycopg_is_left_alone(postgres_url: str) -> None:
    import psycopg

    from cafe.services import pgwait

    class Other:
        pass

    other = Other()
    pgwait.install(other, 0.002)
    assert not hasattr(other, "wait")
    with psycopg.connect(postgres_url) as conn:
        pgwait.install(conn, 0)
        assert "wait" not in vars(conn)
        pgwait.install(conn, 0.002)
        assert "wait" in vars(conn) and conn.execute("SELECT 1").fetchone() == (1,)
        pgwait.uninstall(conn)
        assert "wait" not in vars(conn)
