"""A small loopback HTTP proxy in front of the lab's Glance (and Keystone) that injects faults.

The job reaches Glance through the Keystone catalog, so a second proxy in front of Keystone
rewrites the catalog's Glance URL to the Glance proxy; a clouds.yaml copy points a cloud at the
Keystone proxy. Nothing in snaptui is patched: the job runs the real glanceclient and keystoneauth
against real Keystone and Glance, only some requests are held, answered with an error, or have
their connection reset by the proxy.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "content-length", "host"}
HOLD_TIMEOUT_S = 60.0


@dataclass
class Rule:
    """One fault: for the first request matching ``method`` and ``path`` (a regex), do ``action``.

    Actions: ``hold`` (wait for ``release()`` before forwarding), ``status`` (answer ``code``
    after ``after`` bytes of the request body), ``reset`` (RST the client's connection after
    ``after`` body bytes), ``cut`` (forward, then send only ``after`` bytes of the answer's
    body and RST: Glance lost in the middle of a download).
    """

    method: str
    path: str
    action: str
    code: int = 503
    after: int = 0
    arrived: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)  # answered upstream
    _release: threading.Event = field(default_factory=threading.Event)
    fired: bool = False

    def matches(self, method: str, path: str) -> bool:
        return not self.fired and method == self.method and re.search(self.path, path) is not None

    def release(self) -> None:
        self._release.set()

    def wait_arrived(self, timeout: float = 60.0) -> None:
        if not self.arrived.wait(timeout):
            raise AssertionError(f"no {self.method} {self.path} reached the proxy in {timeout} s")


UPLOAD = r"^/v2/images/[^/]+/file$"
CREATE = r"^/v2/images$"


class FaultProxy(ThreadingHTTPServer):
    """Forwards every request to ``upstream``; applies the first matching rule once."""

    daemon_threads = True

    def __init__(self, upstream: str, rewrite: dict[bytes, bytes] | None = None) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rewrite = rewrite or {}
        self.rules: list[Rule] = []
        self.log: list[tuple[str, str, str]] = []  # (method, path, what happened)
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def reset_rules(self) -> None:
        with self._lock:
            for rule in self.rules:
                rule.release()
            self.rules.clear()

    def take(self, method: str, path: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.fired = True
                    return rule
        return None

    def stop(self) -> None:
        self.reset_rules()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultProxy

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._proxy()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET  # noqa: N815

    # -- request body --------------------------------------------------------------------

    def _body_chunks(self) -> Iterator[bytes]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                data = self.rfile.read(size)
                self.rfile.readline()
                yield data
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining > 0:
                data = self.rfile.read(min(remaining, 1 << 16))
                if not data:
                    return
                remaining -= len(data)
                yield data

    def _consume(self, chunks: Iterator[bytes], limit: int) -> int:
        """Read body chunks until ``limit`` bytes arrived (or the body ended)."""
        got = 0
        for data in chunks:
            got += len(data)
            if got >= limit:
                break
        return got

    # -- faults ----------------------------------------------------------------------------

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _answer(self, code: int, message: str) -> None:
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        self.send_response_only(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if code == 401:
            self.send_header("WWW-Authenticate", "Keystone uri='http://127.0.0.1'")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def _proxy(self) -> None:
        chunks = self._body_chunks()
        rule = self.server.take(self.command, self.path.split("?")[0])
        note = "forwarded"
        if rule is not None:
            rule.arrived.set()
            if rule.action == "hold":
                rule._release.wait(HOLD_TIMEOUT_S)
                note = "held, then forwarded"
            elif rule.action == "reset":
                got = self._consume(chunks, rule.after) if rule.after else 0
                self.server.log.append((self.command, self.path, f"reset after {got} bytes"))
                self._reset()
                return
            elif rule.action == "status":
                got = self._consume(chunks, rule.after) if rule.after else 0
                self.server.log.append((self.command, self.path,
                                        f"answered {rule.code} after {got} bytes"))
                self._answer(rule.code, f"injected by the test proxy (HTTP {rule.code})")
                return
        try:
            self._forward(chunks, cut=rule.after if rule is not None and rule.action == "cut"
                          else None)
            if rule is not None and rule.action == "cut":
                note = f"answer cut after {rule.after} bytes"
        except ConnectionRefusedError:  # upstream down: what a load balancer would answer
            self._answer(502, "bad gateway: upstream refused the connection")
            note = f"{note}; upstream refused, answered 502"
        except OSError as err:  # the client or upstream went away: nothing to answer
            note = f"{note}; broken: {err}"
            self.close_connection = True
        self.server.log.append((self.command, self.path, note))
        if rule is not None:
            rule.finished.set()

    def _forward(self, chunks: Iterator[bytes], cut: int | None = None) -> None:
        conn = http.client.HTTPConnection(*self.server.upstream, timeout=300)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", f"{self.server.upstream[0]}:{self.server.upstream[1]}")
            for key, value in self.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    conn.putheader(key, value)
            chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            elif self.headers.get("Content-Length") is not None:
                conn.putheader("Content-Length", self.headers["Content-Length"])
            conn.endheaders()
            for data in chunks:
                conn.send(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            if chunked:
                conn.send(b"0\r\n\r\n")
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        for old, new in self.server.rewrite.items():
            body = body.replace(old, new)
        self.send_response_only(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self._reset()
            return
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True


# -- the cloud that goes through the proxies ------------------------------------------------

FAULT_CLOUD = "snaptui-fault"


@dataclass
class ProxiedCloud:
    """Keystone and Glance proxies plus a clouds.yaml holding the lab's cloud and FAULT_CLOUD."""

    glance: FaultProxy
    keystone: FaultProxy
    config_file: Path
    glance_url: str

    def stop(self) -> None:
        self.glance.stop()
        self.keystone.stop()


def start_proxied_cloud(directory: Path, lab_cloud: str | None = None) -> ProxiedCloud:
    """Start both proxies and write ``directory/clouds.yaml`` (0600) with FAULT_CLOUD."""
    import yaml
    from openstack.config import OpenStackConfig

    from snaptui.core.cloud.config import load_session

    glance_url = load_session(lab_cloud).endpoint("image").rstrip("/")
    config = OpenStackConfig()
    name = lab_cloud or str(config.default_cloud)
    with open(config.config_filename, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    original = data["clouds"][name]
    keystone_url = original["auth"]["auth_url"]
    glance = FaultProxy(glance_url)
    keystone = FaultProxy(keystone_url, rewrite={glance_url.encode(): glance.url.encode()})
    parts = urlsplit(keystone_url)
    proxied = json.loads(json.dumps(original))
    proxied["auth"]["auth_url"] = f"{keystone.url}{parts.path}"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "clouds.yaml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump({"clouds": {name: original, FAULT_CLOUD: proxied}}, handle)
    return ProxiedCloud(glance=glance, keystone=keystone, config_file=path,
                        glance_url=glance_url)
