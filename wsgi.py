"""Entry point: ``python wsgi.py`` serves the app; in production
``gunicorn -c python:cafe.gunicorn_conf wsgi:app`` (see README).

This is the only module that imports eventlet (or gevent, with ``CAFE_SERVER=gevent``): the package itself
runs under either, and the test suite runs it in threading mode.
"""
import os

# Clustering runs numpy linear algebra off the event loop; BLAS threads fighting over 2 cores made it
# several times slower under load (measured), so one thread each.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

SERVER = os.environ.get("CAFE_SERVER", "eventlet")
_SERVING = __name__ == "__main__"
if SERVER == "gevent":
    # gevent records every greenlet's spawning stack (up to 10 frame records): with writers started per
    # message, thousands of records a second for the cyclic collector to walk, and never read here.
    os.environ.setdefault("GEVENT_TRACK_GREENLET_TREE", "false")
if SERVER == "eventlet":
    # psycopg's C wait blocks the whole eventlet hub during a query; this one yields (measured: the hub ran
    # 0 ticks during a 300 ms query with the default, 282 with this).
    os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

if _SERVING and SERVER == "eventlet":
    import eventlet

    eventlet.monkey_patch()
elif _SERVING and SERVER == "gevent":
    from gevent import monkey

    monkey.patch_all()

import sys  # noqa: E402

from cafe import create_app  # noqa: E402
from cafe.config import Config  # noqa: E402
from cafe.extensions import socketio  # noqa: E402
from cafe.serving import freeze_heap, raise_open_files_limit  # noqa: E402

_config = Config()
if not _SERVING and "gunicorn" not in sys.modules:
    _config.CAFE_SERVER = "threading"     # the `flask` command (migrations, accounts) serves no sockets
app = create_app(_config)


def _cpu_runner():
    """Seating plans are CPU work: run them in a real thread so the event loop keeps serving."""
    if SERVER == "eventlet":
        from eventlet import tpool

        return tpool.execute
    if SERVER == "gevent":
        import gevent

        return lambda fn, *a, **kw: gevent.get_hub().threadpool.apply(fn, a, kw)
    return None


def configure_server(application) -> None:
    """What a serving process needs beyond the app: CPU work off the event loop, and under eventlet a
    websocket that the task sending a message can write without waiting (see cafe.web.transport)."""
    application.extensions["cafe.cpu_runner"] = _cpu_runner()
    if SERVER == "eventlet":
        from eventlet import websocket

        from cafe.web.eventlet_websocket import install

        install(websocket.RFC6455WebSocket)


# Every connection's HTTP handler keeps its read and write buffers for as long as the connection lives,
# and a phone's websocket lives all café long, though once upgraded it reads and writes the socket itself.
# eventlet's are 8 KiB and 16 KiB: with 1 KiB each, 2,000 connected phones took 8.5 KB less each (67.0 ->
# 58.6 and 67.4 -> 58.3 KB per phone, side by side). Requests and responses larger than the buffer are read
# and written in more pieces or directly, which for this app's pages and small API bodies costs nothing
# measurable.
CONNECTION_BUFFER = 1024


def listen(host: str, port: int, backlog: int):
    """The listening socket, with the server's socket module (green once patched). Every connection it
    accepts inherits TCP_NODELAY: without it a phone's answer to its note (a few bytes, written just after
    the note's broadcast to the phone's own table) was held back until the phone acknowledged the broadcast,
    and phones delay that by up to 40 ms. 2 workers, 2,000 phones, 400 notes/s, side by side: note answer
    p95 46.9 -> 11.0 ms. gunicorn sets it on its listeners too."""
    import socket

    family, _type, _proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(address)
    sock.listen(backlog)
    return sock


def _serve_eventlet(host: str, port: int, backlog: int, max_connections: int, log_output: bool) -> None:
    """What ``socketio.run`` does under eventlet, on our listening socket (see ``listen``) with a backlog for a
    crowd: ``eventlet.listen`` keeps 50 connections waiting to be accepted; when hundreds of phones connected
    at once the rest were dropped and their phones tried again a second later (2,000 phones: connect p99
    1.27 s, 0.40 s with a backlog of 1,024). And with small per-connection buffers (see ``CONNECTION_BUFFER``)."""
    import eventlet.wsgi

    class Protocol(eventlet.wsgi.HttpProtocol):
        rbufsize = CONNECTION_BUFFER
        wbufsize = CONNECTION_BUFFER

    eventlet.wsgi.server(listen(host, port, backlog), app, log_output=log_output, max_size=max_connections,
                         protocol=Protocol)


def _serve_gevent(host: str, port: int, backlog: int, log_output: bool) -> None:
    """What ``socketio.run`` does under gevent, on our listening socket (see ``listen``)."""
    from gevent import pywsgi

    pywsgi.WSGIServer(listen(host, port, backlog), app, handler_class=_gevent_handler(),
                      log="default" if log_output else None).serve_forever()


def _gevent_handler():
    """gevent's WSGI handler with a small read buffer per connection (see ``CONNECTION_BUFFER``; it has no
    write buffer)."""
    from gevent import pywsgi

    class Handler(pywsgi.WSGIHandler):
        def __init__(self, sock, address, server, rfile=None):
            super().__init__(sock, address, server,
                             rfile if rfile is not None else sock.makefile("rb", CONNECTION_BUFFER))

    return Handler


if __name__ == "__main__":
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "5000"))
    max_connections = int(os.environ.get("CAFE_MAX_CONNECTIONS", "5000"))
    raise_open_files_limit(max_connections + 200)
    configure_server(app)
    freeze_heap()
    # Connections waiting to be accepted (the kernel caps it at net.core.somaxconn); gunicorn's default too.
    backlog = int(os.environ.get("CAFE_LISTEN_BACKLOG", "2048"))
    log_output = os.environ.get("CAFE_ACCESS_LOG") == "1"
    print(f"cafe: serving on http://{host}:{port} ({SERVER})", flush=True)
    if SERVER == "eventlet":
        _serve_eventlet(host, port, backlog, max_connections, log_output)
    elif SERVER == "gevent":
        _serve_gevent(host, port, backlog, log_output)
    else:
        socketio.run(app, host=host, port=port, log_output=log_output, allow_unsafe_werkzeug=True)
