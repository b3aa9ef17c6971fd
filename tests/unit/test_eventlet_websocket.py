"""cafe.web.eventlet_websocket: eventlet's own websocket, given ``send_nowait`` and ``flush``, over a real
socket pair whose reader is slow. Run in a subprocess, under eventlet's hub (the test suite itself runs in
threading mode and never imports eventlet)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r'''
import json, struct
import eventlet
from eventlet.green import socket
from eventlet import websocket
from cafe.web import eventlet_websocket, transport

assert eventlet_websocket.install(websocket.RFC6455WebSocket)
server, phone = socket.socketpair()
server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
phone.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
ws = websocket.RFC6455WebSocket(server, {}, version=13)

outcomes, sent = [], []
n = 0
while not outcomes or outcomes[-1] == transport.SENT:      # until the socket is full
    text = f"{n}:" + "x" * 3000
    outcomes.append(ws.send_nowait(text))
    if outcomes[-1] != transport.NOT_SENT:
        sent.append(text)
    n += 1
refused = ws.send_nowait("refused while the end of a frame waits")

def more():
    ws.flush()                    # the writer task's first step: the kept end, waiting for room
    for m in range(n, n + 5):     # then the rest, waiting for room as the phone reads
        text = f"{m}:" + "y" * 3000
        ws.send(text)
        sent.append(text)

writer = eventlet.spawn(more)
expected = len(sent) + 5
buf, texts = b"", []
while len(texts) < expected:
    with eventlet.Timeout(5):
        data = phone.recv(65536)
    assert data
    buf += data
    while len(buf) >= 2:
        length, start = buf[1] & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                break
            length, start = struct.unpack("!H", buf[2:4])[0], 4
        elif length == 127:
            length, start = struct.unpack("!Q", buf[2:10])[0], 10
        if len(buf) < start + length:
            break
        assert buf[0] == 0x81, buf[:2]                      # one whole, final text frame each
        texts.append(buf[start:start + length].decode())
        buf = buf[start + length:]
writer.wait()
print(json.dumps({"outcomes": outcomes, "refused": refused, "in_order": texts == sent, "count": len(texts)}))
'''


def test_eventlet_websocket_writes_without_waiting_and_keeps_frames_whole() -> None:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, env=dict(os.environ, PYTHONPATH=str(root)),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    import json

    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["outcomes"][0] == "sent" and result["outcomes"][-1] == "partly sent"
    assert result["refused"] == "not sent"
    assert result["in_order"] and result["count"] >= 7


def test_the_eventlet_entry_point_installs_it(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root), CAFE_SERVER="eventlet", DATABASE_URL=f"sqlite:///{tmp_path}/c.db",
               CAFE_INSTANCE_DIR=str(tmp_path / "instance"))
    code = ("import wsgi; wsgi.configure_server(wsgi.app); from eventlet import websocket; "
            "print(websocket.RFC6455WebSocket.send_nowait.__module__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "cafe.web.eventlet_websocket"
