"""asyncio client for scopecast, the real-time pub/sub server (wire protocol v1).

For backend consumers and scripts. One dependency: ``websockets`` (>= 10.4).

    import asyncio, scopecast

    async def main() -> None:
        async with scopecast.connect("ws://127.0.0.1:8080/ws") as client:
            sub = await client.subscribe("room:lobby")
            seq = await client.emit("room:lobby", {"title": "hi"}, paths=["title"])
            async for item in sub:
                if isinstance(item, scopecast.Event):
                    print(item.seq, item.data)
                elif isinstance(item, scopecast.Dropped):
                    ...  # events were lost: refetch your data

    asyncio.run(main())

The client keeps one WebSocket open. When it is lost (network, server
restart) the client reconnects with exponential backoff and full jitter,
subscribes again to every scope (same meta/echo/presence) and tells each
subscription with a :class:`Resubscribed` item. On servers that keep a
scope's history (``--history``) it subscribes again with ``since`` (the last
seq and epoch it saw): when the server still has everything that was
missed, ``Resubscribed.recovered`` is True and the missed events follow as
ordinary :class:`Event` items, with no gap; and a ``dropped`` notice is
answered the same way on the open connection, so the loss is repaired
instead of reported. A token that the server
refuses (close 4401) ends the client: every waiting call raises
:class:`AuthError`. A callable token is called before every connection
attempt and again ``refresh_before`` seconds before the token's ``exp``; the
new token goes to the server with the ``refresh`` op on the same connection.

Iterating a :class:`Subscription` yields, in arrival order, :class:`Event`,
:class:`Join`, :class:`Leave`, :class:`Update`, :class:`Dropped`,
:class:`Resubscribed` and finally :class:`Closed` (the iteration then ends). Each subscription buffers
at most ``max_queue`` events/joins/leaves that the application has not read
yet; beyond that, they are dropped here and reported as ``Dropped(local=True)``
before the next item, exactly as the server reports its own drops
(``Dropped(local=False)``). Presence (``sub.presence``, ``sub.users``) is kept
current as messages arrive, whether or not the application reads them.

See docs/PROTOCOL.md in the scopecast repository for the protocol.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import dataclasses
import itertools
import json
import logging
import random
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Generator
from typing import Any, Final, Literal, TypeAlias

import websockets
import websockets.exceptions

__all__ = [
    "PROTOCOL", "OMIT", "connect", "Client", "Subscription", "Welcome", "User",
    "Event", "Join", "Leave", "Update", "Dropped", "Resubscribed", "Closed", "Item",
    "ScopecastError", "RequestError", "AuthError", "DisconnectedError",
    "RequestTimeout", "MessageTooLarge", "ClientClosed",
    "backoff_delay", "group_by_user", "token_exp",
]
__version__ = "0.1.0"

PROTOCOL: Final = "scopecast.v1"
CLOSE_UNAUTHORIZED: Final = 4401

log = logging.getLogger("scopecast")

Conn: TypeAlias = dict[str, Any]
"""A protocol `conn` object: {"session", "user", "at", "meta"}."""
TokenSource: TypeAlias = str | Callable[[], str | Awaitable[str]] | None
State: TypeAlias = Literal["idle", "connecting", "open", "reconnecting", "closed"]


class _Omit:
    def __repr__(self) -> str:
        return "OMIT"


OMIT: Final = _Omit()
"""Default of ``emit(data=...)``: send the event without ``data``."""


# ---------------------------------------------------------------------------
# Errors

class ScopecastError(Exception):
    """Base class. ``code`` is the protocol's error code for server errors
    (``bad_request``, ``unauthorized``, ``forbidden``, ``limit``,
    ``not_found``) or a local one: ``timeout``, ``disconnected``,
    ``too_large``, ``closed``."""

    def __init__(self, code: str, message: str = "", *, op: str | None = None,
                 scope: str | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.op = op
        self.scope = scope


class RequestError(ScopecastError):
    """The server answered a request with ``error`` (code and message as sent)."""


class AuthError(ScopecastError):
    """The server refused the token (``unauthorized``, close 4401). The client
    is closed for good; ``close_code`` is 4401 when the close was received."""

    def __init__(self, message: str = "token refused", *, close_code: int | None = None) -> None:
        super().__init__("unauthorized", message)
        self.close_code = close_code


class DisconnectedError(ScopecastError):
    """The connection was lost with the request on the wire (it is not sent
    again: an emit may or may not have happened), or no connection could be
    made (``connect``)."""

    def __init__(self, message: str = "connection lost", **kw: Any) -> None:
        super().__init__("disconnected", message, **kw)


class RequestTimeout(ScopecastError, TimeoutError):
    """No reply within the timeout."""

    def __init__(self, message: str, **kw: Any) -> None:
        super().__init__("timeout", message, **kw)


class MessageTooLarge(ScopecastError, ValueError):
    """The request is bigger than the server's ``maxmessage``; it was not sent."""

    def __init__(self, size: int, limit: int, **kw: Any) -> None:
        super().__init__("too_large", f"request of {size} bytes exceeds the server's limit of {limit}", **kw)
        self.size = size
        self.limit = limit


class ClientClosed(ScopecastError):
    """The client was closed by the application."""

    def __init__(self, message: str = "client is closed", **kw: Any) -> None:
        super().__init__("closed", message, **kw)


# ---------------------------------------------------------------------------
# Values

@dataclasses.dataclass(frozen=True, slots=True)
class Welcome:
    """The server's ``welcome``. ``maxmessage`` is None on servers that do not send it."""
    session: str
    user: str | None
    version: int
    heartbeat: int | None
    maxsize: int | None
    maxmessage: int | None
    raw: dict[str, Any]


@dataclasses.dataclass(slots=True)
class User:
    """One person in a scope: all connections of one user id (an anonymous
    connection is a user of its own, ``user`` None). ``self`` is True when
    one of them is this client's connection."""
    user: str | None
    connections: list[Conn]
    self: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """An ``event`` push. ``has_data`` is False when the event carried no
    ``data`` (``data`` is then None). ``gap`` counts the seqs skipped since the
    previous seq this subscription saw (normal: audience, origin filtering;
    loss is announced by :class:`Dropped`). ``reset`` is True when the seq went
    down: the scope was reset on the server."""
    scope: str
    seq: int
    paths: list[str]
    origin: str | None
    data: Any
    has_data: bool
    gap: int
    reset: bool
    op: Literal["event"] = "event"


@dataclasses.dataclass(frozen=True, slots=True)
class Join:
    """Another connection subscribed; ``first``: the user's first connection here."""
    scope: str
    conn: Conn
    first: bool
    op: Literal["join"] = "join"


@dataclasses.dataclass(frozen=True, slots=True)
class Leave:
    """A connection left; ``last``: the user's last connection left."""
    scope: str
    conn: Conn
    last: bool
    op: Literal["leave"] = "leave"


@dataclasses.dataclass(frozen=True, slots=True)
class Update:
    """Another connection changed its meta (``presence_update``); ``conn``
    carries the new ``meta``."""
    scope: str
    conn: Conn
    op: Literal["update"] = "update"


@dataclasses.dataclass(frozen=True, slots=True)
class Dropped:
    """``count`` events (or joins/leaves) of the scope were lost: by the
    server (its queue for this connection overflowed) or, with
    ``local=True``, by this client (the application did not read and the
    subscription's buffer was full). Refetch your data."""
    scope: str
    count: int
    local: bool
    op: Literal["dropped"] = "dropped"


@dataclasses.dataclass(frozen=True, slots=True)
class Resubscribed:
    """The subscription was made again on a new connection. ``presence`` is
    the fresh list of connections.

    ``recovered`` True: the server kept every event after ``previous_seq``
    (its history, ``--history``); they follow this item as ordinary events,
    nothing is missing (``missed`` is 0). Otherwise events between
    ``previous_seq`` and ``seq`` were not received (``missed`` of them at
    most; None when ``reset``: the scope restarted, e.g. a server restart,
    its epoch changed): refetch your data. ``recovered`` is None on servers
    without history support."""
    scope: str
    seq: int
    previous_seq: int
    missed: int | None
    reset: bool
    presence: list[Conn]
    recovered: bool | None = None
    op: Literal["resubscribed"] = "resubscribed"


@dataclasses.dataclass(frozen=True, slots=True)
class Closed:
    """The server ended the subscription (``reason``: ``closed`` or ``kicked``);
    the iteration ends after this item."""
    scope: str
    reason: str
    op: Literal["closed"] = "closed"


Item: TypeAlias = Event | Join | Leave | Update | Dropped | Resubscribed | Closed


# ---------------------------------------------------------------------------
# Helpers

def backoff_delay(attempt: int, initial: float, maximum: float, factor: float,
                  rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry ``attempt`` (0 first): full jitter in
    ``[0, min(maximum, initial * factor ** attempt)]``."""
    ceiling = min(maximum, initial * factor ** min(max(attempt, 0), 64))
    return max(0.0, ceiling) * min(1.0, max(0.0, rand()))


def group_by_user(conns: list[Conn], self_session: str | None = None) -> list[User]:
    """Groups connections by user (anonymous ones each alone), ordered by
    their oldest connection; connections within a user by ``at``."""
    groups: dict[str, User] = {}
    for c in sorted(conns, key=lambda c: (c.get("at") or 0, str(c.get("session")))):
        user = c.get("user")
        key = "u:" + user if isinstance(user, str) else "s:" + str(c.get("session"))
        g = groups.get(key)
        if g is None:
            g = groups[key] = User(user if isinstance(user, str) else None, [], False)
        g.connections.append(c)
        if self_session is not None and c.get("session") == self_session:
            g.self = True
    return list(groups.values())


def token_exp(token: str | None) -> float | None:
    """The ``exp`` claim of a JWT (seconds since the epoch), or None."""
    if not isinstance(token, str) or token.count(".") != 2:
        return None
    part = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _encode(msg: dict[str, Any]) -> str:
    return json.dumps(msg, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _ws_url(url: str) -> str:
    if url.startswith(("http://", "https://")):
        url = "ws" + url[4:]
    if not url.startswith(("ws://", "wss://")):
        raise ValueError(f"not a ws://, wss://, http:// or https:// URL: {url!r}")
    return url


def _with_token(url: str, token: str | None) -> str:
    if not token:
        return url
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", token))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class _End:
    """Marks the end of a subscription's items (with the error to raise, if any)."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


@dataclasses.dataclass(eq=False)
class _Request:
    id: int
    op: str
    scope: str | None
    text: str
    future: asyncio.Future[dict[str, Any]]
    sub: Subscription | None = None
    sent: bool = False
    hook: Callable[[dict[str, Any]], None] | None = None
    """Called with the reply (or error) as it is read, before later messages."""


# ---------------------------------------------------------------------------
# Subscription

class Subscription:
    """One subscription to a scope; it survives reconnects until
    :meth:`unsubscribe`, a ``closed`` push, or the end of the client.
    ``async for item in sub`` yields :data:`Item` objects (see the module doc)."""

    def __init__(self, client: Client, scope: str, meta: dict[str, Any] | None,
                 echo: bool, presence: bool, max_queue: int | None) -> None:
        self.client = client
        self.scope = scope
        self.meta = meta
        self.echo = echo
        self.presence_enabled = presence
        self.max_queue = max_queue
        self.seq = 0
        """Last seq seen (from ``subscribed`` or an event)."""
        self.epoch: str | None = None
        """The scope's epoch (one life of the scope; seqs count within it),
        from the last ``subscribed``; None on servers that send none."""
        self.recovered: bool | None = None
        """``recovered`` of the last ``subscribed`` made with ``since``."""
        self.dropped = 0
        """Events lost in total (server and local drops)."""
        self.recoveries = 0
        """Server ``dropped`` notices repaired from the scope's history."""
        self.closed_reason: str | None = None
        self._conns: dict[str, Conn] = {}
        self._items: collections.deque[Item | _End] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._local_dropped = 0
        self._online = False  # subscribed on the current connection
        self._since: dict[str, Any] | None = None  # `since` of the next subscribe
        self._recovering: _Request | None = None  # a gap-fill subscribe on its way
        self._held: list[dict[str, Any]] = []  # pushes of the scope while it is on the wire
        self._ended = False
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        return f"<Subscription {self.scope!r} seq={self.seq} active={self.active}>"

    @property
    def active(self) -> bool:
        """True until unsubscribed, closed by the server, or the client ended."""
        return not self._ended

    @property
    def presence(self) -> list[Conn]:
        """The connections in the scope (this one included), as of the last message."""
        return list(self._conns.values())

    @property
    def users(self) -> list[User]:
        """Presence by user: one :class:`User` per person (see :func:`group_by_user`)."""
        welcome = self.client.welcome
        return group_by_user(self.presence, welcome.session if welcome else None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Item:
        return await self.get()

    async def get(self, timeout: float | None = None) -> Item:
        """The next item; raises StopAsyncIteration at the end (after
        :class:`Closed`, unsubscribe or client close), the client's error
        (e.g. :class:`AuthError`) when it ended on one, and TimeoutError
        after ``timeout`` seconds without an item."""
        while True:
            if self._items and not isinstance(self._items[0], _End):
                return self._items.popleft()  # type: ignore[return-value]
            if self._local_dropped:
                return self._flush_local_dropped()
            if self._items:
                end = self._items[0]
                assert isinstance(end, _End)
                if end.error is not None:
                    raise end.error
                raise StopAsyncIteration
            if self._waiter is None or self._waiter.done():
                self._waiter = asyncio.get_running_loop().create_future()
            await asyncio.wait_for(asyncio.shield(self._waiter), timeout)

    async def unsubscribe(self, timeout: float | None = None) -> None:
        """Ends the subscription (the iteration ends after the buffered items)."""
        await self.client._unsubscribe(self, timeout)

    async def update_presence(self, meta: dict[str, Any], *, timeout: float | None | _Omit = OMIT) -> None:
        """Replaces this subscription's ``meta`` (``presence_update``): the
        others get one :class:`Update`. The new meta also goes with later
        subscribes (reconnects). While the client is not connected it is
        only kept for the next one. Raises RequestError (``not_found`` for a
        ``presence=False`` subscription, ``limit``, ...)."""
        await self.client.update_presence(self.scope, meta, timeout=timeout)

    async def refresh_presence(self) -> list[Conn]:
        """Asks the server for the scope's presence and replaces the local view."""
        conns = await self.client.presence(self.scope)
        if self.active:
            self._conns = {c["session"]: c for c in conns if isinstance(c, dict) and "session" in c}
        return self.presence

    # -- internal -----------------------------------------------------------

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _flush_local_dropped(self) -> Dropped:
        d = Dropped(self.scope, self._local_dropped, True)
        self._local_dropped = 0
        return d

    def _put(self, item: Item, needs_room: bool = True) -> None:
        if self._ended:
            return
        if needs_room and self.max_queue is not None and len(self._items) >= self.max_queue:
            self._local_dropped += 1
            self.dropped += 1
            return
        if self._local_dropped:
            self._items.append(self._flush_local_dropped())
        self._items.append(item)
        self._wake()

    def _end(self, error: BaseException | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        self._online = False
        req, self._recovering = self._recovering, None
        if req is not None:
            self.client._pending.pop(req.id, None)
            req.future.cancel()
        self._held = []
        self._items.append(_End(error))
        if not self._ready.done():
            if error is not None:
                self._ready.set_exception(error)
                self._ready.exception()  # retrieved: nobody may be waiting
            else:
                self._ready.set_exception(ClientClosed("subscription ended", scope=self.scope))
                self._ready.exception()
        self._wake()

    def _on_subscribed(self, msg: dict[str, Any]) -> None:
        previous, previous_epoch = self.seq, self.epoch
        asked = self._since
        self._since = None
        seq = _int(msg.get("seq"))
        epoch = msg.get("epoch") if isinstance(msg.get("epoch"), str) else None
        recovered = msg.get("recovered") if asked is not None and isinstance(msg.get("recovered"), bool) else None
        self.epoch = epoch
        self.recovered = recovered
        # recovered: the events after `since` follow; else we stand at the scope's seq
        self.seq = _int(asked.get("seq")) if recovered and asked is not None else seq
        self._online = True
        presence = msg.get("presence") or []
        self._conns = {c["session"]: c for c in presence if isinstance(c, dict) and "session" in c}
        if not self._ready.done():
            self._ready.set_result(None)
            return
        if recovered:
            self._put(Resubscribed(self.scope, seq, previous, 0, False, list(presence), True), needs_room=False)
            return
        reset = seq < previous or (previous_epoch is not None and epoch is not None and epoch != previous_epoch)
        self._put(Resubscribed(self.scope, seq, previous, None if reset else seq - previous, reset,
                               list(presence), recovered), needs_room=False)

    def _since_for_resubscribe(self) -> dict[str, Any] | None:
        if self.client.recover and self.epoch is not None:
            return {"seq": self.seq, "epoch": self.epoch}
        return None

    def _start_recovery(self) -> bool:
        """After a server ``dropped`` notice: asks the server to reposition
        this subscription after the last seq seen (``subscribe`` with
        ``since``). The scope's pushes that come before the answer are held;
        returns False when that cannot be tried."""
        client = self.client
        if not client.recover or self.epoch is None or not self._online or client.state != "open":
            return False
        since = {"seq": self.seq, "epoch": self.epoch}
        try:
            req = client._submit({"op": "subscribe", "scope": self.scope, "since": since},
                                 hook=self._on_recovery_reply)
        except ScopecastError:
            return False
        req.future.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: handled in the hook
        self._recovering = req
        return True

    def _on_recovery_reply(self, msg: dict[str, Any]) -> None:
        if self._ended or self._recovering is None or msg.get("id") != self._recovering.id:
            return
        held, self._held = self._held, []
        self._recovering = None
        if msg.get("op") == "subscribed" and msg.get("recovered") is True:
            # repositioned: the held events, and the loss, come again in order after this
            # reply; the held joins/leaves/updates were discarded by the server and its
            # reply's presence is the scope's presence now: what changed is told as items
            if isinstance(msg.get("epoch"), str):
                self.epoch = msg["epoch"]
            self.recoveries += 1
            if self.presence_enabled:
                self._take_presence(msg.get("presence") or [])
            return
        # not recovered (or refused): the loss as the server reported it, then what was held
        for m in held:
            self._on_push(m, replaying=True)

    def _take_presence(self, presence: list[Any]) -> None:
        """Replaces presence with a fresh list, with Join/Leave/Update items
        for the differences (first/last judged from the two lists)."""
        old = self._conns
        new = {c["session"]: c for c in presence if isinstance(c, dict) and "session" in c}
        self._conns = new

        def users(conns: dict[str, Conn]) -> set[Any]:
            return {c.get("user") for c in conns.values() if c.get("user") is not None}
        for session, c in old.items():
            if session not in new:
                last = c.get("user") is None or c.get("user") not in users(new)
                self._put(Leave(self.scope, c, last))
        for session, c in new.items():
            if session not in old:
                first = c.get("user") is None or c.get("user") not in users(old)
                self._put(Join(self.scope, c, first))
            elif old[session].get("meta") != c.get("meta"):
                self._put(Update(self.scope, c))

    def _on_connection_lost(self) -> None:
        self._online = False
        req, self._recovering = self._recovering, None
        if req is not None:  # never sent again: the resubscribe (with since) takes over
            self.client._pending.pop(req.id, None)
            req.future.cancel()
        self._held = []

    def _on_push(self, msg: dict[str, Any], replaying: bool = False) -> None:
        op = msg.get("op")
        if self._recovering is not None and op in ("event", "dropped", "join", "leave", "update"):
            self._held.append(msg)  # decided when the gap-fill subscribe is answered
            return
        if op == "event":
            seq = _int(msg.get("seq"), self.seq)
            reset = seq <= self.seq
            gap = 0 if reset else seq - self.seq - 1
            self.seq = seq
            self._put(Event(self.scope, seq, list(msg.get("paths") or []), msg.get("origin"),
                            msg.get("data"), "data" in msg, gap, reset))
        elif op in ("join", "leave"):
            conn = msg.get("conn")
            if not isinstance(conn, dict) or "session" not in conn:
                return
            if op == "join":
                self._conns[conn["session"]] = conn
                self._put(Join(self.scope, conn, bool(msg.get("first"))))
            else:
                self._conns.pop(conn["session"], None)
                self._put(Leave(self.scope, conn, bool(msg.get("last"))))
        elif op == "update":
            conn = msg.get("conn")
            if not isinstance(conn, dict) or "session" not in conn:
                return
            if conn["session"] in self._conns:
                self._conns[conn["session"]] = conn
            self._put(Update(self.scope, conn))
        elif op == "dropped":
            if not replaying and self._start_recovery():
                self._held.append(msg)  # reported only if the server cannot fill the gap
                return
            count = _int(msg.get("count"))
            self.dropped += count
            self._put(Dropped(self.scope, count, False), needs_room=False)
            if self.presence_enabled:  # joins/leaves may be lost too
                self.client._background(self.refresh_presence())
        elif op == "closed":
            reason = str(msg.get("reason"))
            self._online = False
            if reason == "shutdown":  # the server goes away; resubscribed after reconnecting
                return
            self.closed_reason = reason
            self.client._forget(self)
            self._put(Closed(self.scope, reason), needs_room=False)
            self._end()


# ---------------------------------------------------------------------------
# Client

class Client:
    """A scopecast connection that reconnects. Made by :func:`connect`; use
    ``client = await connect(...)`` or ``async with connect(...) as client``.

    Options (seconds for times):
      token: None, a str, or a function (sync or async) returning a str,
        called before every connection attempt and before ``exp``.
      reconnect: reconnect after a lost connection (default True); with
        False, a lost connection ends the client (DisconnectedError).
      initial_delay, max_delay, factor: backoff (0.5, 30, 2), full jitter.
      connect_timeout: per attempt (open + welcome), and the time
        ``await connect()`` keeps trying before DisconnectedError (10).
      request_timeout: default timeout of requests (10; None: none).
      refresh_before: how long before ``exp`` a token function is asked
        again (60; capped at half the token's lifetime).
      ping_interval, ping_timeout: WebSocket keepalive finding dead links (20, 20).
      max_queue: default per-subscription buffer (10000 items; None: unbounded).
      recover: on servers with history, subscribe again with ``since`` after
        a reconnect and answer a ``dropped`` notice with one (default True).
    """

    def __init__(self, url: str, token: TokenSource = None, *, reconnect: bool = True,
                 initial_delay: float = 0.5, max_delay: float = 30.0, factor: float = 2.0,
                 connect_timeout: float = 10.0, request_timeout: float | None = 10.0,
                 refresh_before: float = 60.0, ping_interval: float | None = 20.0,
                 ping_timeout: float | None = 20.0, max_queue: int | None = 10000,
                 recover: bool = True) -> None:
        self.url = _ws_url(url)
        self._token_source = token
        self.reconnect = reconnect
        self.initial_delay = initial_delay
        self.max_delay = max_delay
        self.factor = factor
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.refresh_before = refresh_before
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_queue = max_queue
        self.recover = recover
        self.state: State = "idle"
        self.welcome: Welcome | None = None
        """The current (or last) connection's welcome."""
        self.error: ScopecastError | None = None
        """What ended the client, when not :meth:`close`."""
        self.close_code: int | None = None
        """Close code of the last lost connection."""
        self.connects = 0
        """Connections welcomed so far (2 or more: it reconnected)."""
        self._subs: dict[str, Subscription] = {}
        self._pending: dict[int, _Request] = {}
        self._ids = itertools.count(1)
        self._ws: Any = None  # websockets' client protocol, while connected
        self._outbox: asyncio.Queue[_Request] | None = None  # while welcomed
        self._token: str | None = None  # the token of the current connection
        self._unauthorized: str | None = None  # message of an `error` unauthorized push
        self._run_task: asyncio.Task[None] | None = None
        self._conn_tasks: list[asyncio.Task[Any]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._first: asyncio.Future[None] | None = None
        self._last_error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<scopecast.Client {self.url} {self.state}>"

    # -- lifecycle ------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, Client]:
        return self.start().__await__()

    async def __aenter__(self) -> Client:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> Client:
        """Connects and waits for the first welcome, retrying (with backoff)
        for ``connect_timeout``; raises AuthError or DisconnectedError."""
        if self._run_task is None:
            self._first = asyncio.get_running_loop().create_future()
            self.state = "connecting"
            self._run_task = asyncio.create_task(self._run(), name=f"scopecast {self.url}")
        assert self._first is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._first), self.connect_timeout)
        except asyncio.TimeoutError:
            await self.close()
            last = f": {self._last_error}" if self._last_error else ""
            raise DisconnectedError(f"could not connect to {self.url} within {self.connect_timeout:g} s{last}") \
                from self._last_error
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        """Closes the connection (1000) and ends everything: pending requests
        raise ClientClosed, subscription iterations end."""
        if self.state == "closed" and self._run_task is None:
            return
        self._shutdown(None)
        ws = self._ws
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(1000, "bye"), 2.0)
            except (asyncio.TimeoutError, OSError, websockets.exceptions.WebSocketException):
                pass
        task, self._run_task = self._run_task, None
        tasks = [t for t in (task, *self._conn_tasks, *self._tasks)
                 if t is not None and t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _closed(self) -> bool:
        return self.state == "closed"

    @property
    def connected(self) -> bool:
        """True while a connection is open and welcomed."""
        return self.state == "open"

    @property
    def session(self) -> str | None:
        return self.welcome.session if self.welcome else None

    @property
    def user(self) -> str | None:
        return self.welcome.user if self.welcome else None

    @property
    def subscriptions(self) -> list[Subscription]:
        return list(self._subs.values())

    # -- requests -------------------------------------------------------------

    async def subscribe(self, scope: str, meta: dict[str, Any] | None = None, echo: bool = False,
                        presence: bool = True, *, since: tuple[int, str | None] | dict[str, Any] | None = None,
                        max_queue: int | None | _Omit = OMIT,
                        timeout: float | None | _Omit = OMIT) -> Subscription:
        """Subscribes and waits for ``subscribed`` (also across a reconnect).
        One subscription per scope: subscribing again to an active scope
        returns the existing one (its options stay). Raises RequestError
        (``forbidden``, ``bad_request``, ``limit``) when the server refuses.

        ``since=(seq, epoch)`` (or ``{"seq": .., "epoch": ..}``; the epoch
        may be None with seq 0) takes up where an earlier subscription left
        off (``sub.seq``, ``sub.epoch``, e.g. saved by a previous run): when
        the server kept every event after it, ``sub.recovered`` is True and
        those events come first, in order; otherwise ``sub.recovered`` is
        False and the application should refetch its state."""
        self._check_usable()
        sub = self._subs.get(scope)
        if sub is None:
            sub = Subscription(self, scope, meta, echo, presence,
                               self.max_queue if isinstance(max_queue, _Omit) else max_queue)
            if since is not None:
                if isinstance(since, dict):
                    seq, epoch = since.get("seq"), since.get("epoch")
                else:
                    seq, epoch = since
                if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
                    raise ValueError(f"since: seq must be an integer >= 0, not {seq!r}")
                if epoch is not None and not isinstance(epoch, str):
                    raise ValueError(f"since: epoch must be a string or None, not {epoch!r}")
                sub._since = {"seq": seq} if epoch is None else {"seq": seq, "epoch": epoch}
                sub.seq, sub.epoch = seq, epoch
            self._subs[scope] = sub
            if self.state == "open":
                self._send_subscribe(sub)
        wait = self.request_timeout if isinstance(timeout, _Omit) else timeout
        try:
            await asyncio.wait_for(asyncio.shield(sub._ready), wait)
        except asyncio.TimeoutError:
            try:
                await self._unsubscribe(sub, 1.0)
            except ScopecastError:
                pass
            raise RequestTimeout(f"subscribe: no reply within {wait:g} s", op="subscribe", scope=scope) from None
        return sub

    async def emit(self, scope: str, data: Any = OMIT, paths: list[str] | None = None,
                   audience: list[str] | None = None, *, timeout: float | None | _Omit = OMIT) -> int:
        """Emits an event into ``scope`` and returns its seq (0 when the scope
        has no subscribers). ``data`` is any JSON value (``None`` is sent as
        null; leave it out for an event without data)."""
        msg: dict[str, Any] = {"op": "emit", "scope": scope}
        if paths is not None:
            msg["paths"] = list(paths)
        if not isinstance(data, _Omit):
            msg["data"] = data
        if audience is not None:
            msg["audience"] = list(audience)
        reply = await self.request(msg, timeout=timeout)
        return int(reply.get("seq") or 0)

    async def update_presence(self, scope: str, meta: dict[str, Any], *,
                              timeout: float | None | _Omit = OMIT) -> None:
        """Replaces the ``meta`` of this client's subscription of ``scope``
        (the ``presence_update`` op): the others get one :class:`Update`;
        this subscription's own entry changes at once. The new meta goes
        with later subscribes (reconnects) too; while the client is not
        connected it is only kept for the next one. Raises RequestError
        (``not_found``: not subscribed, or ``presence=False``; ``limit``;
        ``bad_request``)."""
        if not isinstance(meta, dict):
            raise TypeError("meta must be a dict (a JSON object)")
        self._check_usable()
        sub = self._subs.get(scope)
        if sub is not None and self.state != "open":
            sub.meta = dict(meta)  # goes with the resubscribe
            return
        await self.request({"op": "presence_update", "scope": scope, "meta": meta}, timeout=timeout)
        sub = self._subs.get(scope)
        if sub is not None:
            sub.meta = dict(meta)
            own = sub._conns.get(self.session or "")
            if own is not None:
                sub._conns[own["session"]] = {**own, "meta": dict(meta)}

    async def presence(self, scope: str, *, timeout: float | None | _Omit = OMIT) -> list[Conn]:
        """The connections in ``scope`` (any scope this client could subscribe to)."""
        reply = await self.request({"op": "presence", "scope": scope}, timeout=timeout)
        return list(reply.get("presence") or [])

    async def ping(self, *, timeout: float | None | _Omit = OMIT) -> float:
        """Round trip of the ``ping`` op, in seconds."""
        t0 = time.monotonic()
        await self.request({"op": "ping"}, timeout=timeout)
        return time.monotonic() - t0

    async def refresh(self, token: str, *, timeout: float | None | _Omit = OMIT) -> float | None:
        """Hands the connection a new token for the same user (``refresh``
        op); returns its ``exp`` (None if it has none). Later reconnects use
        it when the token option was a string."""
        reply = await self.request({"op": "refresh", "token": token}, timeout=timeout)
        self._token = token
        if not callable(self._token_source):
            self._token_source = token
        exp = reply.get("exp")
        return float(exp) if isinstance(exp, (int, float)) else None

    async def request(self, msg: dict[str, Any], *, timeout: float | None | _Omit = OMIT) -> dict[str, Any]:
        """Sends one request (an ``id`` is added) and returns its reply.
        Made while reconnecting, it waits for the connection (its timeout
        runs). Raises RequestError for an ``error`` reply, MessageTooLarge,
        RequestTimeout, DisconnectedError, AuthError, ClientClosed."""
        req = self._submit(msg)
        wait = self.request_timeout if isinstance(timeout, _Omit) else timeout
        try:
            return await asyncio.wait_for(asyncio.shield(req.future), wait)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"{req.op}: no reply within {wait:g} s", op=req.op, scope=req.scope) from None
        finally:
            self._pending.pop(req.id, None)
            if not req.future.done():
                req.future.cancel()

    # -- internal: requests -----------------------------------------------------

    def _check_usable(self) -> None:
        if self.error is not None:
            raise self.error
        if self.state == "closed":
            raise ClientClosed()
        if self.state == "idle":
            raise ScopecastError("closed", "client not started: await connect(...) first")

    def _submit(self, msg: dict[str, Any], sub: Subscription | None = None,
                hook: Callable[[dict[str, Any]], None] | None = None) -> _Request:
        self._check_usable()
        rid = next(self._ids)
        op = str(msg.get("op"))
        scope = msg.get("scope") if isinstance(msg.get("scope"), str) else None
        text = _encode({**msg, "id": rid})
        self._check_size(text, op, scope)
        req = _Request(rid, op, scope, text, asyncio.get_running_loop().create_future(), sub, hook=hook)
        self._pending[rid] = req
        if self._outbox is not None:
            self._outbox.put_nowait(req)
        return req

    def _check_size(self, text: str, op: str | None, scope: str | None) -> None:
        limit = self.welcome.maxmessage if self.welcome else None
        if limit is not None:
            size = len(text.encode("utf-8"))
            if size > limit:
                raise MessageTooLarge(size, limit, op=op, scope=scope)

    def _send_subscribe(self, sub: Subscription) -> None:
        msg: dict[str, Any] = {"op": "subscribe", "scope": sub.scope}
        if sub.meta is not None:
            msg["meta"] = sub.meta
        if sub.echo:
            msg["echo"] = True
        if not sub.presence_enabled:
            msg["presence"] = False
        if sub._ready.done():  # made again after a reconnect
            sub._since = sub._since_for_resubscribe()
        if sub._since is not None:
            msg["since"] = sub._since
        try:
            req = self._submit(msg, sub)
        except ScopecastError as e:  # e.g. meta too large for this server
            self._forget(sub)
            sub._end(e)
            return

        def done(fut: asyncio.Future[dict[str, Any]]) -> None:
            self._pending.pop(req.id, None)
            if fut.cancelled():
                return
            err = fut.exception()
            if isinstance(err, RequestError) and self._subs.get(sub.scope) is sub:
                self._forget(sub)  # refused (forbidden, bad_request, limit): the subscription ends
                sub._end(err)
        req.future.add_done_callback(done)

    async def _unsubscribe(self, sub: Subscription, timeout: float | None) -> None:
        if sub._ended:
            return
        self._forget(sub)
        sub._end()
        if self.state == "open":  # subscribed, or the subscribe is on its way
            try:
                await self.request({"op": "unsubscribe", "scope": sub.scope}, timeout=timeout)
            except (DisconnectedError, ClientClosed, AuthError):
                pass  # the connection is gone, and the subscription with it

    def _forget(self, sub: Subscription) -> None:
        if self._subs.get(sub.scope) is sub:
            del self._subs[sub.scope]

    def _background(self, coro: Awaitable[Any]) -> None:
        async def run() -> None:
            try:
                await coro
            except ScopecastError as e:
                log.debug("background request failed: %s", e)
        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- internal: connection -----------------------------------------------------

    async def _get_token(self) -> str | None:
        src = self._token_source
        if callable(src):
            tok = src()
            if isinstance(tok, Awaitable):
                tok = await tok
            if tok is not None and not isinstance(tok, str):
                raise TypeError(f"token function returned {type(tok).__name__}, not str")
            return tok
        return src

    async def _run(self) -> None:
        attempt = 0
        try:
            while not self._closed():
                served = welcomed = False
                try:
                    token = await asyncio.wait_for(self._get_token(), self.connect_timeout)
                    ws = await websockets.connect(  # type: ignore[attr-defined]  # lazy export in 10.4
                        _with_token(self.url, token), subprotocols=[PROTOCOL],
                        open_timeout=self.connect_timeout, ping_interval=self.ping_interval,
                        ping_timeout=self.ping_timeout, close_timeout=2.0, max_size=None,
                        compression=None)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # OSError, handshake refusal, token function failure
                    self._last_error = e
                    log.info("scopecast: connecting to %s failed: %s", self.url, e)
                else:
                    self._token = token
                    served = True
                    welcomed = await self._serve(ws)
                if self._closed():  # close() while this connection ran
                    return
                if welcomed:
                    attempt = 0
                if served and (self.close_code == CLOSE_UNAUTHORIZED or self._unauthorized is not None):
                    if welcomed and callable(self._token_source):
                        # expired on a connection that was accepted: at once, with a fresh token
                        # (a token refused before the welcome ends the client below)
                        log.warning("scopecast: token refused (%s); reconnecting with a new token",
                                    self._unauthorized)
                        continue
                    self._shutdown(AuthError(self._unauthorized or "token refused", close_code=self.close_code))
                    return
                if not self.reconnect and (welcomed or self.connects):
                    self._shutdown(DisconnectedError(f"connection lost (code {self.close_code})"))
                    return
                self.state = "reconnecting" if self.connects else "connecting"
                await asyncio.sleep(backoff_delay(attempt, self.initial_delay, self.max_delay, self.factor))
                attempt += 1
        except asyncio.CancelledError:
            pass
        except Exception as e:  # a bug here must not leave callers waiting forever
            log.exception("scopecast: client failed")
            self._shutdown(e if isinstance(e, ScopecastError) else ScopecastError("closed", repr(e)))

    async def _serve(self, ws: Any) -> bool:
        """Runs one connection until it ends; returns True if it was welcomed."""
        self._ws = ws
        self._unauthorized = None
        self.close_code = None
        welcomed = False
        try:
            raw = await asyncio.wait_for(ws.recv(), self.connect_timeout)
            while True:
                if isinstance(raw, str):
                    try:
                        msg = json.loads(raw)
                    except ValueError:
                        msg = None
                    if isinstance(msg, dict):
                        if msg.get("op") == "welcome" and not welcomed:
                            welcomed = True
                            self._on_welcome(ws, msg)
                        else:
                            self._dispatch(msg)
                raw = await ws.recv()
        except websockets.exceptions.ConnectionClosed:
            pass
        except asyncio.TimeoutError:
            self._last_error = TimeoutError(f"no welcome within {self.connect_timeout:g} s")
            await ws.close(4000, "no welcome")
        finally:
            self.close_code = ws.close_code
            self._ws = None
            self._outbox = None
            for t in self._conn_tasks:
                t.cancel()
            self._conn_tasks = []
            if self.state == "open":
                self.state = "reconnecting"
            for sub in self._subs.values():
                sub._on_connection_lost()
            for req in list(self._pending.values()):
                if req.sub is not None:  # subscriptions are made again on the next welcome
                    self._pending.pop(req.id, None)
                    req.future.cancel()
                elif req.sent:  # on the wire, no reply will come
                    self._pending.pop(req.id, None)
                    req.sent = False
                    if not req.future.done():
                        req.future.set_exception(DisconnectedError(
                            f"{req.op}: connection lost before the reply", op=req.op, scope=req.scope))
        if welcomed:
            log.info("scopecast: connection lost (code %s %s)", ws.close_code, ws.close_reason)
        return welcomed

    def _on_welcome(self, ws: Any, msg: dict[str, Any]) -> None:
        def num(key: str) -> int | None:
            v = msg.get(key)
            return _int(v) if isinstance(v, int) and not isinstance(v, bool) else None
        self.welcome = Welcome(str(msg.get("session")), msg.get("user"), num("version") or 1,
                               num("heartbeat"), num("maxsize"), num("maxmessage"), msg)
        self.connects += 1
        self.state = "open"
        self._outbox = asyncio.Queue()
        # resubscribe first, then what was asked for while offline
        for sub in list(self._subs.values()):
            self._send_subscribe(sub)
        for req in sorted(self._pending.values(), key=lambda r: r.id):
            if not req.sent and req.sub is None:
                self._outbox.put_nowait(req)
        self._conn_tasks.append(asyncio.create_task(self._writer(ws, self._outbox)))
        if callable(self._token_source) and token_exp(self._token) is not None:
            self._conn_tasks.append(asyncio.create_task(self._refresher()))
        if self._first is not None and not self._first.done():
            self._first.set_result(None)

    async def _writer(self, ws: Any, outbox: asyncio.Queue[_Request]) -> None:
        while True:
            req = await outbox.get()
            if req.future.done() or req.sent:
                continue
            try:
                self._check_size(req.text, req.op, req.scope)  # the limit may have changed
            except MessageTooLarge as e:
                req.future.set_exception(e)
                continue
            req.sent = True
            try:
                await ws.send(req.text)
            except websockets.exceptions.ConnectionClosed:
                req.sent = False  # not written: it goes out on the next connection
                return

    async def _refresher(self) -> None:
        """Asks the token function for a new token before the current one expires."""
        while True:
            exp = token_exp(self._token)
            if exp is None:
                return
            lifetime = exp - time.time()
            await asyncio.sleep(max(1.0, lifetime - min(self.refresh_before, lifetime / 2)))
            try:
                token = await self._get_token()
                if token is None:
                    return
                await self.refresh(token)
            except (ScopecastError, TypeError, ValueError) as e:
                log.warning("scopecast: token refresh failed: %s", e)
                if isinstance(e, (AuthError, ClientClosed)):
                    return
                await asyncio.sleep(min(5.0, max(1.0, self.refresh_before / 4)))
            except Exception as e:  # the application's token function failed
                log.warning("scopecast: token function failed: %s", e)
                await asyncio.sleep(min(5.0, max(1.0, self.refresh_before / 4)))

    def _dispatch(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        rid = msg.get("id")
        if rid is not None:
            req = self._pending.pop(rid, None) if isinstance(rid, int) else None
            if req is None or req.future.done():
                return  # a late reply (its request timed out)
            if req.hook is not None:
                req.hook(msg)
            if op == "error":
                req.future.set_exception(RequestError(str(msg.get("code") or "error"), str(msg.get("message") or ""),
                                                      op=req.op, scope=req.scope))
                if req.sub is not None:
                    req.future.exception()
                return
            if op == "subscribed" and req.sub is not None and self._subs.get(req.sub.scope) is req.sub:
                req.sub._on_subscribed(msg)  # state first, then the caller
            req.future.set_result(msg)
            return
        scope = msg.get("scope")
        if op in ("event", "join", "leave", "update", "dropped", "closed") and isinstance(scope, str):
            sub = self._subs.get(scope)
            if sub is not None and sub._online:
                sub._on_push(msg)
        elif op == "error" and msg.get("code") == "unauthorized":
            self._unauthorized = str(msg.get("message") or "token refused")  # close 4401 follows
        elif op == "error":
            log.warning("scopecast: server error %s: %s", msg.get("code"), msg.get("message"))

    def _shutdown(self, error: ScopecastError | None) -> None:
        """Ends the client: with ``error`` (AuthError, ...) or by close()."""
        if self.state == "closed":
            return
        self.state = "closed"
        self.error = error
        exc = error or ClientClosed()
        for req in list(self._pending.values()):
            if not req.future.done():
                req.future.set_exception(exc)
                req.future.exception()
        self._pending.clear()
        for sub in list(self._subs.values()):
            sub._end(error)
        self._subs.clear()
        if self._first is not None and not self._first.done():
            self._first.set_exception(exc)
            self._first.exception()


def connect(url: str, token: TokenSource = None, **options: Any) -> Client:
    """A :class:`Client` for ``url`` (``ws://HOST:PORT/ws``). Await it, or use
    it as an async context manager, to connect; see :class:`Client` for the
    options."""
    return Client(url, token, **options)
