"""``snaptui remote-info --json``: what the other side of a fleet asks first.

Prints ``{"protocol": N, "version": V}``; core/fleet/ssh.py's ``remote_info`` compares N with its
own ``PROTOCOL`` and says in one line what to install when the host's snaptui is older.
"""

from __future__ import annotations

import argparse

from snaptui import __version__
from snaptui.cli.output import line, print_json
from snaptui.core.fleet.ssh import PROTOCOL


def register(sub: argparse._SubParsersAction, common) -> None:
    p = sub.add_parser("remote-info", help="this snaptui's remote protocol and version")
    common(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_remote_info)


def run_remote_info(args: argparse.Namespace) -> int:
    if args.json:
        print_json([{"protocol": PROTOCOL, "version": __version__}])
    else:
        line(f"snaptui {__version__}, remote protocol {PROTOCOL}")
    return 0
