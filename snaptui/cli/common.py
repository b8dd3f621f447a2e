"""Options every command takes, with the same meaning before or after the command's name.

``snaptui --library DIR images`` and ``snaptui images --library DIR`` are one request: the
options are added to the top-level parser and to every subparser with ``default=SUPPRESS``, so
a subparser never resets what was given before the command (argparse copies only what it saw),
and the real defaults are filled in once after parsing.
"""

from __future__ import annotations

import argparse
from typing import Any

GLOBAL_DEFAULTS: dict[str, Any] = {
    "uri": None, "cloud": None, "insecure": False, "verbose": False, "library": None,
}


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Add -c, --os-cloud, --insecure, -v and --library to ``parser``."""
    suppress = argparse.SUPPRESS
    parser.add_argument("-c", "--connect", metavar="URI", dest="uri", default=suppress,
                        help="libvirt URI (default: LIBVIRT_DEFAULT_URI, else qemu:///system "
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
    return args
