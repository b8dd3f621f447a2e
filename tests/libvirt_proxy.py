"""A unix-socket relay in front of the lab's libvirtd: a "host" that can be made to die and come
back (``stop``/``start``) without touching the daemon the other tests share.

``qemu+unix:///system?socket=PATH`` reaches libvirtd through it; ``stop`` closes every relayed
connection (the clients see EOF, as when a hypervisor goes away) and removes the socket (new
connections are refused until ``start``).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from pathlib import Path

LIBVIRT_SOCK = "/var/run/libvirt/libvirt-sock"


class LibvirtProxy:
    """Relays each connection to ``target`` on its own thread until ``stop``."""

    def __init__(self, path: Path, target: str = LIBVIRT_SOCK) -> None:
        self.path, self.target = path, target
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.path}"

    def start(self) -> None:
        self._stop.clear()
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(self.path))
        listener.listen()
        listener.settimeout(0.1)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            conns, self._conns = self._conns, []
            listener, self._listener = self._listener, None
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        if listener is not None:
            listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _accept(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client = listener.accept()[0]
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(self.target)
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while not self._stop.is_set():
                for key, _ in sel.select(timeout=0.2):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()
