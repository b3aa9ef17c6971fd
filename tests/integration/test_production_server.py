"""The documented production command serves the app: gunicorn with cafe.gunicorn_conf (eventlet)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, upgrade_database


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_gunicorn_with_the_shipped_config_serves_pages_and_sockets(tmp_path: Path) -> None:
    import socketio

    url = f"sqlite:///{tmp_path / 'prod.db'}"
    upgrade_database(url)
    port = _free_port()
    env = os.environ | {"DATABASE_URL": url, "PORT": str(port), "CAFE_INSTANCE_DIR": str(tmp_path),
                        "SECRET_KEY": "prod-test", "CAFE_MAX_CONNECTIONS": "3000", "PYTHONWARNINGS": "ignore"}
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "python:cafe.gunicorn_conf", "wsgi:app"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json() == {"ok": True}:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            assert proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        page = requests.get(f"http://127.0.0.1:{port}/j/ABC234", headers={"Accept-Encoding": "gzip"}, timeout=5)
        assert page.status_code == 200 and page.headers.get("Content-Encoding") == "gzip"
        client = socketio.Client(reconnection=False)
        client.connect(f"http://127.0.0.1:{port}", transports=["websocket"], wait_timeout=10)
        answer = client.call("participant_join", {"join_code": "ZZZZZZ"}, timeout=10)
        assert answer["ok"] is False and answer["error"]["code"] == "unknown_code"
        client.disconnect()
        text = log.read_text()
        assert "Using worker: eventlet" in text and "Traceback" not in text
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("server", ["eventlet", "gevent"])
def test_the_start_command_keeps_a_crowd_of_connections_waiting_to_be_accepted(tmp_path: Path, sqlite_url: str,
                                                                               server: str) -> None:
    """``python wsgi.py`` (``make run``) listens with a backlog of ``CAFE_LISTEN_BACKLOG`` (2,048, as gunicorn;
    the kernel caps it at net.core.somaxconn). eventlet's own default, 50, dropped connections when hundreds
    of phones connected at once, and each dropped phone waited a second to try again."""
    import shutil

    from tests.fault_phones import KillableServer

    if shutil.which("ss") is None:
        pytest.skip("the ss command (iproute2) is not installed: cannot read the listen backlog")
    live = KillableServer(tmp_path, sqlite_url, {"CAFE_SERVER": server})
    live.start()
    try:
        listening = subprocess.run(["ss", "-Hltn", f"sport = :{live.port}"], capture_output=True, text=True,
                                   check=True).stdout.split()
        backlog = int(listening[2])          # State Recv-Q Send-Q …: a listening socket's Send-Q is its backlog
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
        assert backlog == min(2048, somaxconn), listening
        assert requests.get(live.url + "/healthz", timeout=10).status_code == 200
    finally:
        live.stop()


@pytest.mark.parametrize("server", ["eventlet", "gevent"])
def test_the_start_command_sends_small_answers_without_waiting_for_the_phone(tmp_path: Path, server: str) -> None:
    """Every connection ``python wsgi.py`` accepts has TCP_NODELAY (from its listening socket, under the
    server's own patched sockets): a phone's answer to its note, written just after the note's broadcast to
    its table, is not held back until the phone acknowledges the broadcast (up to 40 ms)."""
    patch = "import eventlet; eventlet.monkey_patch()" if server == "eventlet" else \
        "from gevent import monkey; monkey.patch_all()"
    code = (f"{patch}\n"
            "import socket, wsgi\n"
            "listener = wsgi.listen('127.0.0.1', 0, 16)\n"
            "client = socket.create_connection(listener.getsockname()[:2])\n"
            "accepted, _ = listener.accept()\n"
            "print(type(accepted).__module__, accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))\n")
    env = os.environ | {"PYTHONPATH": str(ROOT), "CAFE_SERVER": server, "PYTHONWARNINGS": "ignore",
                        "DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}", "CAFE_INSTANCE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    module, nodelay = out.stdout.split()[-2:]
    assert module.startswith(server), module            # the server's green socket, not the blocking one
    assert int(nodelay) != 0
