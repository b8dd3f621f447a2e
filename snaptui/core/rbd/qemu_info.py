"""``qemu-img info`` of an RBD disk as QEMU itself opens it (the ``rbd`` block driver).

The disk is named by a ``json:`` filename (pool, image, user, monitors); the cephx key
reaches qemu-img through a pipe as a ``secret`` object (``file=/dev/fd/N``), never in its argv,
the environment or a file.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from snaptui.core.errors import QemuImgError
from snaptui.core.models import NetworkSource


def blockdev(source: NetworkSource, *, snapshot: str | None = None,
             secret_id: str | None = None) -> dict[str, Any]:
    """The ``rbd`` driver's options for ``source`` (``key-secret`` names the secret object)."""
    opts: dict[str, Any] = {"driver": "rbd", "pool": source.pool, "image": source.image}
    if snapshot or source.snapshot:
        opts["snapshot"] = snapshot or source.snapshot
    if source.auth_user:
        opts["user"] = source.auth_user
    servers = [{"host": h, "port": str(p or 6789)} for h, p in source.hosts if h]
    if servers:
        opts["server"] = servers
    if source.config_file:
        opts["conf"] = source.config_file
    if secret_id:
        opts["key-secret"] = secret_id
    return opts


SECRET_ID = "sec0"


def secret_object(key_fd: int | None) -> list[str]:
    """The ``--object`` arguments that give qemu-img the cephx key read from ``key_fd``."""
    if key_fd is None:
        return []
    return ["--object", f"secret,id={SECRET_ID},file=/dev/fd/{key_fd},format=base64"]


def json_filename(source: NetworkSource, key_fd: int | None,
                  snapshot: str | None = None) -> str:
    """The ``json:`` filename qemu-img opens ``source`` (``@snapshot``) by; its key is the
    secret object of ``secret_object(key_fd)``."""
    secret = SECRET_ID if key_fd is not None else None
    filename = {"file": blockdev(source, snapshot=snapshot, secret_id=secret)}
    return "json:" + json.dumps(filename, separators=(",", ":"))


def info_argv(source: NetworkSource, key_fd: int | None,
              snapshot: str | None = None) -> list[str]:
    """argv of ``qemu-img info`` for ``source``; the key is read from ``key_fd`` if given."""
    return ["qemu-img", "info", "--output=json", *secret_object(key_fd),
            json_filename(source, key_fd, snapshot)]


def key_pipe(key: str | None) -> int | None:
    """A pipe's read end holding ``key`` (None: no key); the caller closes it once the child
    has it. A few dozen bytes: the pipe's buffer holds them, so nothing blocks."""
    if not key:
        return None
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, key.encode())
    finally:
        os.close(write_fd)
    return read_fd


async def info(source: NetworkSource, key: str | None, snapshot: str | None = None,
               timeout: float = 60.0) -> dict[str, Any]:
    """qemu-img's JSON for the RBD disk (read-only: qemu-img info never writes)."""
    read_fd = key_pipe(key)
    argv = info_argv(source, read_fd, snapshot)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL, pass_fds=(read_fd,) if read_fd is not None else ())
    finally:
        if read_fd is not None:
            os.close(read_fd)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise QemuImgError(f"qemu-img info of rbd:{source.name} timed out after {timeout:.0f} s",
                           argv=argv) from None
    if proc.returncode != 0:
        message = err.decode(errors="replace").strip().splitlines()
        raise QemuImgError(f"qemu-img info of rbd:{source.name}: "
                           f"{message[-1] if message else 'failed'}", argv=argv,
                           returncode=proc.returncode or 1)
    data: dict[str, Any] = json.loads(out)
    return data


def display_url(source: NetworkSource, snapshot: str | None = None) -> str:
    """The disk (``@snapshot``) as an ``rbd:`` URL for people (id and monitors, never the
    key)."""
    parts = [f"rbd:{source.pool}/{source.image}@{snapshot}" if snapshot else f"rbd:{source.name}"]
    if source.auth_user:
        parts.append(f"id={source.auth_user}")
    # qemu's rbd: filename separates options with ':', so a port's colon is escaped
    hosts = ";".join(f"{h}\\:{p}" if p else h for h, p in source.hosts if h)
    if hosts:
        parts.append(f"mon_host={hosts}")
    if source.config_file:
        parts.append(f"conf={source.config_file}")
    return ":".join(parts)
