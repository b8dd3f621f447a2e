"""``snaptui cleanup``: find what interrupted snapshot runs left behind and remove the safe ones.

Lists, asks, then removes; ``--dry-run`` prints the equivalent virsh / qemu-img / openstack
commands and changes nothing. Exit 0 only when everything selected was removed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any

from rich.text import Text

from snaptui.cli.output import (
    ask,
    console,
    line,
    note,
    plain,
    print_json,
    print_table,
    table,
)
from snaptui.core.cleanup import (
    DEFAULT_OLDER_THAN_S,
    Finding,
    Kind,
    RemovalResult,
    ScanProgress,
    ScanReport,
    parse_kinds,
    preselected,
    remove_all,
    scan,
)
from snaptui.core.errors import BadInput
from snaptui.core.present import DURATION_EXAMPLES, parse_duration, size_text

Common = Callable[[argparse.ArgumentParser], None]
# images too: whether a snapshot's instance still exists is a question for the host; rbd: the
# cluster is reached as the host's RBD disks reach it.
HOST_KINDS = {Kind.INTERNAL, Kind.MANAGED_SAVE, Kind.TRANSIENT, Kind.BLOCKJOB, Kind.IMAGES,
              Kind.RBD}
# rbd: whether a clone in Glance's pool has its image is a question for Glance.
STORE_KINDS = {Kind.IMAGES, Kind.RBD}


def register(sub: argparse._SubParsersAction, common: Common) -> None:
    """Add the ``cleanup`` subcommand."""
    p = sub.add_parser(
        "cleanup", help="find and remove leftovers of interrupted snapshot runs",
        description="Find internal snapshots, scratch files, stale managed saves, transient "
                    "domains, stray block jobs, stuck images and RBD snapshots and clones "
                    "direct snapshots left; remove the safe ones.")
    common(p)
    act = p.add_mutually_exclusive_group()
    act.add_argument("--dry-run", action="store_true",
                     help="print the equivalent virsh / qemu-img / openstack commands; "
                          "change nothing")
    act.add_argument("--yes", action="store_true", help="remove without asking")
    p.add_argument("--only", metavar="KINDS",
                   help="comma-separated kinds: " + ",".join(k.value for k in Kind))
    p.add_argument("--scan", metavar="DIR", action="append", default=[],
                   help="also look for qcow2 leftovers under DIR (repeatable)")
    p.add_argument("--older-than", metavar="DURATION",
                   help=f"pre-select leftovers at least this old ({DURATION_EXAMPLES}; "
                        "default 24h)")
    p.add_argument("--key", metavar="KEY", action="append", default=[],
                   help="act on exactly this finding (its key from --json), even one not "
                        "pre-selected; repeatable")
    p.add_argument("--domain", metavar="NAME", action="append", default=[],
                   help="only this domain's leftovers (name or uuid; repeatable)")
    p.add_argument("--include-unowned", action="store_true",
                   help="with --domain: also select that domain's leftovers snaptui did not "
                        "make (an operator's or old Nova's internal snapshots, overlays); "
                        "still refused on a running guest's disk unless libvirt manages them")
    p.add_argument("--json", action="store_true", help="print JSON (sizes in bytes)")
    p.add_argument("--remote-cloud", action="store_true",
                   help="on an SSH host: use that host's own clouds.yaml instead of sending "
                   "your Keystone login through the SSH channel")
    p.add_argument("--auth-stdin", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(handler=run_cleanup)


# ---------------------------------------------------------------- scanning


def _open_host(args: argparse.Namespace, only: frozenset[Kind]) -> Any:
    if not (only & HOST_KINDS or args.scan or args.domain):
        return None
    from snaptui.core.libvirt.host import LibvirtHost

    return LibvirtHost(args.uri).connect()


def _open_store(args: argparse.Namespace, only: frozenset[Kind]) -> Any:
    if not only & STORE_KINDS:
        return None
    from snaptui.core.images.factory import open_store, resolve_destination

    if not getattr(args, "verbose", False):
        logging.getLogger("keystoneauth").setLevel(logging.ERROR)
    if args.auth_stdin:  # a fleet host's cleanup: the operator's login (cli/fleet.py)
        from snaptui.core.cloud.forwarded_login import login_on_stdin

        store, _ = login_on_stdin()
        if store is not None:
            return store
    library = getattr(args, "library", None)
    destination = resolve_destination(None, args.cloud, library)
    return open_store(destination, cloud=args.cloud, library=library)


def _scan(args: argparse.Namespace, host: Any, store: Any, only: frozenset[Kind],
          older_than_s: float) -> ScanReport:
    err = console(stderr=True)
    if not err.is_terminal or args.json:
        return asyncio.run(scan(host, store, scan_dirs=args.scan, only=only,
                                older_than_s=older_than_s, domains=args.domain,
                                older_than_given=args.older_than is not None))
    with err.status("scanning...") as status:
        def on_progress(p: ScanProgress) -> None:
            of = f"/{p.total}" if p.total is not None else ""
            status.update(plain(f"scanning {p.kind}: {p.done}{of} {p.what}"))
        return asyncio.run(scan(host, store, scan_dirs=args.scan, only=only,
                                older_than_s=older_than_s, on_progress=on_progress,
                                domains=args.domain,
                                older_than_given=args.older_than is not None))


def _select(report: ScanReport, keys: list[str],
            unowned_of: frozenset[str]) -> tuple[list[Finding], list[RemovalResult]]:
    """The findings to act on (pre-selected, or exactly --key) and results for missing keys;
    ``unowned_of``: domains whose leftovers snaptui did not make are selected too."""
    if not keys:
        return [f for f in report.findings if preselected(f, unowned_of)], []
    found = report.by_key()
    missing = [RemovalResult(k, False, "", reason="no such finding (gone, or not scanned "
                             "with these --only / --scan / --domain options)") for k in keys
               if k not in found]
    return [found[k] for k in dict.fromkeys(keys) if k in found], missing


# ---------------------------------------------------------------- output


def _finding_json(f: Finding, selected: set[str],
                  results: dict[str, RemovalResult]) -> dict[str, Any]:
    data = {"key": f.key, "kind": str(f.kind), "location": f.location, "size": f.size,
            "safe": f.safe, "reason": f.reason, "action": f.action,
            "selected": f.key in selected, "domain": f.domain, "label": f.label,
            "unowned": f.unowned, "commands": list(f.commands), "refused": f.refused,
            "details": f.details}
    if f.key in results:
        data["result"] = results[f.key].to_json()
    return data


def _print_list(report: ScanReport, selected: set[str]) -> None:
    rows = table("kind", "location", "size", "safe", "reason")
    for f in report.findings:
        mark = Text("yes", style="green") if f.key in selected else \
            Text("no", style="bright_black")
        rows.add_row(str(f.kind), f.location, size_text(f.size), mark, f.reason)
    print_table(rows)


def _total(findings: list[Finding]) -> int:
    return sum(f.size or 0 for f in findings)


def _confirm(chosen: list[Finding]) -> bool:
    return ask(f"Remove {len(chosen)} selected leftover{'s' if len(chosen) != 1 else ''} "
               f"({size_text(_total(chosen))} reclaimable)? [y/N] ")


def _report_results(results: list[RemovalResult], by_key: dict[str, Finding]) -> None:
    for r in results:
        where = by_key[r.key].location if r.key in by_key else r.key
        if r.ok:
            note(f"removed {where}: {size_text(r.reclaimed)} reclaimed")
        else:
            note(f"snaptui: not removed: {where}: {r.reason}")


# ---------------------------------------------------------------- the command


def run_cleanup(args: argparse.Namespace) -> int:
    """Scan, list, confirm, remove; exit 0 when everything selected was removed (on an SSH
    host: there, cli/fleet.py)."""
    from snaptui.cli.fleet import route_cleanup

    routed = route_cleanup(args)
    if routed is not None:
        return routed
    only = parse_kinds(args.only)
    older_than_s = (DEFAULT_OLDER_THAN_S if args.older_than is None
                    else parse_duration(args.older_than, "--older-than"))
    if args.include_unowned and not args.domain:
        # Naming the domains keeps "every unowned snapshot on the host" from being one typo
        # away; their leftovers are somebody's, and what they held is not coming back.
        raise BadInput("--include-unowned needs --domain NAME (the domains whose leftovers "
                       "snaptui did not make may go)")
    host = _open_host(args, only)
    try:
        store = _open_store(args, only)
        report = _scan(args, host, store, only, older_than_s)
        unowned_of = frozenset(f.domain for f in report.findings if f.domain) \
            if args.include_unowned else frozenset()
        chosen, missing = _select(report, args.key, unowned_of)
        selected = {f.key for f in chosen}
        for problem in report.problems:
            note(f"snaptui: warning: {problem}")
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
        if not args.dry_run and not args.yes and chosen and not interactive:
            raise BadInput(f"{len(chosen)} leftover{'s' if len(chosen) != 1 else ''} selected "
                           "but not on a terminal: pass --yes to remove, --dry-run to see "
                           "the commands")
        if not args.json:
            _print_list(report, selected)
            note(f"{len(chosen)} selected of {len(report.findings)} found; "
                 f"{size_text(_total(chosen))} reclaimable")
        if args.dry_run:
            results = asyncio.run(remove_all(chosen, host, store, dry_run=True))
            if not args.json:
                for f in chosen:
                    line(f"# {f.kind}: {f.location}")
                    for command in f.commands:
                        line(command)
        elif not chosen:
            results = []
        elif args.yes or _confirm(chosen):
            results = asyncio.run(remove_all(chosen, host, store))
        else:
            note("nothing removed")
            return 1
    finally:
        if host is not None:
            host.close()
    results += missing
    by_result = {r.key: r for r in results}
    reclaimed = sum(r.reclaimed for r in results)
    failed = [r for r in results if not r.ok]
    if args.json:
        print_json({
            "dry_run": args.dry_run, "domains": args.domain,
            "include_unowned": args.include_unowned,
            "findings": [_finding_json(f, selected, by_result) for f in report.findings],
            "missing": [r.to_json() for r in missing], "problems": report.problems,
            "selected": len(chosen), "reclaimable": _total(chosen), "reclaimed": reclaimed,
            "failed": len(failed),
        })
    elif not args.dry_run:
        _report_results(results, report.by_key())
        if results:
            note(f"{len(results) - len(failed)} removed, {len(failed)} not; "
                 f"{size_text(reclaimed)} reclaimed (measured)")
    return 1 if failed else 0
