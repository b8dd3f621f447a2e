"""``snaptui audit [--json] [--since WHEN]``: the audit log of destructive actions."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta

from snaptui.cli.output import note, print_json, print_table, table
from snaptui.core.audit import audit_path, read
from snaptui.core.errors import BadInput
from snaptui.core.present import DURATION_EXAMPLES, parse_duration, parse_iso


def register(sub: argparse._SubParsersAction, common) -> None:
    p = sub.add_parser("audit", help="who did what destructive action to which guest and image")
    common(p)
    p.add_argument("--json", action="store_true", help="one JSON list of records")
    p.add_argument("--since", metavar="WHEN",
                   help="only records from WHEN on: an ISO date/time (UTC unless it says) or "
                        f"an age like {DURATION_EXAMPLES}")
    p.set_defaults(handler=run_audit)


def parse_since(text: str) -> datetime:
    """``2025-01-31``, ``2025-01-31T10:00``, ``...+02:00``, or an age (``90m``, ``1d12h``,
    ``1w``: ``--older-than``'s grammar) before now; BadInput for anything else."""
    when = parse_iso(text.strip())
    if when is not None:
        return when
    try:
        age_s = parse_duration(text)
    except BadInput:
        raise BadInput(f"--since: {text!r} is neither an ISO date/time nor an age like "
                       f"{DURATION_EXAMPLES}") from None
    return datetime.now(UTC) - timedelta(seconds=age_s)


def run_audit(args: argparse.Namespace) -> int:
    try:
        records = list(read(parse_since(args.since) if args.since is not None else None))
    except OSError as err:
        raise BadInput(f"cannot read the audit log {audit_path()}: {err.strerror}") from None
    if args.json:
        print_json(records)
        return 0
    if not records:
        note(f"no audit records in {audit_path()}")
        return 0
    rows = table("time", "who", "action", "target", "disk", "image", "result", "error")
    for r in records:
        who = r.get("who") or {}
        user = f"{who.get('user', '?')}({who.get('uid', '?')})"
        if who.get("sudo_user"):
            user += f" sudo:{who['sudo_user']}"
        if who.get("ssh_client"):
            user += f" from {str(who['ssh_client']).split()[0]}"
        rows.add_row(str(r.get("time", "")), user, str(r.get("action", "")),
                     str(r.get("target", "")), str(r.get("disk") or ""),
                     str(r.get("image") or r.get("image_name") or ""),
                     str(r.get("result", "")), str(r.get("error") or ""))
    print_table(rows)
    return 0
