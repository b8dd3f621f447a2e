"""A connection to the Ceph cluster of an RBD disk, as libvirt reaches it.

The monitors and the cephx user come from the disk's XML (``<host>``, ``<auth username>``), the
key from the libvirt secret it names (the caller fetches it: this module knows no libvirt), and
anything else from the disk's ``<config file>`` or the host's /etc/ceph/ceph.conf when present.
The key is set inside librados (``conf_set``), never written to a file or an argv.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from snaptui.core.errors import CephError
from snaptui.core.models import NetworkSource

DEFAULT_CONF = "/etc/ceph/ceph.conf"
CONNECT_TIMEOUT_S = 20


class ImageMissing(CephError):
    """The RBD image (or snapshot) is not there."""


def modules() -> tuple[Any, Any]:
    """The ``rados`` and ``rbd`` modules, or a CephError saying how to get them."""
    try:
        import rados
        import rbd
    except ImportError:
        raise CephError("the Python bindings of Ceph are missing (Debian: python3-rados "
                        "python3-rbd, then scripts/setup links them)") from None
    return rados, rbd


def available() -> bool:
    try:
        modules()
    except CephError:
        return False
    return True


MSGR2_PORT = 3300


def mon_host(source: NetworkSource) -> str | None:
    """The ``mon_host`` value for the disk's ``<host>`` elements (None: the conf file's).
    Ceph's convention names the protocol by the port (3300: msgr2, any other: v1); saying so
    spares librados a v2 attempt on a v1 port (and its complaint on stderr)."""
    hosts = []
    for name, port in source.hosts:
        if not name:
            continue
        if port is None:
            hosts.append(name)
        else:
            address = f"[{name}]" if ":" in name else name  # an IPv6 address
            hosts.append(f"{'v2' if port == MSGR2_PORT else 'v1'}:{address}:{port}")
    return ",".join(hosts) or None


def ceph_error(err: Exception, what: str) -> CephError:
    """A librados/librbd exception as one line naming what was being done."""
    text = " ".join(str(err).split()) or type(err).__name__
    return CephError(f"{what}: {text}")


class RbdCluster:
    """One librados connection; ``ioctx(pool)`` opens (and caches) pools. Use as a context
    manager, or call ``close()``."""

    def __init__(self, source: NetworkSource, key: str | None) -> None:
        rados, _ = modules()
        # librados logs to stderr by default: a CLI table or the dashboard is no place for it
        conf: dict[str, str] = {"log_to_stderr": "false", "err_to_stderr": "false"}
        host = mon_host(source)
        if host:
            conf["mon_host"] = host
        if key:
            conf["key"] = key  # base64, as in a keyring
        conffile = source.config_file or (DEFAULT_CONF if os.path.exists(DEFAULT_CONF) else None)
        self.source = source
        self._ioctxs: dict[str, Any] = {}
        try:
            self.rados = rados.Rados(rados_id=source.auth_user or "admin",
                                     conffile=conffile, conf=conf)
            self.rados.connect(timeout=CONNECT_TIMEOUT_S)
        except rados.Error as err:
            where = host or conffile or "the default monitors"
            raise ceph_error(err, f"cannot connect to Ceph at {where} as "
                                  f"client.{source.auth_user or 'admin'}") from None

    def __enter__(self) -> RbdCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for ioctx in self._ioctxs.values():
            ioctx.close()
        self._ioctxs.clear()
        self.rados.shutdown()

    @property
    def fsid(self) -> str:
        return str(self.rados.get_fsid())

    def ioctx(self, pool: str) -> Any:
        if pool not in self._ioctxs:
            rados, _ = modules()
            try:
                self._ioctxs[pool] = self.rados.open_ioctx(pool)
            except rados.Error as err:
                raise ceph_error(err, f"cannot open pool {pool}") from None
        return self._ioctxs[pool]

    @contextmanager
    def image(self, pool: str, name: str, *, snapshot: str | None = None,
              read_only: bool = True) -> Iterator[Any]:
        """An open ``rbd.Image`` (read-only unless asked): ``pool/name[@snapshot]``."""
        _, rbd = modules()
        try:
            image = rbd.Image(self.ioctx(pool), name, snapshot=snapshot, read_only=read_only)
        except rbd.ImageNotFound:
            raise ImageMissing(f"no RBD image {pool}/{name}"
                            + (f"@{snapshot}" if snapshot else "")) from None
        except rbd.Error as err:
            raise ceph_error(err, f"cannot open RBD image {pool}/{name}") from None
        try:
            yield image
        finally:
            image.close()
