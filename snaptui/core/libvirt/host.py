"""The libvirt adapter: one connection, typed domain listings, one-line errors.

Thin on purpose: libvirt-python does the work; this module turns its results into
``DomainInfo`` and its exceptions into ``HypervisorError`` / ``NotFound`` carrying libvirt's own
message on one line.

One ``LibvirtHost`` is shared by the dashboard's thread workers (and a demo job's thread): the
connection is opened, replaced and closed under a lock, and a replacement waits for the calls
still running on the old connection (see ``_ConnectionGuard``).
"""

from __future__ import annotations

import base64
import os
import threading
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import libvirt

from snaptui.core.errors import HypervisorError, NotFound
from snaptui.core.libvirt import qemu_access
from snaptui.core.libvirt.domain_xml import parse_domain_xml
from snaptui.core.libvirt.qemu_access import QemuIdentity
from snaptui.core.models import DomainInfo, DomainState, NetworkSource

_STATE_MAP: dict[int, DomainState] = {
    libvirt.VIR_DOMAIN_NOSTATE: DomainState.NOSTATE,
    libvirt.VIR_DOMAIN_RUNNING: DomainState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: DomainState.BLOCKED,
    libvirt.VIR_DOMAIN_PAUSED: DomainState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: DomainState.SHUTDOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: DomainState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: DomainState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: DomainState.PMSUSPENDED,
}

# Errors meaning "the connection to libvirtd is gone"; read-only calls reconnect once on them.
_CONNECTION_LOST = {libvirt.VIR_ERR_INVALID_CONN, libvirt.VIR_ERR_SYSTEM_ERROR}
_CONNECTION_LOST_RPC = libvirt.VIR_ERR_INTERNAL_ERROR  # "client socket is closed"

_handler_lock = threading.Lock()
_handler_installed = False


def _ignore_libvirt_error(_ctx: Any, _err: Any) -> None:
    """libvirt's default handler prints every error to stderr; we report them ourselves."""


def silence_libvirt_stderr() -> None:
    """Stop libvirt printing errors to stderr (they are raised as exceptions anyway)."""
    global _handler_installed
    with _handler_lock:
        if not _handler_installed:
            libvirt.registerErrorHandler(_ignore_libvirt_error, None)
            _handler_installed = True


def default_uri(explicit: str | None = None) -> str:
    """The URI virsh would use: explicit ``-c``, else $LIBVIRT_DEFAULT_URI, else by user."""
    if explicit:
        return explicit
    env = os.environ.get("LIBVIRT_DEFAULT_URI")
    if env:
        return env
    return "qemu:///system" if os.geteuid() == 0 else "qemu:///session"


def error_message(err: libvirt.libvirtError) -> str:
    """libvirt's own message for an error, on one line."""
    text = err.get_error_message() or str(err)
    return " ".join(str(text).split())


def connect_error(uri: str, err: libvirt.libvirtError) -> HypervisorError:
    """A one-line HypervisorError for a failed ``virConnectOpen``."""
    message = error_message(err)
    if "Failed to connect socket" in message or "No such file or directory" in message:
        return HypervisorError(f"cannot connect to {uri}: libvirtd is not running ({message})")
    if "ermission denied" in message or "authentication" in message.lower():
        return HypervisorError(f"cannot connect to {uri}: access denied ({message})")
    return HypervisorError(f"cannot connect to {uri}: {message}")


def _is_connection_lost(err: libvirt.libvirtError) -> bool:
    code = err.get_error_code()
    if code in _CONNECTION_LOST:
        return True
    return code == _CONNECTION_LOST_RPC and "socket is closed" in error_message(err)


def domain_state(dom: libvirt.virDomain, raw_state: int | None = None) -> tuple[DomainState, bool]:
    """The domain's state (SAVED when shut off with a managed save image) and has_managed_save."""
    if raw_state is None:
        raw_state = dom.state(0)[0]
    state = _STATE_MAP.get(raw_state, DomainState.NOSTATE)
    has_save = bool(dom.hasManagedSaveImage(0))
    if state is DomainState.SHUTOFF and has_save:
        state = DomainState.SAVED
    return state, has_save


class _ConnectionGuard:
    """Any number of threads using the connection at once, or one replacing (or closing) it.

    A replacement waits until the calls in flight on the old connection have returned (on a
    dead connection they fail at once), and new calls wait until it is done, so no thread's
    call runs on a connection another thread has just closed.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._users = 0
        self._replacing: int | None = None  # thread id of the replacer
        self._depth = 0
        self._mine = threading.local()  # this thread's `using` depth

    @contextmanager
    def using(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            self._cond.wait_for(lambda: self._replacing in (None, me))
            self._users += 1
        self._mine.depth = getattr(self._mine, "depth", 0) + 1
        try:
            yield
        finally:
            self._mine.depth -= 1
            with self._cond:
                self._users -= 1
                self._cond.notify_all()

    @contextmanager
    def replacing(self) -> Iterator[None]:
        """Exclusive; re-entrant for the thread that holds it."""
        if getattr(self._mine, "depth", 0):  # it would wait for itself forever
            raise RuntimeError("the libvirt connection cannot be replaced from inside a call")
        me = threading.get_ident()
        with self._cond:
            self._cond.wait_for(lambda: self._replacing in (None, me))
            self._replacing = me
            self._depth += 1
            self._cond.wait_for(lambda: self._users == 0)
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if not self._depth:
                    self._replacing = None
                self._cond.notify_all()


class LibvirtHost:
    """A connection to one libvirt URI that lists and looks up domains as ``DomainInfo``.

    Safe to share between threads (libvirt connections are); see ``_ConnectionGuard``.
    """

    def __init__(self, uri: str | None = None) -> None:
        self._uri = default_uri(uri)
        self._conn: libvirt.virConnect | None = None
        self._guard = _ConnectionGuard()

    # -- connection -------------------------------------------------------------------------
    @property
    def uri(self) -> str:
        """The URI this host connects to (resolved like virsh)."""
        return self._uri

    @property
    def conn(self) -> libvirt.virConnect:
        """The raw libvirt connection (opened on first use)."""
        conn = self._conn
        if conn is not None:
            return conn
        with self._guard.replacing():
            return self._open()

    def connect(self) -> LibvirtHost:
        """Open the connection; raises HypervisorError with libvirt's reason on one line."""
        if self._conn is None:
            with self._guard.replacing():
                self._open()
        return self

    def _open(self) -> libvirt.virConnect:
        """The connection, opened if there is none (call with the guard held)."""
        if self._conn is None:
            silence_libvirt_stderr()
            try:
                self._conn = libvirt.open(self._uri)
            except libvirt.libvirtError as err:
                raise connect_error(self._uri, err) from err
        return self._conn

    def reconnect(self, stale: libvirt.virConnect | None = None) -> None:
        """Close the current connection (if any) and open a new one. With ``stale``, only
        when the current connection still is ``stale``: a thread that found the connection
        dead then does not close the new one another thread has already opened."""
        with self._guard.replacing():
            if stale is None or self._conn is stale:
                self._drop_held()
            self._open()

    def close(self) -> None:
        """Close the connection; safe to call twice (waits for calls in flight)."""
        with self._guard.replacing():
            self._drop_held()

    def _drop_held(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                pass  # already dead: nothing left to release

    def is_alive(self) -> bool:
        """True when the connection is open and libvirtd still answers."""
        with self._guard.using():
            conn = self._conn
            if conn is None:
                return False
            try:
                return bool(conn.isAlive()) and conn.getLibVersion() > 0
            except libvirt.libvirtError:
                return False

    def __enter__(self) -> LibvirtHost:
        return self.connect()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- capabilities -----------------------------------------------------------------------
    @property
    def is_test_driver(self) -> bool:
        """True for libvirt's built-in ``test:///`` driver (simulated domains, no QEMU)."""
        try:
            # The driver reports its type as "TEST" (libvirt 9.0); compare case-insensitively.
            return self.conn.getType().lower() == "test"
        except libvirt.libvirtError as err:
            raise HypervisorError(f"{self._uri}: {error_message(err)}") from err

    @property
    def supports_block_copy(self) -> bool:
        """True when live block copy (virDomainBlockCopy) can work on this driver."""
        return not self.is_test_driver and hasattr(libvirt.virDomain, "blockCopy")

    @property
    def supports_backup(self) -> bool:
        """True when push-mode backup (virDomainBackupBegin) can work on this driver."""
        return not self.is_test_driver and hasattr(libvirt.virDomain, "backupBegin")

    def qemu_identity(self, name_or_uuid: str | None = None) -> QemuIdentity | None:
        """Who QEMU runs as: the domain's DAC label (a running domain's live XML carries the
        one in use) or else the host's default from its capabilities; None where libvirt has
        no DAC model (the test driver, an unprivileged libvirtd: QEMU runs as the caller)."""
        if self.is_test_driver:
            return None
        if name_or_uuid is not None:
            who = qemu_access.from_domain_xml(self.domain_xml(self.lookup(name_or_uuid)))
            if who is not None:
                return who
        try:
            caps = self._retrying("capabilities", lambda conn: conn.getCapabilities())
        except libvirt.libvirtError as err:
            raise HypervisorError(f"capabilities of {self._uri}: {error_message(err)}") from err
        return qemu_access.from_capabilities(caps)

    # -- domains ----------------------------------------------------------------------------
    def _retrying(self, what: str, func: Any) -> Any:
        """Run a read-only call ``func(conn)``; reconnect once if libvirtd restarted under us
        (or the connection it ran on was replaced by another thread)."""
        conn = self.conn
        try:
            with self._guard.using():
                conn = self._conn or conn  # replaced while this thread waited: the new one
                return func(conn)
        except libvirt.libvirtError as err:
            if not _is_connection_lost(err):
                raise
        try:
            self.reconnect(stale=conn)
        except HypervisorError as err:
            raise HypervisorError(f"{what}: connection to libvirtd lost; {err}") from err
        conn = self.conn
        with self._guard.using():
            return func(self._conn or conn)

    def list_domains(self) -> list[DomainInfo]:
        """All domains, active and inactive, sorted by name."""
        def listing(conn: libvirt.virConnect) -> list[DomainInfo]:
            infos = []
            for dom in conn.listAllDomains(0):
                try:
                    infos.append(_read_info(dom))
                except NotFound:
                    continue  # undefined between listing and reading it
            return infos

        try:
            infos = self._retrying("list domains", listing)
        except libvirt.libvirtError as err:
            raise HypervisorError(f"cannot list domains: {error_message(err)}") from err
        return sorted(infos, key=lambda d: d.name)

    def lookup(self, name_or_uuid: str) -> libvirt.virDomain:
        """The virDomain with that name or UUID; NotFound when none exists."""
        def find(conn: libvirt.virConnect) -> libvirt.virDomain:
            try:
                return conn.lookupByName(name_or_uuid)
            except libvirt.libvirtError as err:
                if err.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise
            if _looks_like_uuid(name_or_uuid):
                return conn.lookupByUUIDString(name_or_uuid)
            raise NotFound(f"no such domain: {name_or_uuid}")

        try:
            return self._retrying(f"look up {name_or_uuid}", find)
        except libvirt.libvirtError as err:
            if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise NotFound(f"no such domain: {name_or_uuid}") from err
            raise HypervisorError(f"cannot look up {name_or_uuid}: {error_message(err)}") from err

    def ceph_key(self, source: NetworkSource) -> str | None:
        """The cephx key (base64) of the libvirt secret a network disk's ``<auth>`` names, or
        None when it names none. A private secret (libvirt will not give its value) is a
        HypervisorError saying so."""
        if not source.secret_uuid and not source.secret_usage:
            return None

        def value(conn: libvirt.virConnect) -> bytes:
            if source.secret_uuid:
                secret = conn.secretLookupByUUIDString(source.secret_uuid)
            else:
                secret = conn.secretLookupByUsage(libvirt.VIR_SECRET_USAGE_TYPE_CEPH,
                                                  source.secret_usage)
            return secret.value()

        which = source.secret_uuid or source.secret_usage
        try:
            raw = self._retrying(f"read secret {which}", value)
        except libvirt.libvirtError as err:
            raise HypervisorError(f"cannot read the ceph secret {which} of "
                                  f"rbd:{source.name}: {error_message(err)}") from err
        return base64.b64encode(raw).decode()

    def get_domain(self, name_or_uuid: str) -> DomainInfo:
        """``DomainInfo`` of one domain by name or UUID; NotFound when none exists."""
        return self.domain_info(self.lookup(name_or_uuid))

    def domain_xml(self, dom: libvirt.virDomain, *, inactive: bool = False) -> str:
        """The domain's XML (live definition, or the persistent one with ``inactive``)."""
        flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
        try:
            return dom.XMLDesc(flags)
        except libvirt.libvirtError as err:
            raise HypervisorError(f"{_name_of(dom)}: {error_message(err)}") from err

    def domain_info(self, dom: libvirt.virDomain) -> DomainInfo:
        """Read state, sizes, disks and Nova metadata of a virDomain into ``DomainInfo``."""
        try:
            return _read_info(dom)
        except libvirt.libvirtError as err:
            raise HypervisorError(f"{_name_of(dom)}: {error_message(err)}") from err


def _read_info(dom: libvirt.virDomain) -> DomainInfo:
    """``DomainInfo`` of dom; NotFound if it vanished, other libvirt errors propagate."""
    try:
        raw_state, max_mem_kib, _mem, vcpus, _cpu_time = dom.info()
        state, has_save = domain_state(dom, raw_state)
        persistent = bool(dom.isPersistent())
        xml = dom.XMLDesc(0)
    except libvirt.libvirtError as err:
        if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            raise NotFound(f"no such domain: {_name_of(dom)}") from err
        raise
    parsed = parse_domain_xml(xml)
    return DomainInfo(
        name=dom.name(),
        uuid=dom.UUIDString(),
        state=state,
        vcpus=int(vcpus),
        memory_kib=int(max_mem_kib),
        persistent=persistent,
        disks=parsed.disks,
        has_managed_save=has_save,
        base_image_ref=parsed.base_image_ref,
        nova=parsed.nova,
    )


def _looks_like_uuid(text: str) -> bool:
    try:
        uuidlib.UUID(text)
    except ValueError:
        return False
    return True


def _name_of(dom: libvirt.virDomain) -> str:
    try:
        return str(dom.name())
    except libvirt.libvirtError:
        return "?"
