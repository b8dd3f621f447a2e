"""Options every command takes, with the same meaning before or after the command's name.

``snaptui --library DIR images`` and ``snaptui images --library DIR`` are one request: the
options are added to the top-level parser and to every subparser with ``default=SUPPRESS``, so
a subparser never resets what was given before the command (argparse copies only what it saw),
and the real defaults are filled in once after parsing.

``-c URI`` may be given several times (a fleet: fleet/hosts.py): ``args.uris`` holds them all in
order (those before the command first: the subparser keeps its own list under another name, as
argparse would otherwise replace the first list by the second), ``args.uri`` the first one (or
None) for what works on one host.
"""

from __future__ import annotations

import argparse
from typing import Any

GLOBAL_DEFAULTS: dict[str, Any] = {
    "cloud": None, "insecure": False, "verbose": False, "library": None,
}


URIS_AFTER = "uris_after_command"


def add_common_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """Add -c, --os-cloud, --insecure, -v and --library to ``parser`` (``top``: the main one)."""
    suppress = argparse.SUPPRESS
    parser.add_argument("-c", "--connect", metavar="URI", dest="uris" if top else URIS_AFTER,
                        action="append", default=suppress,
                        help="libvirt URI, repeatable for several hosts (default: [[hosts]] "
                             "in config.toml, else LIBVIRT_DEFAULT_URI, else qemu:///system "
                             "as root, qemu:///session otherwise)")
    parser.add_argument("--os-cloud", metavar="NAME", dest="cloud", default=suppress,
                        help="cloud in clouds.yaml (default: OS_CLOUD)")
    parser.add_argument("--insecure", action="store_true", default=suppress,
                        help="do not verify TLS certificates of Keystone and Glance")
    parser.add_argument("-v", "--verbose", action="store_true", default=suppress,
                        help="log debug messages (and show the traceback of an internal error)")
    parser.add_argument("--library", metavar="DIR", default=suppress,
                        help="local image library directory; without --os-cloud, images go "
                             "to (and are listed from) it even when OS_CLOUD is set")


def fill_global_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Give every common option its default where neither place on the line set it."""
    for name, value in GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    uris = [*getattr(args, "uris", []), *getattr(args, URIS_AFTER, [])]
    if hasattr(args, URIS_AFTER):
        delattr(args, URIS_AFTER)
    args.uris = list(dict.fromkeys(uris))
    args.uri = args.uris[0] if args.uris else None
    return args
