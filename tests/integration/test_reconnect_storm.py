"""Reconnect storm: the venue's Wi-Fi comes back and 300 phones reconnect within seconds.

The real server (``python wsgi.py``, eventlet, as in production) runs as a subprocess. 300 phones speak
the real protocol over websocket with the benchmark's asyncio client (:class:`cafe.bench.load.SioClient`;
a thread per phone, as python-socketio's client uses, would make the test the bottleneck). Each phone
keeps what ``static/js/phone.js`` keeps: the last ``cafe_state``, its seat, its notes by id (replaced by
every snapshot, updated by ``note_*`` events) and the version it last saw (``since_version``).

The café runs round 1 (a third of the phones write a note), then round 2 (hosts stay; a quarter write).

How the Wi-Fi drop is modelled: for the server, a Wi-Fi outage is not a crash (``test_fault_kill.py``
covers SIGKILL and restart): the server keeps running, and its TCP connections to the phones go silent.
It hears nothing until the ping timeout (40 s), or a reset from a phone whose operating system dropped
the connection when the network went. So at the cut:
- half of the phones (even numbers) go *silent*: their old socket stays open but is never read or
  written again, as if the packets were lost in the air; the server keeps those sids, and keeps sending
  events into them;
- the other half (odd numbers) *reset*: their socket is aborted at once, and the server sees it close.
While everyone is away the facilitator extends the round and types in paper notes for table 1. Then
every phone reconnects with a new websocket at a random moment within 3 s, sending ``participant_join``
with its ``rejoin_token`` and ``since_version``; halfway through the storm the facilitator types in
notes for table 2 (a change racing the rejoins). After the storm the silent sockets are finally closed
(the server's late notice of the dead connections, which the ping timeout would give), and one phone
at every table writes a note, which must reach exactly that table's phones.

A second, quieter storm follows: the facilitator pauses the round (so every phone holds the latest
version), all phones drop and rejoin, and the server answers ``up_to_date`` without a snapshot: the
phones keep what they had, which must still be right.

Checked against the database after each storm: every phone's seat (round, table, is_host) is its seat
of the current round; its phase, round and clock are the café's; its notes are exactly those
docs/security.md lets it read (its own, its table's this round, and for a host its table's earlier
rounds); no phone ever received a note of a table it did not sit at; every phone rejoined as the same
participant within a bounded number of attempts; and the facilitator's ``participants_changed`` and
snapshot counts end at 300 joined, 300 connected.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cafe.bench.load import SioClient, SocketError
from tests.fault_phones import KillableServer, set_up_cafe

HOST = "127.0.0.1"
PHONES = int(os.environ.get("CAFE_STORM_PHONES", "300"))
SEED = 20251122
SPREAD = 3.0                  # seconds over which the phones come back
MAX_ATTEMPTS = 6              # connect + rejoin attempts a phone makes before it gives up
ALLOWED_RETRIES = 2           # the test fails if any phone needed more retries than this
TIMEOUT = 30.0                # per connect or answer: generous, the machine is shared with load benchmarks
JOIN_CONCURRENCY = 25


# -- one phone ---------------------------------------------------------------------------------------
@dataclass
class StormPhone:
    index: int
    port: int
    join_code: str
    client: SioClient | None = None
    stale: list[SioClient] = field(default_factory=list)     # silent sockets the server still holds
    token: str | None = None
    participant_id: int | None = None
    version: int | None = None
    state: dict[str, Any] | None = None
    seat: dict[str, Any] | None = None
    notes: dict[int, dict[str, Any]] = field(default_factory=dict)
    received: list[tuple[int, int, int]] = field(default_factory=list)   # (round, table, note id) of note_added
    written: list[int] = field(default_factory=list)                      # ids of the notes it wrote
    joins: int = 0
    snapshots: int = 0
    up_to_date: int = 0
    attempts: list[int] = field(default_factory=list)       # attempts each reconnection took
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    buffer: list[tuple[str, dict[str, Any]]] | None = None   # events that came while a join was answered

    # phone.js: cafe_state -> state (and its version), seat_assigned -> seat (and the state it carries), note_* -> notes
    def on_event(self, name: str, data: Any, _at: float) -> None:
        if not isinstance(data, dict):
            return
        if self.buffer is not None:
            self.buffer.append((name, data))
        self._apply(name, data)

    def _apply(self, name: str, data: dict[str, Any]) -> None:
        if name == "cafe_state":
            self.state = data
            self.version = data.get("version")
        elif name == "seat_assigned":
            if isinstance(data.get("state"), dict):    # a round start: the seat and the new state together
                self.state = data["state"]
                self.version = data.get("version")
            self.seat = data
        elif name == "note_added":
            note = data["note"]
            self.notes[note["id"]] = note
            self.version = data.get("version")
            self.received.append((note["round"], note["table"], note["id"]))
        elif name == "note_updated":
            self.notes[data["note"]["id"]] = data["note"]
        elif name == "note_deleted":
            self.notes.pop(data["note_id"], None)

    async def join(self) -> None:
        """Connect a new websocket and (re)join; phone.js sends since_version only with a state in hand."""
        client = SioClient(HOST, self.port, self.on_event)
        self.client = client
        await client.connect(timeout=TIMEOUT)
        payload: dict[str, Any] = {"join_code": self.join_code, "name": f"Phone {self.index}", "language": "en"}
        if self.token:
            payload["rejoin_token"] = self.token
            if self.version is not None and self.state is not None:
                payload["since_version"] = self.version
        self.buffer = []
        try:
            answer = await client.call("participant_join", payload, TIMEOUT)
        finally:
            buffered, self.buffer = self.buffer, None
        if not answer.get("ok"):
            raise SocketError(f"join refused: {answer.get('error')}")
        pid = answer["participant"]["id"]
        if self.participant_id is not None and pid != self.participant_id:
            self.errors.append(f"came back as participant {pid}, not {self.participant_id}")
        if answer.get("rejoin_token"):
            if self.token is not None:
                self.errors.append("joined as a new participant again")
            self.token = answer["rejoin_token"]
        self.participant_id = pid
        self.joins += 1
        snapshot = answer.get("snapshot")
        if snapshot is None:
            self.up_to_date += 1
        else:
            if self.joins > 1:
                self.snapshots += 1
            self.state = snapshot["state"]
            self.version = snapshot["state"]["version"]
            self.seat = snapshot["seat"]
            self.notes = {n["id"]: n for n in snapshot["notes"]}
            # phone.js replays what arrived during the join and is newer than the snapshot
            for name, data in buffered:
                if (data["version"] > self.version if isinstance(data.get("version"), int)
                        else name == "seat_assigned" and data["round"] > self.state["round"]):
                    self._apply(name, data)

    async def reconnect(self, delay: float) -> None:
        await asyncio.sleep(delay)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                await self.join()
                self.attempts.append(attempt)
                return
            except Exception as exc:  # noqa: BLE001 - counted, then tried again
                self.failures.append(f"{type(exc).__name__}: {str(exc)[:120]}")
                if self.client is not None:
                    await abort(self.client)
                await asyncio.sleep(0.5 * attempt)
        self.attempts.append(MAX_ATTEMPTS + 1)

    async def write(self, text: str) -> dict[str, Any]:
        assert self.client is not None
        answer = await self.client.call("note_add", {"client_id": str(uuid.uuid4()), "text": text}, TIMEOUT)
        if answer.get("ok"):
            self.written.append(answer["note"]["id"])
        else:
            self.errors.append(f"note refused: {answer}")
        return answer

    def cut(self, silent: bool) -> None:
        """The Wi-Fi goes: a silent socket is left open and never read again; a reset one is aborted."""
        client, self.client = self.client, None
        assert client is not None
        if silent:
            if client._task is not None:
                client._task.cancel()                    # never read again (nor answer the server's pings)
            if client.writer is not None:
                client.writer.transport.pause_reading()
            client.closed = True                         # never written again
            self.stale.append(client)
        else:
            drop(client)


def drop(client: SioClient) -> None:
    """Close a socket abruptly (no Socket.IO or websocket goodbye)."""
    if client.writer is not None and not client.writer.is_closing():
        client.writer.transport.abort()
    client._fail(SocketError("dropped"))
    if client._task is not None:
        client._task.cancel()


async def abort(client: SioClient) -> None:
    drop(client)
    if client._task is not None:
        with contextlib.suppress(asyncio.CancelledError, Exception):   # cancelled: it is over
            await client._task


# -- the facilitator ---------------------------------------------------------------------------------
@dataclass
class Dashboard:
    presence: list[dict[str, Any]] = field(default_factory=list)    # participants_changed payloads
    counted_at: int = -1
    notes_seen: set[int] = field(default_factory=set)

    def on_event(self, name: str, data: Any, _at: float) -> None:
        if name == "participants_changed" and isinstance(data, dict):
            # as the dashboard does (static/js/live.js): counts read before the ones it holds are dropped
            if self.presence and data["counted_at"] < self.counted_at:
                return
            self.counted_at = data["counted_at"]
            self.presence.append({"count": data["count"], "connected": data["connected"]})
        elif name == "note_added" and isinstance(data, dict):
            self.notes_seen.add(data["note"]["id"])


# -- the database's truth ------------------------------------------------------------------------------
class Truth:
    """Read the café straight from the database (SQLite or PostgreSQL)."""

    def __init__(self, url: str, cafe_id: int) -> None:
        self.url, self.cafe_id = url, cafe_id

    def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        if self.url.startswith("sqlite:///"):
            con = sqlite3.connect(self.url[len("sqlite:///"):], timeout=30)
            try:
                return [tuple(r) for r in con.execute(query.replace("%s", "?"), params).fetchall()]
            finally:
                con.close()
        import psycopg
        with psycopg.connect(self.url) as conn:
            return [tuple(r) for r in conn.execute(query, params).fetchall()]

    def load(self) -> dict[str, Any]:
        phase, current, version = self.rows("SELECT phase, current_round, version FROM cafe WHERE id = %s",
                                             self.cafe_id)[0]
        seats = {pid: {"round": r, "table": t, "is_host": bool(h)} for pid, r, t, h in self.rows(
            'SELECT participant_id, round, "table", is_host FROM seat WHERE cafe_id = %s AND round = %s',
            self.cafe_id, current)}
        all_seats: dict[int, dict[int, int]] = {}
        for pid, r, t in self.rows('SELECT participant_id, round, "table" FROM seat WHERE cafe_id = %s',
                                   self.cafe_id):
            all_seats.setdefault(pid, {})[r] = t
        notes = self.rows('SELECT id, participant_id, round, "table" FROM note WHERE cafe_id = %s '
                          "AND deleted_at IS NULL AND hidden = %s", self.cafe_id, False)
        people = self.rows("SELECT id, connected, sid FROM participant WHERE cafe_id = %s", self.cafe_id)
        return {"phase": phase, "round": current, "version": version, "seats": seats, "all_seats": all_seats,
                "notes": notes, "people": {pid: (bool(c), s) for pid, c, s in people}}

    @staticmethod
    def visible(truth: dict[str, Any], pid: int) -> set[int]:
        """docs/security.md: own notes, the table's notes this round, and a host's table's earlier rounds."""
        seat = truth["seats"].get(pid)
        out = set()
        for nid, author, rnd, table in truth["notes"]:
            if author == pid or seat is not None and table == seat["table"] and (
                    rnd == truth["round"] or (seat["is_host"] and rnd < truth["round"])):
                out.add(nid)
        return out


def mismatches(phones: list[StormPhone], truth: dict[str, Any], clock: dict[str, Any]) -> list[str]:
    """Every way a phone's state differs from the database (empty: all right)."""
    out: list[str] = []
    for ph in phones:
        pid = ph.participant_id
        assert pid is not None
        tag = f"phone {ph.index} (participant {pid})"
        seat = truth["seats"].get(pid)
        mine = {k: ph.seat.get(k) for k in ("round", "table", "is_host")} if ph.seat else None
        if mine != seat:
            out.append(f"{tag}: seat {mine}, database {seat}")
        state = ph.state or {}
        if (state.get("phase"), state.get("round")) != (truth["phase"], truth["round"]):
            out.append(f"{tag}: phase/round {state.get('phase')}/{state.get('round')}, "
                       f"database {truth['phase']}/{truth['round']}")
        if bool(state.get("paused")) != clock["paused"] or state.get("ends_at") is None or \
                abs(state["ends_at"] - clock["ends_at"]) > (0.5 if not clock["paused"] else 30.0):
            out.append(f"{tag}: clock paused={state.get('paused')} ends_at={state.get('ends_at')}, "
                       f"the café's paused={clock['paused']} ends_at={clock['ends_at']}")
        expected = Truth.visible(truth, pid)
        held = set(ph.notes)
        if held != expected:
            out.append(f"{tag}: notes missing {sorted(expected - held)[:10]}, extra {sorted(held - expected)[:10]}")
        for rnd, table, nid in ph.received:
            if truth["all_seats"].get(pid, {}).get(rnd) != table:
                out.append(f"{tag}: received note {nid} of round {rnd} table {table}, not its table")
        connected, sid = truth["people"][pid]
        if not connected or sid is None:
            out.append(f"{tag}: the database says connected={connected} sid={sid}")
    return out


# -- the scenario --------------------------------------------------------------------------------------
async def storm(url: str, server: KillableServer, cafe: dict[str, Any]) -> dict[str, Any]:
    rng = random.Random(SEED)
    cafe_id = cafe["id"]
    truth = Truth(url, cafe_id)
    phones = [StormPhone(i, server.port, cafe["join_code"]) for i in range(PHONES)]
    dash = Dashboard()
    fac = SioClient(HOST, server.port, dash.on_event)
    figures: dict[str, Any] = {"phones": PHONES}
    marks: dict[str, float] = {}
    began = time.monotonic()

    async def command(event: str, **extra: Any) -> dict[str, Any]:
        answer = await fac.call(event, {"cafe_id": cafe_id} | extra, 60)
        assert answer.get("ok"), (event, answer)
        return answer

    async def settle(check: Any, timeout: float = 20.0) -> list[str]:
        """Poll until no mismatch is left (events still on their way) or the deadline; the last list."""
        deadline = time.monotonic() + timeout
        while True:
            problems = check()
            if not problems or time.monotonic() > deadline:
                return problems
            await asyncio.sleep(0.25)

    def clock_of(state: dict[str, Any]) -> dict[str, Any]:
        return {"paused": bool(state["paused"]), "ends_at": state["ends_at"]}

    async def connected_300(timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and dash.presence[-1:] != [{"count": PHONES, "connected": PHONES}]:
            await asyncio.sleep(0.2)
        return dash.presence[-1] if dash.presence else {}

    try:
        await fac.connect(auth={"token": cafe["token"]}, timeout=TIMEOUT)
        await command("facilitator_join")

        gate = asyncio.Semaphore(JOIN_CONCURRENCY)

        async def first_join(ph: StormPhone) -> None:
            async with gate:
                await ph.join()
        await asyncio.gather(*(first_join(ph) for ph in phones))
        marks["joined"] = time.monotonic() - began

        # Round 1; a third of the phones write a note.
        await command("round_start")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any((ph.seat or {}).get("round") != 1 for ph in phones):
            await asyncio.sleep(0.1)
        writes = [ph.write(f"round 1 note of phone {ph.index}") for ph in phones if ph.index % 3 == 0]
        assert all(a.get("ok") for a in await asyncio.gather(*writes))
        # Round 2: hosts stay at their table; a quarter of the phones write.
        await command("round_end")
        await command("round_start")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any((ph.seat or {}).get("round") != 2 for ph in phones):
            await asyncio.sleep(0.1)
        writes = [ph.write(f"round 2 note of phone {ph.index}") for ph in phones if ph.index % 4 == 1]
        assert all(a.get("ok") for a in await asyncio.gather(*writes))
        await asyncio.sleep(1.0)          # the last note events reach the phones before the cut
        marks["rounds_done"] = time.monotonic() - began

        # -- storm 1: the Wi-Fi goes; changes while everyone is away; everyone back within SPREAD s --
        for ph in phones:
            ph.cut(silent=ph.index % 2 == 0)
        extended = await command("round_extend", seconds=120)
        await command("notes_enter", round=2, table=1, texts=["paper note A, typed in while the Wi-Fi was down"])
        delays = [rng.uniform(0, SPREAD) for _ in phones]
        t0 = time.monotonic()

        async def mid_storm() -> None:
            await asyncio.sleep(SPREAD / 2)
            await command("notes_enter", round=2, table=2, texts=["paper note B, typed in during the storm"])
        await asyncio.gather(mid_storm(), *(ph.reconnect(d) for ph, d in zip(phones, delays)))
        figures["storm_1_s"] = round(time.monotonic() - t0, 2)
        # The server's late notice of the silent sockets (the ping timeout would give it within 40 s).
        for ph in phones:
            for old in ph.stale:
                await abort(old)
            ph.stale.clear()
        # One phone at every table writes: the note must reach exactly that table's phones.
        by_table: dict[int, StormPhone] = {}
        for ph in phones:
            if ph.seat and ph.attempts and ph.attempts[-1] <= MAX_ATTEMPTS:
                by_table.setdefault(ph.seat["table"], ph)
        assert all(a.get("ok") for a in await asyncio.gather(
            *(ph.write(f"after the storm, table {t}") for t, ph in by_table.items())))
        clock = clock_of((await command("facilitator_join"))["snapshot"]["state"])
        assert abs(clock["ends_at"] - extended["state"]["ends_at"]) < 0.5
        left_1 = await settle(lambda: mismatches(phones, truth.load(), clock))
        presence_1 = await connected_300()
        figures["storm_1"] = {"mismatches": len(left_1), "rejoined_with_snapshot": sum(p.snapshots for p in phones),
                              "presence_at_end": presence_1}

        # -- storm 2: nothing changes while away; the answers are "up_to_date" -------------------------
        paused = await command("round_pause")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(ph.version != paused["state"]["version"] for ph in phones):
            await asyncio.sleep(0.1)
        up_before = sum(p.up_to_date for p in phones)
        for ph in phones:
            ph.cut(silent=ph.index % 2 == 1)
        t0 = time.monotonic()
        await asyncio.gather(*(ph.reconnect(rng.uniform(0, SPREAD)) for ph in phones))
        figures["storm_2_s"] = round(time.monotonic() - t0, 2)
        for ph in phones:
            for old in ph.stale:
                await abort(old)
            ph.stale.clear()
        clock = clock_of(paused["state"])
        left_2 = await settle(lambda: mismatches(phones, truth.load(), clock))
        presence_2 = await connected_300()
        snap = (await command("facilitator_join"))["snapshot"]
        figures["storm_2"] = {"mismatches": len(left_2), "up_to_date": sum(p.up_to_date for p in phones) - up_before,
                              "presence_at_end": presence_2}
        attempts = [a for ph in phones for a in ph.attempts]
        figures["reconnections"] = len(attempts)
        figures["retries"] = {"total": sum(a - 1 for a in attempts), "max": max(a - 1 for a in attempts),
                              "phones_that_retried": sum(1 for ph in phones if any(a > 1 for a in ph.attempts))}
        figures["failures"] = sorted({f for ph in phones for f in ph.failures})[:5]
        figures["notes_in_database"] = len(truth.load()["notes"])
        figures["marks_s"] = {k: round(v, 1) for k, v in marks.items()}
        figures["_details"] = {"left_1": left_1[:20], "left_2": left_2[:20],
                               "errors": [f"phone {ph.index}: {e}" for ph in phones for e in ph.errors][:20],
                               "snapshot_counts": snap["state"]["participants"],
                               "snapshot_connected": sum(1 for p in snap["participants"] if p["connected"])}
        return figures
    finally:
        await asyncio.gather(*(abort(c) for ph in phones for c in ([ph.client] if ph.client else []) + ph.stale),
                             return_exceptions=True)
        await fac.close()
        await asyncio.sleep(0.2)            # let the transports finish closing


def run_storm(url: str, tmp_path: Path) -> None:
    began = time.monotonic()
    cafe = set_up_cafe(url, rounds=3, round_minutes=20, seats_per_table=5, hosts=True)
    server = KillableServer(tmp_path, url)
    try:
        server.start()
        figures = asyncio.run(storm(url, server, cafe))
        assert server.proc is not None and server.proc.poll() is None, "the server died"
    finally:
        server.stop()
    figures["wall_s"] = round(time.monotonic() - began, 1)
    details = figures.pop("_details")
    print("reconnect storm:", json.dumps(figures))
    log = server.tail(200_000)
    assert "Traceback" not in log, log[-5000:]
    assert not details["errors"], details["errors"]
    assert figures["storm_1"]["mismatches"] == 0, details["left_1"]
    assert figures["storm_2"]["mismatches"] == 0, details["left_2"]
    assert figures["reconnections"] == 2 * PHONES
    assert figures["retries"]["max"] <= ALLOWED_RETRIES, figures
    assert figures["storm_1"]["rejoined_with_snapshot"] == PHONES, figures
    assert figures["storm_2"]["up_to_date"] == PHONES, figures
    for storm_no in ("storm_1", "storm_2"):
        assert figures[storm_no]["presence_at_end"] == {"count": PHONES, "connected": PHONES}, figures
    assert {k: details["snapshot_counts"][k] for k in ("count", "connected")} == {"count": PHONES,
                                                                                  "connected": PHONES}, details
    assert details["snapshot_connected"] == PHONES, details


@pytest.mark.slow
def test_reconnect_storm_every_phone_gets_its_seat_phase_and_notes_back(sqlite_url: str, tmp_path: Path) -> None:
    run_storm(sqlite_url, tmp_path)


@pytest.mark.slow
@pytest.mark.postgres
def test_reconnect_storm_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    run_storm(postgres_url, tmp_path)
