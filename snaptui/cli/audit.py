"""``snaptui audit [--json] [--since WHEN]``: the audit log of destructive actions."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta

from snaptui.cli.output import note, print_json, print_table, table
from snaptui.core.audit import audit_path, read
from snaptui.core.errors import BadInput

_RELATIVE = re.compile(r"^(\d+)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def register(sub: argparse._SubParsersAction, common) -> None:
    p = sub.add_parser("audit", help="who did what destructive action to which guest and image")
    common(p)
    p.add_argument("--json", action="store_true", help="one JSON list of records")
    p.add_argument("--since", metavar="WHEN", type=parse_since,
                   help="only records from WHEN on: an ISO date/time (UTC unless it says) or "
                        "an age like 30m, 12h, 7d")
    p.set_defaults(handler=run_audit)


def parse_since(text: str) -> datetime:
    """``2025-01-31``, ``2025-01-31T10:00``, ``...+02:00`` or ``90m``/``12h``/``7d`` ago."""
    text = text.strip()
    match = _RELATIVE.match(text)
    if match:
        delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return datetime.now(UTC) - delta
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO date/time nor an age like 12h") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def run_audit(args: argparse.Namespace) -> int:
    try:
        records = list(read(args.since))
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
