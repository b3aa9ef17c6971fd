"""Engine.IO pings from one shared task (cafe.web.transport.SharedPinger), against the real server.

``python wsgi.py`` (eventlet; ``CAFE_FAULT_SERVER=gevent`` tries gevent) with pings every second and a
one-second timeout. Checked: an idle phone stays connected for several ping cycles (a python-socketio
client gives up when it hears nothing for interval + timeout), and a phone that stops answering pings is
taken as gone by the server within a few seconds (its presence is written as disconnected), while a
phone beside it that answers stays connected.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import socketio

from tests.fault_phones import KillableServer, close_dead_websocket, set_up_cafe

pytestmark = pytest.mark.slow


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path) -> Any:
    srv = KillableServer(tmp_path, sqlite_url, extra_env={"PING_INTERVAL": "1", "PING_TIMEOUT": "1"})
    srv.start()
    yield srv
    srv.stop()


def _phone(server: KillableServer, join_code: str, name: str) -> socketio.Client:
    client = socketio.Client(reconnection=False, request_timeout=10)
    client.on("disconnect", lambda reason=None: close_dead_websocket(client, reason))
    client.connect(server.url, transports=["websocket"], wait_timeout=10)
    answer = client.call("participant_join", {"join_code": join_code, "name": name}, timeout=10)
    assert answer["ok"], answer
    return client


def _connected(sqlite_url: str, cafe_id: int) -> dict[str, bool]:
    con = sqlite3.connect(sqlite_url[len("sqlite:///"):], timeout=30)
    try:
        rows = con.execute("SELECT name, connected FROM participant WHERE cafe_id = ?", (cafe_id,)).fetchall()
    finally:
        con.close()
    return {name: bool(flag) for name, flag in rows}


def test_idle_phones_are_pinged_and_silent_ones_dropped(server: KillableServer, sqlite_url: str) -> None:
    cafe = set_up_cafe(sqlite_url)
    steady = _phone(server, cafe["join_code"], "Steady")
    silent = _phone(server, cafe["join_code"], "Silent")
    try:
        assert _connected(sqlite_url, cafe["id"]) == {"Steady": True, "Silent": True}
        # The silent phone stops sending anything (its pongs included) but keeps its connection open.
        silent.eio._send_packet = lambda pkt: None          # type: ignore[method-assign]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _connected(sqlite_url, cafe["id"]).get("Silent"):
            time.sleep(0.2)
        assert _connected(sqlite_url, cafe["id"]) == {"Steady": True, "Silent": False}
        # Six more ping cycles of silence from the server's side would drop the steady phone too: the
        # client gives up after interval + timeout (2 s) without a ping.
        time.sleep(6)
        assert steady.connected
        assert steady.call("participant_join", {"join_code": cafe["join_code"], "name": "Steady again"},
                           timeout=10)["ok"]
    finally:
        steady.disconnect()
        # The server closed the silent one; its client may not have noticed yet (it sends nothing).
        if getattr(silent.eio, "ws", None) is not None:
            silent.eio.ws.shutdown()
        silent.disconnect()
