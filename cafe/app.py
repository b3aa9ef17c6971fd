"""The app factory: bind the extensions, register pages, API and socket handlers."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, request, session
from flask.ctx import RequestContext
from sqlalchemy import event
from werkzeug.exceptions import NotFound

from .config import Config
from .extensions import babel, db, migrate, socketio
from .web.transport import SOCKETIO_PATH

_SESSION = "cafe.session"            # the connection's environ: its cookie session, opened once
_URL_ADAPTER = "cafe.url_adapter"    # and its URL adapter, bound once


def _on_socket(environ: dict[str, Any]) -> bool:
    """Whether ``environ`` is a Socket.IO connection's (whose request context every event pushes again)."""
    return environ.get("PATH_INFO", "").startswith(SOCKETIO_PATH)


class _SocketContext(RequestContext):
    """The request context Flask-SocketIO pushes for every socket event, made once per connection where it can.

    Each event's context is pushed with the environ of the connection's first request, whose cookies and
    host never change while it lasts. Flask would open the cookie session (a signing serializer made anew,
    and a signature check if there is a cookie) and bind a URL adapter for every event; here both are made
    at the connection's first event and kept in its environ. Pushing and popping an event's context, 20,000
    times in a row: 97-123 µs without a cookie and 130-146 µs with one before, 16-18 µs either way after.
    Nothing in a socket handler writes to the session (a websocket cannot set a cookie): a facilitator is
    known from the connection itself (see ``cafe.web.realtime.on_connect``).

    It also does not look up a view for Socket.IO's path. Werkzeug's matcher builds a recursive closure on
    every match (8 objects in a reference cycle), and a failed match keeps a NotFound with its traceback,
    another cycle: either way every event left garbage for the cyclic collector. Measured with 2,000 phones
    on 2 workers (gevent, 400 notes/s for 30 s, with the joins and a round change): the collector found
    140,000 unreachable objects in the two workers before, 10,000 after; young-generation collections went
    from 72 to 52 and their time from 289 to 203 ms. No view serves this path (the Socket.IO middleware
    answers its HTTP requests before Flask does), so the context records a NotFound that was never raised,
    hence has no traceback: were such a request ever dispatched, it would get a 404.
    """

    def __init__(self, app: Flask, environ: dict[str, Any], request: Any = None, session: Any = None) -> None:
        super().__init__(app, environ, request, session if session is not None else environ.get(_SESSION))

    def push(self) -> None:
        super().push()
        self.request.environ[_SESSION] = self._session

    def match_request(self) -> None:
        self.request.routing_exception = NotFound()


class _Flask(Flask):
    def request_context(self, environ: dict[str, Any]) -> RequestContext:
        if _on_socket(environ):
            return _SocketContext(self, environ)
        return super().request_context(environ)

    def create_url_adapter(self, request: Any) -> Any:
        if request is None or not _on_socket(request.environ):
            return super().create_url_adapter(request)
        adapter = request.environ.get(_URL_ADAPTER)
        if adapter is None:
            adapter = request.environ[_URL_ADAPTER] = super().create_url_adapter(request)
        return adapter


def _select_locale() -> str:
    """Phones speak the language their person picked (``?lang=`` or the ``cafe_lang`` cookie, kept only for
    the phone pages); facilitators' views keep their own (session), and both default from the browser."""
    from flask import current_app
    languages = current_app.config["LANGUAGES"]
    if request.path.startswith("/j/") or request.path == "/join":
        choice = request.args.get("lang") or request.cookies.get("cafe_lang")
    else:
        choice = session.get("language")
    if choice in languages:
        return choice
    return request.accept_languages.best_match(languages) or "en"


def _tune_sqlite(engine: Any) -> None:
    """WAL (readers never wait for the writer), a busy timeout, and real transactions (savepoints work)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN")


def create_app(config: Any = None) -> Flask:
    """The app factory: bind the extensions, register pages, API and socket handlers."""
    root = __file__.rsplit("/", 2)[0]
    app = _Flask(__name__, static_folder=f"{root}/static", template_folder=f"{root}/templates",
                 instance_path=None)
    cfg = config if config is not None else Config()
    app.config.from_object(cfg)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = f"{root}/cafe/translations"
    from .languages import available_languages
    app.config["LANGUAGE_LIST"] = available_languages()
    app.config["LANGUAGES"] = [lang["code"] for lang in app.config["LANGUAGE_LIST"]]

    # Socket handlers must be declared before the first init_app: Flask-SocketIO keeps only handlers
    # declared while no server exists and binds them to every server it makes later.
    from .web import realtime

    db.init_app(app)
    migrate.init_app(app, db, directory=f"{root}/migrations", render_as_batch=True)
    babel.init_app(app, locale_selector=_select_locale)
    async_mode = app.config.get("CAFE_SERVER") or "threading"
    from .web.transport import PollingGuard, SafePacket, share_pings, write_on_demand

    queue = app.config.get("MESSAGE_QUEUE")
    managers: dict[str, Any] = {}
    if queue and queue.startswith(("redis://", "rediss://")):
        # Batches of room moves and emits cross between workers as one message each.
        from .web.fanout import FanoutRedisManager
        managers["client_manager"] = FanoutRedisManager(queue, channel=app.config.get("SOCKETIO_CHANNEL", "cafe"))
    elif queue:
        managers = {"message_queue": queue, "channel": app.config.get("SOCKETIO_CHANNEL", "cafe")}
    else:
        from .web.fanout import FanoutManager
        managers["client_manager"] = FanoutManager()
    socketio.init_app(app, async_mode=async_mode, **managers, serializer=SafePacket,
                      max_http_buffer_size=app.config["MAX_HTTP_BUFFER_SIZE"], cors_allowed_origins=[],
                      ping_interval=app.config["PING_INTERVAL"], ping_timeout=app.config["PING_TIMEOUT"],
                      logger=False, engineio_logger=False, manage_session=False)
    share_pings()
    if async_mode == "gevent":
        # The handler task reads its websocket itself: no reader task and no second socket per phone.
        from .web.inline_websocket import install
        install(socketio.server.eio)
    if async_mode in ("eventlet", "gevent"):
        # Under gevent this once made round changes a quarter slower (4,000 sends then); since a round change
        # sends one message per phone, side by side with 2,000 phones it did not (238-271 vs 237-296 ms),
        # and memory went from 52.5 to 42.9 KB per phone.
        write_on_demand()

    # init_app wrapped app.wsgi_app with the Socket.IO middleware: guard in front of it.
    app.wsgi_app = PollingGuard(app.wsgi_app, app.config["MAX_HTTP_BUFFER_SIZE"],  # type: ignore[method-assign]
                                compression=app.config["WEBSOCKET_COMPRESSION"])

    with app.app_context():
        if db.engine.url.get_backend_name() == "sqlite":
            _tune_sqlite(db.engine)

    from .services.batching import GroupCommitter
    from .services.events import SocketIOPublisher

    publisher = SocketIOPublisher(socketio)
    app.extensions["cafe.publisher"] = publisher
    app.extensions["cafe.committer"] = GroupCommitter(app, socketio, publisher,
                                                      window=app.config["NOTE_BATCH_WINDOW"],
                                                      max_batch=app.config["NOTE_BATCH_MAX"],
                                                      blocking_wait=app.config["NOTE_WRITER_BLOCKING_WAIT_MS"] / 1000,
                                                      stats_path=app.config["NOTE_WRITER_STATS"])
    app.extensions.setdefault("cafe.cpu_runner", None)

    from .web import api, pages
    from .cli import register_cli

    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    realtime.register(app)
    register_cli(app)
    pages.install_security_headers(app)
    from .web import assets
    assets.install(app)
    logging.getLogger("cafe").setLevel(logging.INFO)
    return app
