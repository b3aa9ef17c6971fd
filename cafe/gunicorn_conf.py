"""gunicorn settings: ``gunicorn -c python:cafe.gunicorn_conf wsgi:app``.

One eventlet worker by default (``CAFE_SERVER=gevent`` for gevent); ``WEB_CONCURRENCY`` workers need
``MESSAGE_QUEUE`` (Redis) and PostgreSQL. Connections per worker and the open-files limit follow
``CAFE_MAX_CONNECTIONS`` (gunicorn's own default, 1,000, is too few for a large café).
"""
import os

from cafe.serving import freeze_heap, raise_open_files_limit

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

worker_class = os.environ.get("CAFE_SERVER", "eventlet")
if worker_class == "eventlet":
    os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")   # psycopg's C wait is not green
if worker_class == "gevent":
    os.environ.setdefault("GEVENT_TRACK_GREENLET_TREE", "false")  # see wsgi.py
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_connections = int(os.environ.get("CAFE_MAX_CONNECTIONS", "5000"))
bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
graceful_timeout = 10
keepalive = 75


def on_starting(server: object) -> None:
    raise_open_files_limit(worker_connections + 200)


def post_worker_init(worker: object) -> None:
    import wsgi   # the entry point: the only module that touches eventlet/gevent

    wsgi.configure_server(wsgi.app)
    freeze_heap()
