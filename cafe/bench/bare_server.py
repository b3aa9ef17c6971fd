"""A bare Flask-SocketIO broadcast server: the baseline the load benchmark compares the app with.

It speaks the same event names as the app (``participant_join``, ``facilitator_join``, ``note_add``,
``round_start``, ``round_end``) with the same answers' shape, so the load generator drives both alike,
but it keeps everything in memory: no database, no validation beyond the minimum, no rate limits, no
presence broadcasts. Phones join a room per table; a note is acknowledged and broadcast to its table's
room and to the dashboard room. A phone that comes back with its rejoin token gets its place again (and
its table's room, during a round). What the app spends beyond this is the app's own cost. Like the app (see
``cafe.web.transport.COMPRESSION_HEADER``), it declines the websocket compression the phones offer, so
that both are measured doing the same work on the wire.

Run: ``CAFE_SERVER=eventlet|gevent PORT=... [MESSAGE_QUEUE=redis://...] python -m cafe.bench.bare_server``.
With several processes on one message queue, each process seats only its own phones (the load
generator sends ``round_start`` to every process); table rooms are prefixed with the port so they never mix,
while the café and dashboard rooms are shared.
"""
import os

SERVER = os.environ.get("CAFE_SERVER", "eventlet")
_SERVING = __name__ == "__main__"

if _SERVING and SERVER == "eventlet":
    import eventlet

    eventlet.monkey_patch()
elif _SERVING and SERVER == "gevent":
    from gevent import monkey

    monkey.patch_all()

import itertools  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from flask import Flask, request  # noqa: E402
from flask_socketio import SocketIO, emit, join_room  # noqa: E402

from cafe.web.transport import COMPRESSION_HEADER  # noqa: E402

SEATS_PER_TABLE = int(os.environ.get("BARE_SEATS_PER_TABLE", "5"))
PREFIX = os.environ.get("PORT", "0")


def create(async_mode: str, message_queue: str | None) -> tuple[Flask, SocketIO]:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = "bare"
    sio = SocketIO(app, async_mode=async_mode, message_queue=message_queue,
                   channel=os.environ.get("SOCKETIO_CHANNEL", "flask-socketio"), ping_interval=20, ping_timeout=20,
                   max_http_buffer_size=64 * 1024, cors_allowed_origins=[], logger=False, engineio_logger=False)
    ids = itertools.count(1)
    note_ids = itertools.count(1)
    phones: dict[str, dict[str, Any]] = {}       # sid -> {"id", "table"} in join order (connected phones)
    people: dict[str, dict[str, Any]] = {}       # rejoin token -> the same dict, kept when a phone drops
    notes_by_client: dict[str, dict[str, Any]] = {}
    state = {"phase": "lobby", "round": 0, "version": 0}

    cafe_room = "cafe"               # shared by every process (through the message queue)
    dash_room = "dashboard"

    def table_room(round_no: int, table: int) -> str:
        return f"{PREFIX}:r{round_no}:t{table}"

    def cafe_state() -> dict[str, Any]:
        state["version"] += 1
        now = time.time()
        return {"cafe_id": 1, "phase": state["phase"], "round": state["round"], "rounds": 3,
                "question": "What would make our neighbourhood healthier?", "ends_at": now + 1800,
                "remaining": 1800.0, "duration": 1800.0, "paused": False, "time_up": False, "server_time": now,
                "version": state["version"], "participants": {"count": len(phones), "connected": len(phones)},
                "tables": max(1, -(-len(phones) // SEATS_PER_TABLE))}

    @app.get("/healthz")
    def healthz() -> Any:
        return {"ok": True}

    @sio.on("connect")
    def on_connect(auth: Any = None) -> bool:
        return True

    @sio.on("disconnect")
    def on_disconnect(*_args: Any) -> None:
        phones.pop(request.sid, None)  # type: ignore[attr-defined]

    @sio.on("participant_join")
    def participant_join(data: Any) -> dict[str, Any]:
        sid = request.sid  # type: ignore[attr-defined]
        token = data.get("rejoin_token") if isinstance(data, dict) else None
        phone = people.get(token) if isinstance(token, str) else None
        rejoined = phone is not None
        if phone is None:                      # a newcomer
            pid = int(PREFIX) * 1_000_000 + next(ids)
            token = f"t{pid}".ljust(43, "x")
            phone = people[token] = {"id": pid, "table": None}
        phones[sid] = phone
        join_room(cafe_room)
        join_room(f"participant:{phone['id']}")
        seat = None
        if phone["table"] is not None and state["phase"] == "round":     # back at the table it had
            join_room(table_room(state["round"], phone["table"]))
            seat = {"round": state["round"], "table": phone["table"], "is_host": False}
        answer = {"ok": True, "participant": {"id": phone["id"], "name": f"Guest {phone['id']}",
                                              "number": phone["id"], "language": "en", "cafe_id": 1},
                  "rejoined": rejoined, "up_to_date": False,
                  "snapshot": {"state": cafe_state(), "seat": seat, "notes": []}}
        if not rejoined:
            answer["rejoin_token"] = token
        return answer

    @sio.on("facilitator_join")
    def facilitator_join(data: Any) -> dict[str, Any]:
        join_room(dash_room)
        return {"ok": True, "cafe_id": 1, "snapshot": {"state": cafe_state(), "notes": []}, "up_to_date": False,
                "version": state["version"]}

    @sio.on("note_add")
    def note_add(data: Any) -> dict[str, Any]:
        phone = phones.get(request.sid)  # type: ignore[attr-defined]
        if phone is None or not isinstance(data, dict):
            return {"ok": False, "error": {"code": "not_joined", "message": "Join first."}}
        if phone["table"] is None or state["phase"] != "round":
            return {"ok": False, "error": {"code": "wrong_phase", "message": "No round."}}
        client_id = str(data.get("client_id"))
        existing = notes_by_client.get(client_id)
        if existing is not None:
            return {"ok": True, "duplicate": True, "note": existing | {"mine": True}}
        now = time.time()
        state["version"] += 1
        note = {"id": next(note_ids), "client_id": client_id, "round": state["round"], "table": phone["table"],
                "text": str(data.get("text", ""))[:280], "lang": data.get("lang") or "en", "created_at": now,
                "updated_at": now, "version": state["version"]}
        notes_by_client[client_id] = note
        emit("note_added", {"note": note, "version": note["version"]},
             to=[table_room(state["round"], phone["table"]), dash_room])
        return {"ok": True, "duplicate": False, "note": note | {"mine": True}}

    @sio.on("round_start")
    def round_start(data: Any) -> dict[str, Any]:
        old_round = state["round"]
        state["round"] += 1
        state["phase"] = "round"
        sids = list(phones)
        tables = max(1, -(-len(sids) // SEATS_PER_TABLE))
        server = sio.server
        for index, sid in enumerate(sids):
            phone = phones[sid]
            # A simple rotation: everyone moves by their index in the table, so tables mix.
            table = (index + (index % SEATS_PER_TABLE) * (state["round"] - 1)) % tables + 1
            if phone["table"] is not None:
                server.leave_room(sid, table_room(old_round, phone["table"]))
            server.enter_room(sid, table_room(state["round"], table))
            phone["table"] = table
            sio.emit("seat_assigned", {"cafe_id": 1, "round": state["round"], "table": table, "is_host": False,
                                       "tables": tables}, to=f"participant:{phone['id']}")
        current = cafe_state()
        sio.emit("cafe_state", current, to=[cafe_room, dash_room])
        return {"ok": True, "state": current, "repeats": 0, "lower_bound": 0, "warnings": []}

    @sio.on("round_end")
    def round_end(data: Any) -> dict[str, Any]:
        state["phase"] = "break"
        current = cafe_state()
        sio.emit("cafe_state", current, to=[cafe_room, dash_room])
        return {"ok": True, "state": current}

    inner = app.wsgi_app

    def no_compression(environ: dict[str, Any], start_response: Any) -> Any:
        environ.pop(COMPRESSION_HEADER, None)
        return inner(environ, start_response)

    app.wsgi_app = no_compression  # type: ignore[method-assign]
    return app, sio


if __name__ == "__main__":
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "5000"))
    max_connections = int(os.environ.get("CAFE_MAX_CONNECTIONS", "5000"))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max_connections + 200 if hard == resource.RLIM_INFINITY else min(max_connections + 200, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    application, socketio = create(SERVER, os.environ.get("MESSAGE_QUEUE") or None)
    kwargs: dict[str, Any] = {"max_size": max_connections} if SERVER == "eventlet" else {}
    print(f"bare: serving on http://{host}:{port} ({SERVER})", flush=True)
    socketio.run(application, host=host, port=port, log_output=False, **kwargs)
