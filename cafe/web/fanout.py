"""Many room moves and emits applied as one batch, and sent between worker processes as one message.

With several workers, python-socketio's Redis manager publishes one message per emit and one per room
change of a connection held by another worker. A round change for 2,000 phones (a seat for each, a
room move for each) was thousands of round trips to Redis, one after another. :class:`FanoutRedisManager`
sends a whole published batch (moves, emits, disconnects, in order) as one message; each worker applies
it to the connections it holds itself, so the work is also shared between the workers' cores.
:class:`FanoutManager` is the same for one worker. Either way :func:`emit_locally` writes each packet
with the values its emits share (the café's state in each of a round's seats) encoded once: for 2,000
seats 19 ms instead of 49 ms through ``Manager.emit`` (side by side in one process, median of 15 runs).

When the message queue is lost (Redis restarts, or cannot be reached), what the workers publish meanwhile
never reaches the others' pages, and a page cannot tell. So once a worker can listen again, or publish
again after a publish was lost, the pages concerned are sent ``resync``: they ask for a whole snapshot.
Publishing is on the note writer's path (senders are answered after their batch's events are out), so a
publish may never wait long: it gives up after ``PUBLISH_TIMEOUT``, and after a failure the worker stops
publishing (its events reach its own pages only) until a probe in the background gets a publish through.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import logging
import socket
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

import socketio
from engineio import packet as eio_packet
from socketio.manager import Manager
from socketio.redis_manager import parse_redis_sentinel_url

log = logging.getLogger(__name__)

METHOD = "cafe_fanout"
_MARKER = METHOD.encode()
RESYNC = "resync"           # the event that tells a page to ask for a whole snapshot (docs/protocol.md)
LISTEN_RETRY_MAX = 5.0      # seconds between attempts to listen or publish again (python-socketio's own: up to 60)
PUBLISH_TIMEOUT = 1.0       # seconds a publish, or the connection it needs, may take (redis-py 8's default: 5 s,
                            # and python-socketio tried twice: 10 s for one publish to a silent Redis, measured)
LISTEN_CONNECT_TIMEOUT = 2.0
PROBE_FIRST = 0.5           # seconds from a failed publish to the first attempt to publish again
# A connection to a Redis that has gone silent (a dropped network, a frozen host) is closed by the kernel:
# keepalive probes after 5 s of quiet, 3 unanswered ones 2 s apart; data unacknowledged for 10 s.
_TCP_OPTIONS = {"TCP_KEEPIDLE": 5, "TCP_KEEPINTVL": 2, "TCP_KEEPCNT": 3, "TCP_USER_TIMEOUT": 10_000}

Move = tuple[str, Sequence[str], Sequence[str]]
Emit = tuple[str, Any, "str | Sequence[str]"]


_SCALARS = (str, int, float, bool, type(None))


def pack_emits(emits: Sequence[Emit]) -> tuple[list[Any], list[Any]]:
    """The emits for the message, with every value that several of them share (the same object under a
    key of their data: the café's state in each of a round's 2,000 seats) written once. Returns (shared
    values, emits as ``[event, data, to]`` or ``[event, data without those keys, to, {key: index}]``).
    Measured for a round of 2,000 seats: 1.43 MB of JSON and 47 ms to write and read it, against 0.37 MB.

    A run of emits alike (the same event to one room each, the same keys, the same shared values, the
    rest plain values: a round's seats) is written as columns, ``{"e": event, "k": keys, "r": {key:
    index}, "t": rooms, "v": columns}``, a column that holds one value throughout as ``{"=": value}``:
    a round of 2,000 seats is then its rooms and tables, not 2,000 copies of the same keys and values."""
    uses: dict[int, int] = {}
    for _event, data, _to in emits:
        if isinstance(data, dict):
            for value in data.values():
                if isinstance(value, (dict, list)):
                    uses[id(value)] = uses.get(id(value), 0) + 1
    shared: list[Any] = []
    index: dict[int, int] = {}
    packed: list[Any] = []
    run: list[list[Any]] = []          # [event, data without shared values, to, refs], all alike
    run_kind: tuple[Any, ...] = ()     # what the emits of the run have in common: event, keys, refs

    def flush() -> None:
        if len(run) > 1:
            keys = list(run[0][1])
            columns: list[Any] = []
            for key in keys:
                values = [item[1][key] for item in run]
                first = values[0]
                same = all(type(v) is type(first) and v == first for v in values)
                columns.append({"=": first} if same else values)
            packed.append({"e": run[0][0], "k": keys, "r": run[0][3], "t": [item[2] for item in run],
                           "v": columns})
        else:
            packed.extend(item if item[3] else item[:3] for item in run)
        run.clear()

    for event, data, to in emits:
        refs: dict[str, int] = {}
        if isinstance(data, dict):
            for key, value in data.items():
                if isinstance(value, (dict, list)) and uses[id(value)] > 1:
                    if id(value) not in index:
                        index[id(value)] = len(shared)
                        shared.append(value)
                    refs[key] = index[id(value)]
            rest = {k: v for k, v in data.items() if k not in refs} if refs else data
        else:
            rest = data
        item = [event, rest, to, refs]
        alike = (isinstance(to, str) and isinstance(rest, dict) and all(isinstance(k, str) for k in rest)
                 and all(isinstance(v, _SCALARS) for v in rest.values()))
        kind = (event, tuple(rest), tuple(refs.items())) if alike else ()
        if run and kind != run_kind:
            flush()
        if alike:
            run.append(item)
            run_kind = kind
        else:
            packed.append(item if refs else item[:3])
    flush()
    return shared, packed


def unpack_emits(shared: Sequence[Any], packed: Sequence[Any]) -> list[Emit]:
    """The emits :func:`pack_emits` packed (a shared value is one object again, used by each)."""
    emits: list[Emit] = []
    for item in packed:
        if isinstance(item, dict):          # a run of emits alike, in columns
            refs = {key: shared[i] for key, i in item["r"].items()}
            keys, columns = item["k"], item["v"]
            for n, to in enumerate(item["t"]):
                data = {key: column["="] if isinstance(column, dict) else column[n]
                        for key, column in zip(keys, columns)}
                emits.append((item["e"], {**data, **refs} if refs else data, to))
            continue
        event, data, to = item[0], item[1], item[2]
        if len(item) > 3 and item[3]:
            data = {**data, **{key: shared[i] for key, i in item[3].items()}}
        emits.append((event, data, to))
    return emits


class _Encoder:
    """Socket.IO event packets for a batch of emits, each value shared by several of them encoded once.

    A round change emits 2,000 seats that each carry the same café state (about 60 values): through
    ``Manager.emit`` each one is walked for binary data and encoded whole. Here the state is encoded once
    and spliced into each seat's packet. Data this cannot write as JSON (binary data, keys that are not
    strings, a tuple of arguments) returns None: such an emit goes through ``Manager.emit`` instead."""

    def __init__(self, json_module: Any) -> None:
        if json_module is json:          # one encoder for the batch (json.dumps with separators makes one a call)
            self.dumps: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":")).encode
        else:
            self.dumps = lambda value: json_module.dumps(value, separators=(",", ":"))
        self.shared: dict[int, str] = {}
        self.names: dict[str, str] = {}

    def name(self, text: str) -> str:
        encoded = self.names.get(text)
        if encoded is None:
            encoded = self.names[text] = self.dumps(text)
        return encoded

    def packet(self, event: str, data: Any, namespace: str) -> str | None:
        head = f"2[{self.name(event)}" if namespace == "/" else f"2{namespace},[{self.name(event)}"
        try:
            if data is None:
                return head + "]"
            if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
                return None if isinstance(data, tuple) else f"{head},{self.dumps(data)}]"
            scalars = {}
            parts = []
            for key, value in data.items():
                if isinstance(value, (dict, list)):
                    text = self.shared.get(id(value))
                    if text is None:
                        text = self.shared[id(value)] = self.dumps(value)
                    parts.append(f"{self.name(key)}:{text}")
                else:
                    scalars[key] = value
            if scalars:
                parts.insert(0, self.dumps(scalars)[1:-1])
            return f"{head},{{{','.join(parts)}}}]"
        except (TypeError, ValueError):
            return None


def emit_locally(manager: Manager, emits: Iterable[Emit], namespace: str = "/") -> None:
    """Send each emit to the connections of its room(s) that this process holds, as ``Manager.emit`` would
    (someone in two target rooms gets it once), with values shared between the emits encoded once."""
    rooms = manager.rooms.get(namespace)
    if not rooms:
        return
    encoder = _Encoder(manager.server.packet_class.json)
    send = manager.server._send_eio_packet
    for event, data, to in emits:
        targets = [to] if to is None or isinstance(to, str) else list(to)     # None: everyone, as in Manager.emit
        here = [room for room in targets if room in rooms]
        if not here:      # a room with nobody on this worker: not even encoded (half the seats of a round)
            continue
        room = here if len(here) > 1 else here[0]
        text = encoder.packet(event, data, namespace)
        if text is None:
            Manager.emit(manager, event, data, namespace, room=room)
            continue
        eio_pkt = eio_packet.Packet(eio_packet.MESSAGE, text)
        for _sid, eio_sid in manager.get_participants(namespace, room):
            send(eio_sid, eio_pkt)


def holds(manager: Manager, sid: str, namespace: str = "/") -> bool:
    """Whether this process holds the connection ``sid`` (each connection lives in one worker)."""
    return manager.is_connected(sid, namespace) or manager.is_pre_connected(sid, namespace)


def apply_locally(manager: Manager, moves: Iterable[Move], emits: Iterable[Emit], disconnects: Iterable[str],
                  namespace: str = "/") -> None:
    """Apply a batch to the connections this process holds (others' sids are skipped)."""
    for sid, leave, enter in moves:
        if holds(manager, sid, namespace):
            for room in leave:
                Manager.leave_room(manager, sid, namespace, room)
            for room in enter:
                Manager.enter_room(manager, sid, namespace, room)
    emit_locally(manager, emits, namespace)
    for sid in disconnects:
        if holds(manager, sid, namespace):
            manager.server.disconnect(sid, namespace=namespace, ignore_queue=True)


class FanoutManager(Manager):
    """The in-process manager (one worker), with the same :meth:`fanout` as :class:`FanoutRedisManager`."""

    def fanout(self, moves: Sequence[Move], emits: Sequence[Emit], disconnects: Sequence[str]) -> None:
        apply_locally(self, moves, emits, disconnects)

    def prepare_fanout(self, moves: Sequence[Move], emits: Sequence[Emit],
                       disconnects: Sequence[str]) -> Callable[[], None]:
        return lambda: apply_locally(self, moves, emits, disconnects)


def resync_locally(manager: Manager, namespace: str = "/") -> None:
    """Tell every page this process holds that it may have missed events: it asks for a whole snapshot."""
    log.warning("the message queue was lost: telling this worker's pages to resync")
    emit_locally(manager, [(RESYNC, {"reason": "message_queue"}, None)], namespace)


def _timed_out(exc: BaseException) -> bool:
    """A timeout (redis-py's own TimeoutError, or the socket's), as opposed to a refusal or an error answer."""
    return isinstance(exc, TimeoutError) or type(exc).__name__ == "TimeoutError"


class FanoutRedisManager(socketio.RedisManager):  # type: ignore[misc]
    """The Redis manager, plus :meth:`fanout`: one published message for a whole batch, and ``resync`` for
    the pages after the queue was lost (see the module's docstring). Publishing and listening have a Redis
    client each: the publishing one gives up after ``PUBLISH_TIMEOUT``, the listening one waits for
    messages as long as it takes; neither retries by itself (the loops here decide when to try again)."""

    _paused = False      # a publish failed: publishes are skipped until one of ours gets through

    def _client(self, **options: Any) -> Any:
        """A Redis client for the queue's URL, with ``options`` and ours (the URL's and the deployment's
        ``redis_options`` win)."""
        module = self._get_redis_module()
        retry = importlib.import_module(f"{module.__name__}.retry")
        backoff = importlib.import_module(f"{module.__name__}.backoff")
        tcp = {getattr(socket, name): value for name, value in _TCP_OPTIONS.items() if hasattr(socket, name)}
        kwargs = {"retry": retry.Retry(backoff.NoBackoff(), 0), "socket_keepalive": True,
                  "socket_keepalive_options": tcp, **options, **self.redis_options}
        if self.redis_url.split(":", 1)[0] in ("redis+sentinel", "valkey+sentinel"):
            sentinels, service_name, url_kwargs = parse_redis_sentinel_url(self.redis_url)
            return module.sentinel.Sentinel(sentinels, **{**kwargs, **url_kwargs}).master_for(
                service_name or self.channel)
        return module.Redis.from_url(self.redis_url, **kwargs)

    def _redis_connect(self) -> None:
        """A new publishing client, in place of the one that failed (the listener makes its own)."""
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.close()
        self.redis = self._client(socket_timeout=PUBLISH_TIMEOUT, socket_connect_timeout=PUBLISH_TIMEOUT)
        self.connected = True

    def _send(self, message: str) -> tuple[Any, Any]:
        """Send the PUBLISH on a connection of the publishing client; return (its pool, the connection), the
        answer not yet read (see :meth:`_answer`)."""
        if not self.connected:
            self._redis_connect()
        pool = self.redis.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_command("PUBLISH", self.channel, message)
        except BaseException:
            pool.release(connection)        # redis-py has closed its socket already
            raise
        return pool, connection

    def _sent(self, message: str) -> tuple[Any, Exception | None]:
        """(what :meth:`_send` returned, None), or (None, why it could not be sent). A send that
        failed at once (a connection that died when Redis restarted) is tried once more on a fresh connection;
        a timeout is not."""
        error: Exception | None = None
        for _attempt in (1, 2):
            try:
                return self._send(message), None
            except Exception as exc:
                self.connected = False
                error = exc
                if _timed_out(exc):
                    break
        return None, error

    def _answer(self, sent: tuple[Any, Any]) -> tuple[Any, Exception | None]:
        """(Redis's answer to the PUBLISH that :meth:`_send` sent: how many listened, None), or (None, the
        error); the connection goes back to its pool either way."""
        pool, connection = sent
        try:
            return connection.read_response(), None
        except Exception as exc:
            self.connected = False
            return None, exc
        finally:
            pool.release(connection)

    def _publish(self, data: Any, meanwhile: Callable[[], None] | None = None) -> Any:
        """Publish ``data`` (or, as a string, the message already written out); ``meanwhile`` (the batch
        applied to this worker's own pages) runs once, after the message is sent and before Redis's answer is
        read, so that neither those pages nor the writer wait for Redis.

        After a failure nothing is published (the event reaches this worker's pages only) until :meth:`_probe`
        gets a publish through; then the other workers' pages resync. A message whose answer did not come may
        have been published: it is not sent again."""
        sent, error = (None, None) if self._paused else self._sent(data if isinstance(data, str)
                                                                  else self.json.dumps(data))
        answer = None
        try:
            if meanwhile is not None:
                meanwhile()
        finally:
            if sent is not None:
                answer, error = self._answer(sent)
            if error is not None:
                self._pause(error)
        return answer

    def _pause(self, error: Exception) -> None:
        if not self._paused:
            self._paused = True
            log.warning("cannot publish to the message queue (%s: %s): this worker's events reach its own pages "
                        "only, until a publish gets through again", type(error).__name__, error)
            self.server.start_background_task(self._probe)

    def _publish_again(self) -> bool:
        """Publish ``resync`` for the other workers' pages; once that gets through, publish again."""
        sent, error = self._sent(self.json.dumps({"method": METHOD, "host_id": self.host_id, "resync": True}))
        if sent is not None:
            _listened, error = self._answer(sent)
        if error is not None:
            log.debug("the message queue still takes no publish: %s", error)
            return False
        if self._paused:
            self._paused = False
            log.warning("the message queue takes this worker's publishes again: the other workers' pages resync")
        return True

    def _probe(self) -> None:
        """While publishing is paused, try again after 0.5, 1, 2, 4, then every 5 s (the listener also tries
        as soon as it listens again: what is published before that try is lost, and needs a resync)."""
        wait = PROBE_FIRST
        while self._paused:
            self.server.sleep(wait)
            if self._paused and not self._publish_again():
                wait = min(wait * 2, LISTEN_RETRY_MAX)

    def _redis_listen_with_retries(self) -> Iterator[Any]:
        """python-socketio's listening loop (connect, subscribe, listen; after an error wait and start again),
        on a client of its own, with two changes: once it listens again after losing the queue, the pages
        this worker holds resync; and it tries again at least every LISTEN_RETRY_MAX seconds, not up to a
        minute, so that a café gets its wall back soon after Redis does."""
        retry_sleep = 1.0
        lost = False
        while True:
            try:
                self.pubsub = self._client(socket_connect_timeout=LISTEN_CONNECT_TIMEOUT,
                                           socket_timeout=None).pubsub(ignore_subscribe_messages=True)
                self.pubsub.subscribe(self.channel)
                retry_sleep = 1.0
                if lost:
                    lost = False
                    resync_locally(self)
                if self._paused:       # Redis answers again: publish now, not at the probe's next try
                    self._publish_again()
                yield from self.pubsub.listen()
            except Exception as exc:
                lost = True
                self._get_logger().error(f"Cannot receive from redis... retrying in {retry_sleep:g} secs",
                                         extra={"redis_exception": str(exc)})
                with contextlib.suppress(Exception):     # None if the first connection failed
                    self.pubsub.close()
                time.sleep(retry_sleep)
                retry_sleep = min(retry_sleep * 2, LISTEN_RETRY_MAX)

    def fanout(self, moves: Sequence[Move], emits: Sequence[Emit], disconnects: Sequence[str]) -> None:
        self.prepare_fanout(moves, emits, disconnects)()

    def prepare_fanout(self, moves: Sequence[Move], emits: Sequence[Emit],
                       disconnects: Sequence[str]) -> Callable[[], None]:
        """The batch's message to the other workers, packed and written out now; the returned function sends
        it and applies the batch to this worker's own connections. Sent first, so the other workers apply it
        while this one applies it to its own connections (and Redis answers meanwhile). A connection lives in
        one worker: the moves and disconnects of this one's are not sent."""
        shared, packed = pack_emits(emits)
        message = self.json.dumps({"method": METHOD, "host_id": self.host_id,
                                   "moves": [list(m) for m in moves if not holds(self, m[0])], "shared": shared,
                                   "emits": packed,
                                   "disconnects": [sid for sid in disconnects if not holds(self, sid)]})
        return lambda: self._publish(message, meanwhile=lambda: apply_locally(self, moves, emits, disconnects))

    def _listen(self) -> Any:
        # The library's listener ignores methods it does not know, so ours are taken out of the stream
        # here; everything else goes on to it unchanged. A look at the head avoids parsing twice.
        for message in super()._listen():
            head = message[:40] if isinstance(message, (bytes, str)) else b""
            if (_MARKER if isinstance(head, bytes) else METHOD) not in head:
                yield message
                continue
            try:
                data = self.json.loads(message)
                if data.get("method") != METHOD:                 # ours only by a coincidence of text
                    yield message
                elif data.get("host_id") == self.host_id:        # this worker applied its own already
                    continue
                elif data.get("resync"):
                    resync_locally(self)
                else:
                    apply_locally(self, [tuple(m) for m in data.get("moves", [])],
                                  unpack_emits(data.get("shared", []), data.get("emits", [])),
                                  data.get("disconnects", []))
            except Exception:
                log.exception("could not apply a fan-out message")
