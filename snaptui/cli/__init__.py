"""Command line: ``snaptui`` opens the dashboard; subcommands run everything headless.

A thin shell over the core: parse options, build adapters, call the core, print. Every
SnaptuiError becomes one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from snaptui import __version__
from snaptui.core.errors import SnaptuiError

Handler = Callable[[argparse.Namespace], int]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--connect", metavar="URI", dest="uri", default=argparse.SUPPRESS,
                        help="libvirt URI (default: LIBVIRT_DEFAULT_URI, else qemu:///system "
                             "as root, qemu:///session otherwise)")
    parser.add_argument("--os-cloud", metavar="NAME", dest="cloud", default=argparse.SUPPRESS,
                        help="cloud in clouds.yaml (default: OS_CLOUD)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snaptui",
        description="Turn libvirt guest disks into Glance images, visibly and safely.",
    )
    parser.add_argument("--version", action="version", version=f"snaptui {__version__}")
    _common(parser)
    parser.set_defaults(uri=None, cloud=None)  # same options after a subcommand don't reset these
    parser.add_argument("--demo", action="store_true",
                        help="open the dashboard on the embedded demo lab (no libvirtd, no cloud)")
    parser.add_argument("--demo-speed", metavar="N", type=float, help="demo jobs take the time a real host's would (1, the default), N times faster, or 0: no pacing")  # noqa: E501
    parser.add_argument("--theme", help="dashboard theme (built-in or a file in themes/)")
    parser.add_argument("--library", metavar="DIR",
                        help="local image library directory (when no cloud is used)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--insecure", action="store_true",
                        help="do not verify TLS certificates of Keystone and Glance")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from snaptui.cli import audit, cleanup, inventory, jobs, snapshot

    for module in (inventory, snapshot, jobs, cleanup, audit):
        module.register(sub, _common)
    return parser


def _security_setup(args: argparse.Namespace) -> None:
    """--insecure for this process and the jobs it starts; warn about exposed secrets."""
    from snaptui.core.cloud_config import INSECURE_ENV
    from snaptui.core.secrets_check import exposed_secret_warnings

    if args.insecure:
        os.environ[INSECURE_ENV] = "1"
    # keystoneauth warns about what then fails as our one error line; keep it for -v only
    logging.getLogger("keystoneauth").setLevel(logging.DEBUG if args.verbose else logging.ERROR)
    for warning in exposed_secret_warnings():
        print(f"snaptui: warning: {warning}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="snaptui: %(levelname)s: %(message)s")
    _security_setup(args)
    try:
        if not getattr(args, "no_recover", False) and not args.demo:
            from snaptui.core.engine.recover import recover

            for job_id, outcome in recover():
                print(f"snaptui: recovered job {job_id}: {outcome}", file=sys.stderr)
        handler: Handler | None = getattr(args, "handler", None)
        if handler is None:
            from snaptui.ui.launch import run_dashboard

            return run_dashboard(args)
        return handler(args)
    except SnaptuiError as err:
        print(f"snaptui: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("snaptui: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
