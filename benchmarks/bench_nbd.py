"""Read-only NBD exports of a disk image (qemu-nbd, qemu-storage-daemon) and a minimal Python
NBD reader (fixed newstyle handshake, NBD_OPT_GO, simple replies, one request in flight)."""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
NBD_OPT_GO = 7
NBD_REP_ACK = 1
NBD_REP_INFO = 3
NBD_CMD_READ = 0
NBD_CMD_DISC = 2


@contextlib.contextmanager
def nbd_export(server: str, image: Path, fmt: str, sock: Path) -> Iterator[str]:
    """Export ``image`` read-only on a unix socket with ``server`` (qemu-nbd or
    qemu-storage-daemon); yields the ``nbd+unix://`` URL; stops the server by its pid."""
    if server == "qemu-nbd":
        argv = ["qemu-nbd", "--read-only", "--persistent", "-f", fmt, "-k", str(sock),
                "--cache=writeback", str(image)]
        export = ""
    else:
        argv = ["qemu-storage-daemon",
                "--blockdev", f"driver=file,node-name=file0,filename={image},read-only=on",
                "--blockdev", f"driver={fmt},node-name=fmt0,file=file0,read-only=on",
                "--nbd-server", f"addr.type=unix,addr.path={sock}",
                "--export", "type=nbd,id=exp0,node-name=fmt0,name=src"]
        export = "src"
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"{argv[0]} did not start: {err.strip()}")
            time.sleep(0.01)
        yield f"nbd+unix:///{export}?socket={sock}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sock.unlink(missing_ok=True)


def _recv(conn: socket.socket, n: int, into: memoryview | None = None) -> bytes:
    if into is not None:
        got = 0
        while got < n:
            k = conn.recv_into(into[got:n])
            if not k:
                raise ConnectionError("NBD server closed the connection")
            got += k
        return b""
    data = bytearray()
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("NBD server closed the connection")
        data += chunk
    return bytes(data)


def python_read(sock: Path, export: str, length: int, block: int = 4 * 1024 * 1024) -> float:
    """Read the first ``length`` bytes of the export in ``block`` requests; seconds."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(str(sock))
    try:
        magic, opt, _flags = struct.unpack(">QQH", _recv(conn, 18))
        if magic != 0x4E42444D41474943 or opt != IHAVEOPT:
            raise ConnectionError("not a newstyle NBD server")
        conn.sendall(struct.pack(">I", 1 | 2))  # FIXED_NEWSTYLE | NO_ZEROES
        name = export.encode()
        payload = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
        conn.sendall(struct.pack(">QII", IHAVEOPT, NBD_OPT_GO, len(payload)) + payload)
        while True:
            _magic, _opt, rtype, rlen = struct.unpack(">QIII", _recv(conn, 20))
            body = _recv(conn, rlen) if rlen else b""
            if rtype == NBD_REP_ACK:
                break
            if rtype & 0x80000000:
                raise ConnectionError(f"NBD_OPT_GO refused ({rtype:#x}): {body[4:]!r}")
        buf = memoryview(bytearray(block))
        t0, offset, handle = time.monotonic(), 0, 0
        while offset < length:
            n = min(block, length - offset)
            handle += 1
            conn.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, NBD_CMD_READ, handle,
                                     offset, n))
            rmagic, error, rhandle = struct.unpack(">IIQ", _recv(conn, 16))
            if rmagic != SIMPLE_REPLY_MAGIC or error or rhandle != handle:
                raise ConnectionError(f"NBD read at {offset} failed (error {error})")
            _recv(conn, n, buf)
            offset += n
        seconds = time.monotonic() - t0
        conn.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, NBD_CMD_DISC, 0, 0, 0))
        return seconds
    finally:
        conn.close()
