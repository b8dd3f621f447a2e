"""Thin asyncio adapter over the ``qemu-img`` tool: typed results, its own error messages, progress.

Every call is an argv list run with ``asyncio.create_subprocess_exec``; a disk in use by a guest
is only ever opened read-only with ``force_share`` (``-U``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from snaptui.core.errors import BadInput, NotFound, QemuImgError
from snaptui.core.models import ImageFileInfo, InternalSnapshot

log = logging.getLogger(__name__)

QEMU_IMG = os.environ.get("SNAPTUI_QEMU_IMG") or "qemu-img"

# Seconds qemu-img gets to exit after SIGTERM before it is killed.
TERMINATE_GRACE = 5.0

_PROGRESS_RE = re.compile(rb"\(\s*(\d+(?:\.\d+)?)\s*/\s*100%\)")


def qemu_img_binary() -> str:
    """The qemu-img to run: env ``SNAPTUI_QEMU_IMG`` (read at call time) or ``QEMU_IMG``."""
    return os.environ.get("SNAPTUI_QEMU_IMG") or QEMU_IMG


@dataclass(frozen=True)
class CheckResult:
    """Outcome of ``qemu-img check``; ``supported`` is False for formats without checks (raw)."""

    ok: bool
    corruptions: int = 0
    leaks: int = 0
    check_errors: int = 0
    image_end_offset: int | None = None
    message: str = ""
    supported: bool = True


# ---------------------------------------------------------------- running qemu-img


def _tool_message(stderr: bytes | str) -> str:
    """qemu-img's stderr as one line, without its ``qemu-img: `` prefixes."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("qemu-img: "):
            line = line[len("qemu-img: "):]
        if line:
            lines.append(line)
    return " ".join(lines)


async def _spawn(argv: list[str], **kwargs: Any) -> asyncio.subprocess.Process:
    log.debug("running %s", argv)
    try:
        return await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, **kwargs
        )
    except FileNotFoundError as exc:
        raise QemuImgError(f"qemu-img not found: {argv[0]}", argv=argv, returncode=127) from exc


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after a grace period; always reaps the child."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), TERMINATE_GRACE)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


async def _run(argv: list[str]) -> tuple[int, bytes, bytes]:
    """Run qemu-img to completion; kill it if the awaiting task is cancelled."""
    proc = await _spawn(argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await proc.communicate()
    except BaseException:
        await _terminate(proc)
        raise
    assert proc.returncode is not None
    return proc.returncode, out, err


def _fail(argv: list[str], rc: int, err: bytes) -> QemuImgError:
    message = _tool_message(err) or f"{' '.join(argv[:2])} failed with exit code {rc}"
    return QemuImgError(message, argv=argv, returncode=rc)


def _require(path: str | Path) -> str:
    """Absolute path of an existing file, or NotFound naming it."""
    text = os.fspath(path)
    if not os.path.exists(text):
        raise NotFound(f"no such file: {text}")
    return os.path.abspath(text)


# ---------------------------------------------------------------- info / snapshots


def _snapshot(raw: dict[str, Any]) -> InternalSnapshot:
    stamp = datetime.fromtimestamp(int(raw.get("date-sec", 0)), tz=UTC)
    clock_ns = int(raw.get("vm-clock-sec", 0)) * 1_000_000_000 + int(raw.get("vm-clock-nsec", 0))
    secs, ns = divmod(clock_ns, 1_000_000_000)
    hours, rest = divmod(secs, 3600)
    minutes, secs = divmod(rest, 60)
    return InternalSnapshot(
        id=str(raw.get("id", "")),
        name=str(raw.get("name", "")),
        date=stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        vm_size=int(raw.get("vm-state-size", 0)),
        vm_clock=f"{hours:02d}:{minutes:02d}:{secs:02d}.{ns // 1_000_000:03d}",
    )


def _apparent_size(filename: str) -> int:
    try:
        return os.stat(filename).st_size
    except OSError:  # json:/nbd: filenames and the like have no host file
        return 0


def _image_info(raw: dict[str, Any], chain: tuple[ImageFileInfo, ...] = ()) -> ImageFileInfo:
    filename = str(raw.get("filename", ""))
    specific = (raw.get("format-specific") or {}).get("data") or {}
    corrupt = specific.get("corrupt")
    return ImageFileInfo(
        path=filename,
        format=str(raw.get("format", "")),
        virtual_size=int(raw.get("virtual-size", 0)),
        actual_size=int(raw.get("actual-size", 0)),
        apparent_size=_apparent_size(filename),
        snapshots=tuple(_snapshot(s) for s in raw.get("snapshots") or ()),
        backing_file=raw.get("full-backing-filename") or raw.get("backing-filename"),
        backing_chain=chain,
        corrupt=bool(corrupt) if corrupt is not None else None,
        cluster_size=raw.get("cluster-size"),
        compression_type=specific.get("compression-type"),
        dirty=bool(raw.get("dirty-flag", False)),
    )


def _from_chain(entries: list[dict[str, Any]]) -> ImageFileInfo:
    """Build the top image, whose backing_chain holds the rest (each with its own tail)."""
    built: ImageFileInfo | None = None
    backing: tuple[ImageFileInfo, ...] = ()
    for raw in reversed(entries):
        built = _image_info(raw, backing)
        backing = (built, *backing)
    assert built is not None
    return built


def _reading_argv(command: str, target: str, *, force_share: bool, fmt: str | None,
                  options: tuple[str, ...] = ()) -> list[str]:
    """argv of a command that reads ``target`` and answers JSON; ``-U`` when it is in use."""
    argv = [qemu_img_binary(), command, "--output=json", *options]
    if force_share:
        argv.append("-U")
    if fmt:
        argv += ["-f", fmt]
    return [*argv, target]


async def info(
    path: str | Path, *, force_share: bool = False, chain: bool = True, fmt: str | None = None
) -> ImageFileInfo:
    """``qemu-img info`` as an ImageFileInfo; ``fmt`` skips format probing (safer for raw)."""
    target = _require(path)
    argv = _reading_argv("info", target, force_share=force_share, fmt=fmt,
                         options=("--backing-chain",) if chain else ())
    rc, out, err = await _run(argv)
    if rc != 0:
        raise _fail(argv, rc, err)
    try:
        data = json.loads(out)
    except ValueError as exc:
        raise QemuImgError(f"unreadable qemu-img info output for {target}", argv=argv) from exc
    entries = data if isinstance(data, list) else [data]
    if not entries:
        raise QemuImgError(f"qemu-img info returned nothing for {target}", argv=argv)
    return _from_chain(entries)


async def snapshot_list(path: str | Path, *, force_share: bool = False) -> list[InternalSnapshot]:
    """Internal snapshots of a qcow2 image, oldest first (from info's JSON)."""
    return list((await info(path, force_share=force_share, chain=False)).snapshots)


async def _snapshot_op(flag: str, path: str | Path, name: str) -> None:
    if not name:
        raise BadInput("a snapshot name is required")
    argv = [qemu_img_binary(), "snapshot", flag, name, _require(path)]
    rc, _, err = await _run(argv)
    if rc != 0:
        raise _fail(argv, rc, err)


async def snapshot_create(path: str | Path, name: str) -> None:
    """Create internal snapshot ``name`` (the image must not be in use)."""
    await _snapshot_op("-c", path, name)


async def snapshot_delete(path: str | Path, name: str) -> None:
    """Delete internal snapshot ``name`` (the image must not be in use)."""
    await _snapshot_op("-d", path, name)


# ---------------------------------------------------------------- check / compare / create


async def check(
    path: str | Path, *, force_share: bool = False, fmt: str | None = None
) -> CheckResult:
    """``qemu-img check``: corruption (exit 2) and leaks (exit 3) are results, not errors."""
    target = _require(path)
    argv = _reading_argv("check", target, force_share=force_share, fmt=fmt)
    rc, out, err = await _run(argv)
    message = _tool_message(err)
    if rc == 63:
        return CheckResult(ok=True, message=message, supported=False)
    if rc not in (0, 2, 3):
        raise _fail(argv, rc, err)
    try:
        data = json.loads(out)
    except ValueError as exc:
        raise QemuImgError(message or f"unreadable qemu-img check output for {target}",
                           argv=argv, returncode=rc) from exc
    corruptions = int(data.get("corruptions", 0))
    leaks = int(data.get("leaks", 0))
    check_errors = int(data.get("check-errors", 0))
    return CheckResult(
        ok=rc == 0 and corruptions == 0 and leaks == 0 and check_errors == 0,
        corruptions=corruptions,
        leaks=leaks,
        check_errors=check_errors,
        image_end_offset=data.get("image-end-offset"),
        message=message,
    )


async def compare(
    a: str | Path,
    b: str | Path,
    *,
    fmt_a: str | None = None,
    fmt_b: str | None = None,
    strict: bool = False,
    force_share: bool = False,
) -> bool:
    """True when the two images' guest-visible contents are identical."""
    argv = [qemu_img_binary(), "compare"]
    if fmt_a:
        argv += ["-f", fmt_a]
    if fmt_b:
        argv += ["-F", fmt_b]
    if strict:
        argv.append("-s")
    if force_share:
        argv.append("-U")
    argv += [_require(a), _require(b)]
    rc, _, err = await _run(argv)
    if rc == 0:
        return True
    if rc == 1:
        return False
    raise _fail(argv, rc, err)


def _snapshot_of(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _precreate(path: Path, exclusive: bool = False) -> bool:
    """Create ``path`` 0600 for qemu-img; True when we created it. ``exclusive``: an existing
    path (a file, or a link planted in a shared dir) is refused, never written through."""
    if exclusive and os.path.lexists(path):
        raise BadInput(f"{path} exists already: snaptui writes only files it creates")
    if path.exists():
        return False
    if not path.parent.is_dir():
        raise NotFound(f"no such directory: {path.parent}")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    except PermissionError as exc:
        raise BadInput(f"cannot create {path}: permission denied") from exc
    os.close(fd)
    return True


def _discard(path: Path, created: bool, before: tuple[int, int, int] | None) -> None:
    """Remove a partial output: ours, or a pre-existing file that qemu-img has rewritten."""
    if created or (before is not None and _snapshot_of(path) != before):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            path.unlink()


async def create(
    path: str | Path,
    fmt: str,
    size: int | str | None = None,
    *,
    backing_file: str | Path | None = None,
    backing_format: str | None = None,
) -> None:
    """``qemu-img create`` a new 0600 image (never over an existing path)."""
    target = Path(os.path.abspath(path))
    argv = [qemu_img_binary(), "create", "-q", "-f", fmt]
    if backing_file is not None:
        argv += ["-b", os.fspath(backing_file)]
        if backing_format:
            argv += ["-F", backing_format]
    argv.append(str(target))
    if size is not None:
        argv.append(str(size))
    created = _precreate(target, exclusive=True)
    try:
        rc, _, err = await _run(argv)
    except BaseException:
        _discard(target, created, None)
        raise
    if rc != 0:
        _discard(target, created, None)
        raise _fail(argv, rc, err)


# ---------------------------------------------------------------- convert


@functools.cache
def best_compression_type() -> str:
    """"zstd" when this qemu-img can write zstd-compressed qcow2, else "zlib" (probed once)."""
    with tempfile.TemporaryDirectory(prefix="snaptui-probe-") as tmp:
        probe = os.path.join(tmp, "probe.qcow2")
        try:
            proc = subprocess.run(
                [qemu_img_binary(), "create", "-q", "-f", "qcow2", "-o",
                 "compression_type=zstd", probe, "1M"],
                stdin=subprocess.DEVNULL, capture_output=True, timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            return "zlib"
    return "zstd" if proc.returncode == 0 else "zlib"


def convert_argv(
    src: str,
    dst: str,
    *,
    out_format: str,
    src_format: str | None = None,
    snapshot_name: str | None = None,
    compress: bool = False,
    compression_type: str | None = None,
    force_share: bool = False,
    cache: str | None = None,
    src_cache: str | None = None,
    parallel: int | None = None,
    out_of_order: bool = False,
    sparse_size: str | None = None,
) -> list[str]:
    """The ``qemu-img convert -p`` argv for these options (shown in logs and dry runs)."""
    argv = [qemu_img_binary(), "convert", "-p"]
    if src_format:
        argv += ["-f", src_format]
    argv += ["-O", out_format]
    if compress:
        argv.append("-c")
    if compression_type:
        argv += ["-o", f"compression_type={compression_type}"]
    if force_share:
        argv.append("-U")
    if cache:
        argv += ["-t", cache]
    if src_cache:
        argv += ["-T", src_cache]
    if parallel is not None:
        argv += ["-m", str(parallel)]
    if out_of_order:
        argv.append("-W")
    if sparse_size is not None:
        argv += ["-S", sparse_size]
    if snapshot_name:
        argv += ["-l", f"snapshot.name={snapshot_name}"]
    return [*argv, src, dst]


def rebase_argv(path: str, backing_file: str, *, fmt: str, backing_format: str) -> list[str]:
    """The ``qemu-img rebase -p`` argv (safe mode: where the old and new backing differ, the
    old one's data is written into the image first; the new backing file is only read)."""
    return [qemu_img_binary(), "rebase", "-p", "-f", fmt, "-b", backing_file,
            "-F", backing_format, path]


async def _pump_progress(
    stream: asyncio.StreamReader, on_progress: Callable[[float], None] | None
) -> None:
    """Read ``(NN.NN/100%)`` updates, separated by CR or LF, until qemu-img closes stdout."""
    buffer = b""
    while chunk := await stream.read(4096):
        buffer += chunk
        *records, buffer = re.split(rb"[\r\n]", buffer)
        for record in records:
            match = _PROGRESS_RE.search(record)
            if match and on_progress is not None:
                on_progress(min(100.0, float(match.group(1))))
    match = _PROGRESS_RE.search(buffer)
    if match and on_progress is not None:
        on_progress(min(100.0, float(match.group(1))))


async def convert(
    src: str | Path,
    dst: str | Path,
    *,
    out_format: str,
    src_format: str | None = None,
    snapshot_name: str | None = None,
    compress: bool = False,
    compression_type: str | None = None,
    force_share: bool = False,
    cache: str | None = None,
    src_cache: str | None = None,
    parallel: int | None = None,
    out_of_order: bool = False,
    sparse_size: str | None = None,
    on_progress: Callable[[float], None] | None = None,
    cancel: asyncio.Event | None = None,
) -> None:
    """``qemu-img convert -p`` with progress; on failure or cancel the partial output is removed.

    Setting ``cancel`` (or cancelling the task) stops qemu-img and raises CancelledError.
    """
    argv = convert_argv(
        _require(src), os.path.abspath(dst), out_format=out_format, src_format=src_format,
        snapshot_name=snapshot_name, compress=compress, compression_type=compression_type,
        force_share=force_share, cache=cache, src_cache=src_cache, parallel=parallel,
        out_of_order=out_of_order, sparse_size=sparse_size,
    )
    await run_convert(argv, on_progress=on_progress, cancel=cancel)


async def run_convert(argv: list[str], *, on_progress: Callable[[float], None] | None = None,
                      cancel: asyncio.Event | None = None, exclusive: bool = False,
                      pass_fds: tuple[int, ...] = ()) -> None:
    """Run a ``convert_argv`` or ``rebase_argv`` list (last item: the file written);
    ``exclusive``: a new file only; ``pass_fds``: descriptors qemu-img inherits (a secret
    object's ``file=/dev/fd/N``)."""
    target = Path(os.path.abspath(argv[-1]))
    if cancel is not None and cancel.is_set():
        raise asyncio.CancelledError(f"convert to {target} cancelled before it started")
    before = _snapshot_of(target)
    created = _precreate(target, exclusive)
    proc: asyncio.subprocess.Process | None = None
    tasks: list[asyncio.Task[Any]] = []
    try:
        proc = await _spawn(argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                            pass_fds=pass_fds)
        assert proc.stdout is not None and proc.stderr is not None
        pump = asyncio.create_task(_pump_progress(proc.stdout, on_progress))
        errors = asyncio.create_task(proc.stderr.read())
        tasks += [pump, errors]
        waiting: set[asyncio.Task[Any]] = {pump}
        if cancel is not None:
            cancelled = asyncio.create_task(cancel.wait())
            tasks.append(cancelled)
            waiting.add(cancelled)
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if cancel is not None and cancel.is_set():
            raise asyncio.CancelledError(f"convert to {target} cancelled")
        pump.result()  # re-raise an on_progress failure
        err = await errors
        rc = await proc.wait()
        if rc != 0:
            raise _fail(argv, rc, err)
    except BaseException:
        if proc is not None:
            await _terminate(proc)
        _discard(target, created, before)
        raise
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if created:
        os.chmod(target, 0o600)
