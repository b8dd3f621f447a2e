"""``snaptui prune``: keep what Proxmox-style retention rules keep, delete the rest.

``--dry-run`` is the simulator: every image with keep (and the rule that kept it, or why it is
not prune's to decide) or remove. Deleting needs ``--yes``; neither is one refusal line.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from snaptui.cli.output import line, note, print_json, print_table, table
from snaptui.core.errors import BadInput
from snaptui.core.keep.retention import RULES, KeepRules, Mark

PERIODS = {"hourly": "hours", "daily": "days", "weekly": "ISO weeks", "monthly": "months",
           "yearly": "years"}
MARK_STYLE = {Mark.KEEP: "green", Mark.REMOVE: "red", Mark.PROTECTED: "cyan",
              Mark.BUSY: "yellow", Mark.LEFT: "dim"}


def add_keep_options(p: argparse.ArgumentParser) -> None:
    """``--keep-last`` ... ``--keep-yearly`` (prune and schedule add)."""
    g = p.add_argument_group("retention (Proxmox's keep-* rules, applied in this order)")
    for rule in RULES:
        what = ("the N newest images" if rule == "last" else
                f"the newest image of each of the last N {PERIODS[rule]}")
        g.add_argument(f"--keep-{rule}", type=int, metavar="N", dest=f"keep_{rule}",
                       help=f"keep {what}")


def keep_rules(args: argparse.Namespace) -> KeepRules:
    return KeepRules(**{rule: getattr(args, f"keep_{rule}") for rule in RULES})


def register(sub: argparse._SubParsersAction, common) -> None:
    p = sub.add_parser("prune", help="delete old snapshots and backups by retention rules",
                       description="Apply keep-last/-hourly/-daily/-weekly/-monthly/-yearly "
                       "(Proxmox's semantics) to each guest's images; only images snaptui made "
                       "on this host are ever removed.")
    common(p)
    p.add_argument("--domain", metavar="NAME", action="append", default=[],
                   help="only this guest's images (name or uuid; repeatable; default: all)")
    p.add_argument("--backup-type", metavar="NAME",
                   help="only backups of this type (default: every type, and plain snapshots, "
                   "each pruned on its own)")
    add_keep_options(p)
    act = p.add_mutually_exclusive_group()
    act.add_argument("--dry-run", action="store_true",
                     help="show every image with keep (which rule) or remove; delete nothing")
    act.add_argument("--yes", action="store_true", help="delete what the rules do not keep")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--auth-stdin", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(handler=run_prune)


def _open_store(args: argparse.Namespace) -> Any:
    from snaptui.core.images.factory import open_store, resolve_destination

    if not getattr(args, "verbose", False):
        logging.getLogger("keystoneauth").setLevel(logging.ERROR)
    if getattr(args, "auth_stdin", False):  # a fleet host's prune: the operator's login
        from snaptui.core.cloud.forwarded_login import login_on_stdin

        store, _ = login_on_stdin()
        if store is not None:
            return store
    destination = resolve_destination(None, args.cloud, args.library)
    return open_store(destination, cloud=args.cloud, library=args.library)


def domain_uuids(uri: str | None, names: list[str]) -> frozenset[str]:
    """The uuids of the named domains this host's libvirt knows (a guest gone since keeps
    its images' snaptui_domain, matched by name)."""
    if not names:
        return frozenset()
    from snaptui.core.errors import SnaptuiError
    from snaptui.core.libvirt.host import LibvirtHost

    found = set()
    try:
        with LibvirtHost(uri) as host:
            for name in names:
                try:
                    found.add(host.get_domain(name).uuid)
                except SnaptuiError:
                    continue
    except SnaptuiError as err:
        note(f"snaptui: libvirt not reachable ({err}); --domain matches image properties only")
    return frozenset(found)


def run_prune(args: argparse.Namespace) -> int:
    from snaptui.core.keep.prune import Scope, apply, plan_for_store
    from snaptui.core.keep.rotation import check_options

    rules = keep_rules(args).check()
    check_options(args.backup_type, None)
    if not (args.dry_run or args.yes):
        raise BadInput("prune deletes images: --dry-run shows what it would remove, --yes "
                       "removes it")
    store = _open_store(args)
    scope = Scope(domains=frozenset(args.domain), uuids=domain_uuids(args.uri, args.domain),
                  backup_type=args.backup_type)
    plan = plan_for_store(store, rules, scope)
    if args.yes:
        apply(store, plan)
    failed = [r for r in plan.rows if r.result.startswith("failed")]
    if args.json:
        print_json({"rules": rules.to_json(), "dry_run": bool(args.dry_run),
                    "location": store.location, "images": [r.to_json() for r in plan.rows]})
    else:
        print_plan(plan, dry_run=args.dry_run, location=store.location)
    return 1 if failed else 0


def print_plan(plan, *, dry_run: bool, location: str) -> None:
    from rich.text import Text

    from snaptui.core.present import date_text

    if not plan.rows:
        note(f"snaptui: no snapshot or backup image in scope in {location}")
        return
    out = table("guest", "type", "disk", "created", "image", "name", "decision")
    for row in plan.rows:
        decision = row.result if row.result else row.decision.text()
        out.add_row(row.group[0], row.group[1] or "snapshot", row.group[2] or "—",
                    date_text(row.image.created_at), row.image.id, row.image.name,
                    Text(decision, style=MARK_STYLE[row.decision.mark]))
    print_table(out)
    removals = plan.removals
    verb = "would remove" if dry_run else "removed"
    done = removals if dry_run else [r for r in removals if r.result.startswith("deleted")]
    line(f"{plan.rules.text()}: {verb} {len(done)} of {len(plan.rows)} images in {location}")
