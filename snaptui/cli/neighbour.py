"""``snaptui snapshot``'s good-neighbour options: ``--priority`` and ``--bwlimit``."""

from __future__ import annotations

import argparse
from typing import Any

from snaptui.core.priority import DEFAULT_PRIORITY, PRIORITIES
from snaptui.core.throttle import parse_rate


def add_neighbour_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--priority", choices=PRIORITIES, default=DEFAULT_PRIORITY,
                   help="CPU and I/O priority of the job and its children: low (default: nice "
                   "10, best-effort I/O level 7), idle (nice 19, idle I/O class), normal")
    p.add_argument("--bwlimit", metavar="RATE",
                   help="cap extraction and upload at RATE bytes per second (e.g. 50M, 1G; "
                   "K/M/G are binary)")


def neighbour_request_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The request's priority and bwlimit; a bad RATE is one BadInput line (exit 2)."""
    return {"priority": args.priority,
            "bwlimit": parse_rate(args.bwlimit) if args.bwlimit is not None else None}
