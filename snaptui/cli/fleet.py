"""Commands on a fleet: which host a command is for, and forwarding it to snaptui over SSH.

The hosts come from ``-c URI`` (repeatable), else ``[[hosts]]`` in config.toml, else the one
default host (fleet/hosts.py). A command naming one domain or job takes ``HOST:NAME`` when there
are several hosts. On a ``qemu+ssh://`` host, ``snapshot`` (cli/remote_snapshot.py), ``info``,
``cleanup``, ``jobs``, ``cancel``, ``recover`` and ``schedule`` (cli/schedule.py) run as snaptui
there (core/fleet/ssh.py); on a local host they run here as always. ``jobs`` and ``recover``
cover every host, each row with its ``host``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

from rich.text import Text

from snaptui.cli import output
from snaptui.core.errors import BadInput, SnaptuiError
from snaptui.core.fleet.hosts import HostSpec, pick_host, resolve_hosts, split_host

LOCAL_ONLY_FLAGS = ("--remote-cloud",)


def hosts_of(args: argparse.Namespace) -> list[HostSpec]:
    """This run's hosts (``-c`` URIs, else ``[[hosts]]``, else the default host)."""
    from snaptui.core.settings import load_settings

    return resolve_hosts(getattr(args, "uris", None) or None, load_settings())


def is_fleet(hosts: Sequence[HostSpec]) -> bool:
    return len(hosts) > 1 or any(h.remote for h in hosts)


def pick(args: argparse.Namespace, text: str) -> tuple[HostSpec, str]:
    """The host ``[HOST:]NAME`` is on, and NAME; for a local host ``args.uri`` becomes its URI
    (so the single-host code below works unchanged)."""
    host, rest = pick_host(text, hosts_of(args))
    if not host.remote:
        args.uri = host.uri
    return host, rest


def forwarded_argv(args: argparse.Namespace, host: HostSpec, old: str | None = None,
                   new: str | None = None) -> list[str]:
    """The command line as typed, for ``host``: without our ``-c`` options and local-only
    flags, with ``-c`` of the host's own libvirt URI, and ``old`` (HOST:NAME) replaced by
    ``new``."""
    from snaptui.core.fleet.remote_jobs import host_local_uri

    raw: list[str] = list(getattr(args, "argv", []))
    out: list[str] = []
    skip = False
    replaced = old is None
    for word in raw:
        if skip:
            skip = False
            continue
        if word in ("-c", "--connect"):
            skip = True
            continue
        if word.startswith("--connect=") or (word.startswith("-c") and not word.startswith("--")
                                             and len(word) > 2) or word in LOCAL_ONLY_FLAGS:
            continue
        if not replaced and word == old:
            out.append(new or "")
            replaced = True
            continue
        out.append(word)
    return ["-c", host_local_uri(host), *out]


# ---------------------------------------------------------------- info and cleanup


def route_info(args: argparse.Namespace) -> int | None:
    """``info HOST:DOMAIN[:TARGET]`` on an SSH host runs there; None: run it here."""
    if _is_path(args.target):
        return None
    host, rest = pick(args, args.target)
    if not host.remote:
        args.target = rest
        return None
    from snaptui.core.fleet.ssh import run_passthrough

    return run_passthrough(host, forwarded_argv(args, host, args.target, rest))


def _is_path(text: str) -> bool:
    return "/" in text or os.path.exists(text)  # as cli/inventory.py tells a path


def route_cleanup(args: argparse.Namespace) -> int | None:
    """``cleanup`` for one SSH host (``-c URI`` or a single [[hosts]] entry) runs there, with
    the operator's login on its stdin; None: run it here."""
    hosts = hosts_of(args)
    remote = [h for h in hosts if h.remote]
    if not remote:
        args.uri = hosts[0].uri
        return None
    if len(hosts) > 1:
        names = ", ".join(h.name for h in hosts)
        raise BadInput(f"cleanup works on one host at a time ({names}): pick one with -c URI")
    host = remote[0]
    if not (args.yes or args.dry_run or args.json):
        raise BadInput(f"{host.name}: cleanup over SSH cannot ask; add --dry-run to look or "
                       "--yes to remove the pre-selected leftovers")
    line, extra = login_line(args)
    from snaptui.core.fleet.ssh import run_passthrough

    return run_passthrough(host, [*forwarded_argv(args, host), *extra], stdin_line=line)


def login_line(args: argparse.Namespace, destination: str | None = None
               ) -> tuple[str | None, list[str]]:
    """The operator's Keystone login for a remote command's stdin, and the flag that tells it
    to read it: (None, []) with --remote-cloud or when the destination is not Glance."""
    from snaptui.core.images.factory import resolve_destination

    if getattr(args, "remote_cloud", False):
        return None, []
    if resolve_destination(destination, args.cloud, args.library) != "glance":
        return None, []
    from snaptui.core.images.factory import open_store

    store: Any = open_store("glance", cloud=args.cloud)
    store.cloud.authenticate()
    state = store.auth_state()
    return (json.dumps(state), ["--auth-stdin"]) if state else (None, [])


# ---------------------------------------------------------------- jobs, cancel, recover


def _local_job_rows() -> list[dict[str, Any]]:
    from snaptui.core.engine.jobs import list_jobs

    return [j.to_json() for j in list_jobs()]


def fleet_job_rows(hosts: Sequence[HostSpec]) -> tuple[list[dict[str, Any]], list[str]]:
    """Every host's jobs (rows with ``host``), and a one-line problem per host that failed."""
    from snaptui.core.fleet.remote_jobs import list_remote_jobs

    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    local_done = False
    for host in hosts:
        try:
            if host.remote:
                rows += list_remote_jobs(host, problems)
            elif not local_done:  # local URIs share one journal
                rows += [{**r, "host": host.name} for r in _local_job_rows()]
                local_done = True
        except SnaptuiError as err:
            problems.append(str(err))
    return rows, problems


def run_jobs_fleet(args: argparse.Namespace, hosts: Sequence[HostSpec]) -> int:
    rows, problems = fleet_job_rows(hosts)
    for problem in problems:
        output.warn(problem)
    if args.json:
        output.print_json(rows)
        return 1 if problems else 0
    from snaptui.core.engine.states import look
    from snaptui.core.present import local_time_text

    grid = output.table("host", "job", "domain", "mode", "status", "started", "image")
    for row in rows:
        glyph, style = look(row.get("status", "?"))
        started = local_time_text(row.get("started"))
        grid.add_row(row["host"], row.get("job_id", "?"), row.get("domain", "?"),
                     row.get("mode", "?"), Text(f"{glyph} {row.get('status')}", style=style),
                     started, str(row.get("image_name") or ""))
    output.print_table(grid)
    return 1 if problems else 0


def job_host(args: argparse.Namespace, text: str) -> tuple[HostSpec | None, str]:
    """``HOST:JOB`` or ``--host NAME`` → (that host if remote, JOB); (None, JOB) for local.
    JOB is checked here (one BadInput line), before it is sent anywhere or names a file."""
    from snaptui.core.engine.journal import check_job_id

    hosts = hosts_of(args)
    named = getattr(args, "host", None)
    if named:
        for host in hosts:
            if host.name == named:
                return (host if host.remote else None), check_job_id(text)
        raise BadInput(f"no host named {named!r} ({', '.join(h.name for h in hosts)})")
    found, rest = split_host(text, hosts)
    if found is None and len(hosts) == 1 and hosts[0].remote:
        found = hosts[0]
    return (found if found is not None and found.remote else None), check_job_id(rest)


def run_recover_fleet(args: argparse.Namespace, hosts: Sequence[HostSpec]) -> int:
    from snaptui.core.engine.recover import recover
    from snaptui.core.fleet.remote_jobs import recover_remote_jobs

    rows: list[dict[str, Any]] = []
    failed = False
    local_done = False
    for host in hosts:
        try:
            if host.remote:
                problems: list[str] = []
                rows += recover_remote_jobs(host, problems)
                for problem in problems:
                    output.warn(problem)
                failed = failed or bool(problems)
            elif not local_done:
                rows += [{"job_id": j, "outcome": o, "host": host.name} for j, o in recover()]
                local_done = True
        except SnaptuiError as err:
            output.warn(str(err))
            failed = True
    if args.json:
        output.print_json(rows)
    else:
        for row in rows:
            output.line(f"{row['host']}:{row['job_id']}: {row['outcome']}")
        if not rows:
            output.note("nothing to recover")
    return 1 if failed else 0
