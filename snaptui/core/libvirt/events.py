"""Domain lifecycle events from libvirt, surviving libvirtd restarts.

``DomainEventWatcher`` keeps its own connection with keepalive and a close callback; when libvirtd
goes away it reports ``disconnected``, reconnects with backoff until stopped, re-registers and
reports ``reconnected`` so a UI knows to refresh everything.

Threads: libvirt's default event loop runs in one daemon thread per process
(``ensure_event_loop``). Each watcher delivers events to its callback from its own daemon
dispatch thread, one at a time and in order, so a slow callback never stalls libvirt's loop
(which also runs keepalive). Callbacks must therefore be thread-safe (e.g. post a message).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import libvirt

from snaptui.core.errors import HypervisorError
from snaptui.core.libvirt.host import (
    connect_error,
    default_uri,
    error_message,
    silence_libvirt_stderr,
)

log = logging.getLogger(__name__)

EventKind = Literal["lifecycle", "disconnected", "reconnected"]

# Index = virDomainEventType value.
EVENT_NAMES = ("defined", "undefined", "started", "suspended", "resumed", "stopped",
               "shutdown", "pmsuspended", "crashed")

_CLOSE_REASONS = {
    libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "error",
    libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "eof",
    libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "keepalive",
    libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "client",
}

KEEPALIVE_INTERVAL = 5  # seconds between keepalive probes
KEEPALIVE_COUNT = 3  # unanswered probes before libvirt declares the connection dead


def _detail_names() -> dict[str, dict[int, str]]:
    """Detail code -> name per event, read from libvirt's own constants (new ones included)."""
    table: dict[str, dict[int, str]] = {name: {} for name in EVENT_NAMES}
    for event in EVENT_NAMES:
        prefix = f"VIR_DOMAIN_EVENT_{event.upper()}_"
        for const in dir(libvirt):
            if const.startswith(prefix) and not const.endswith("_LAST"):
                value = getattr(libvirt, const)
                if isinstance(value, int):
                    table[event][value] = const[len(prefix):].lower()
    return table


_DETAILS = _detail_names()


def event_names(event: int, detail: int) -> tuple[str, str]:
    """Names for a lifecycle (event, detail) pair, e.g. (2, 0) -> ("started", "booted")."""
    name = EVENT_NAMES[event] if 0 <= event < len(EVENT_NAMES) else f"event-{event}"
    detail_name = _DETAILS.get(name, {}).get(detail, f"detail-{detail}")
    return name, detail_name


@dataclass(frozen=True)
class DomainEvent:
    """One lifecycle event of a domain, or a synthetic connection event (no domain)."""

    kind: EventKind
    domain: str | None = None
    uuid: str | None = None
    event: str | None = None  # "started", "suspended", ...; for "disconnected": the reason
    detail: str | None = None  # "booted", "paused", ...
    monotonic: float = field(default_factory=time.monotonic)
    wall: float = field(default_factory=time.time)


_loop_lock = threading.Lock()
_loop_thread: threading.Thread | None = None


def _run_event_loop() -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except libvirt.libvirtError:  # pragma: no cover - keep the loop alive whatever happens
            log.exception("libvirt event loop iteration failed")
            time.sleep(0.1)


def ensure_event_loop() -> None:
    """Register libvirt's default event loop once per process and run it in a daemon thread.

    Must run before opening any connection that should deliver events.
    """
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None:
            return
        silence_libvirt_stderr()
        libvirt.virEventRegisterDefaultImpl()
        _loop_thread = threading.Thread(target=_run_event_loop, name="libvirt-event-loop",
                                        daemon=True)
        _loop_thread.start()


class DomainEventWatcher:
    """Watches domain lifecycle events on one URI and calls ``callback`` for each.

    The callback runs on the watcher's dispatch thread (not the caller's, not libvirt's loop).
    """

    def __init__(self, uri: str | None, callback: Callable[[DomainEvent], None], *,
                 min_backoff: float = 0.25, max_backoff: float = 5.0) -> None:
        self.uri = default_uri(uri)
        self._callback = callback
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._queue: queue.Queue[DomainEvent | None] = queue.Queue()
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._lock = threading.Lock()
        self._conn: libvirt.virConnect | None = None
        self._callback_id: int | None = None
        self._generation = 0  # ignore close callbacks from connections we already replaced
        self._threads: list[threading.Thread] = []

    @property
    def connected(self) -> bool:
        """True while the watcher holds a live connection."""
        return self._conn is not None and not self._lost.is_set()

    def start(self) -> None:
        """Connect and start watching; raises HypervisorError if the first connect fails."""
        if self._threads:
            return
        ensure_event_loop()
        self._stop.clear()
        self._queue = queue.Queue()  # drop a stop sentinel left by an earlier stop()
        self._open()  # first connect is synchronous so a wrong URI is reported at once
        for target, name in ((self._dispatch, "snaptui-events-dispatch"),
                             (self._supervise, "snaptui-events-reconnect")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching, close the connection and join the watcher's threads."""
        self._stop.set()
        self._lost.set()  # wake the supervisor
        self._queue.put(None)  # wake the dispatcher
        self._close()
        for thread in self._threads:
            if thread is not threading.current_thread():  # stop() from inside the callback
                thread.join(timeout)
        self._threads.clear()

    def __enter__(self) -> DomainEventWatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- connection handling ----------------------------------------------------------------
    def _open(self) -> None:
        silence_libvirt_stderr()
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as err:
            raise connect_error(self.uri, err) from err
        try:
            with self._lock:
                self._generation += 1
                generation = self._generation
            try:
                conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
            except libvirt.libvirtError:
                pass  # drivers without a daemon (test:///) have nothing to keep alive
            conn.registerCloseCallback(self._on_close, generation)
            callback_id = conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None)
        except libvirt.libvirtError as err:
            _close_quietly(conn)
            raise HypervisorError(
                f"cannot watch events on {self.uri}: {error_message(err)}") from err
        with self._lock:
            self._conn, self._callback_id = conn, callback_id
            self._lost.clear()

    def _close(self) -> None:
        with self._lock:
            conn, callback_id = self._conn, self._callback_id
            self._conn, self._callback_id = None, None
            self._generation += 1  # the close below must not look like a lost connection
        if conn is None:
            return
        if callback_id is not None:
            try:
                conn.domainEventDeregisterAny(callback_id)
            except libvirt.libvirtError:
                pass
        try:
            conn.unregisterCloseCallback()
        except libvirt.libvirtError:
            pass
        _close_quietly(conn)

    def _on_close(self, _conn: Any, reason: int, generation: int) -> None:
        # Runs on libvirt's event loop thread: only flag and queue, never block here.
        with self._lock:
            current = generation == self._generation
        if not current or self._stop.is_set():
            return
        self._queue.put(DomainEvent(kind="disconnected",
                                    event=_CLOSE_REASONS.get(reason, f"reason-{reason}")))
        self._lost.set()

    def _on_lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        # Runs on libvirt's event loop thread. name() and UUIDString() are local (no RPC).
        name, detail_name = event_names(event, detail)
        self._queue.put(DomainEvent(kind="lifecycle", domain=dom.name(), uuid=dom.UUIDString(),
                                    event=name, detail=detail_name))

    def _supervise(self) -> None:
        """Wait for the connection to be lost, then reconnect with backoff until stopped."""
        while not self._stop.is_set():
            self._lost.wait()
            if self._stop.is_set():
                return
            self._close()
            delay = self._min_backoff
            while not self._stop.is_set():
                try:
                    self._open()
                except HypervisorError as err:
                    log.debug("reconnect to %s failed: %s", self.uri, err)
                    if self._stop.wait(delay):
                        return
                    delay = min(delay * 2, self._max_backoff)
                    continue
                self._queue.put(DomainEvent(kind="reconnected"))
                break

    def _dispatch(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._stop.is_set():
                return
            try:
                self._callback(item)
            except Exception:  # a broken callback must not end the watcher
                log.exception("domain event callback failed on %s", item)


def _close_quietly(conn: libvirt.virConnect) -> None:
    try:
        conn.close()
    except libvirt.libvirtError:
        pass
