"""Command line: ``snaptui`` opens the dashboard; subcommands run everything headless.

A thin shell over the core: parse options, build adapters, call the core, print. One handler
here turns every failure into one line on stderr and an exit code, never a traceback (``-v``
shows the traceback of an internal error).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from snaptui import __version__
from snaptui.cli import output
from snaptui.cli.common import add_common_options, fill_global_defaults
from snaptui.core.errors import BadInput, SnaptuiError

Handler = Callable[[argparse.Namespace], int]

EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug of ours, not the operator's input
EXIT_OS_ERROR = 74  # EX_IOERR: the environment (a path, a permission, a full disk)
EXIT_BROKEN_PIPE = 141  # what a process killed by SIGPIPE reports (``snaptui jobs | head``)

log = logging.getLogger("snaptui")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="snaptui",
        description="Turn libvirt guest disks into Glance images, visibly and safely.",
    )
    parser.add_argument("--version", action="version", version=f"snaptui {__version__}")
    add_common_options(parser, top=True)
    parser.add_argument("--demo", action="store_true",
                        help="open the dashboard on the embedded demo lab (no libvirtd, no cloud)")
    parser.add_argument("--demo-speed", metavar="N", type=float,
                        help="demo jobs take the time a real host's would (1, the default), "
                             "N times faster, or 0: no pacing")
    parser.add_argument("--theme", help="dashboard theme (built-in or a file in themes/)")
    parser.add_argument("--remote-protocol", metavar="N", type=int, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from snaptui.cli import (
        audit,
        cleanup,
        fleet_info,
        inventory,
        jobs,
        prune,
        restore,
        schedule,
        snapshot,
        verify,
    )

    for module in (inventory, snapshot, restore, jobs, cleanup, prune, schedule, audit, verify,
                   fleet_info):
        module.register(sub, add_common_options)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; common options keep their value wherever they were given.
    ``args.argv`` keeps the words as typed (a fleet host's command is forwarded from them)."""
    words = list(sys.argv[1:] if argv is None else argv)
    args = fill_global_defaults(build_parser().parse_args(words))
    args.argv = words
    return args


def _security_setup(args: argparse.Namespace) -> None:
    """--insecure for this process and the jobs it starts; warn about exposed secrets."""
    from snaptui.core.cloud.config import INSECURE_ENV
    from snaptui.core.cloud.secrets_check import exposed_secret_warnings

    if args.insecure:
        os.environ[INSECURE_ENV] = "1"
    # keystoneauth warns about what then fails as our one error line; keep it for -v only
    logging.getLogger("keystoneauth").setLevel(logging.DEBUG if args.verbose else logging.ERROR)
    for warning in exposed_secret_warnings():
        output.warn(warning)


def _check_remote_protocol(args: argparse.Namespace) -> None:
    """``--remote-protocol N``: another host's snaptui drives this one (core/fleet/ssh.py) and
    needs protocol N; an older one here says so in one line (before anything runs)."""
    from snaptui.core.fleet.ssh import PROTOCOL, too_old_here

    wanted = getattr(args, "remote_protocol", None)
    if wanted is not None and wanted > PROTOCOL:
        raise BadInput(too_old_here(wanted))


def _recover_before(args: argparse.Namespace) -> None:
    """Finish or undo jobs whose process died; a failure here never stops the command asked."""
    if args.demo:
        return
    from snaptui.core.engine.recover import recover

    try:
        for job_id, outcome in recover():
            output.note(f"snaptui: recovered job {job_id}: {outcome}")
    except Exception as err:  # any failure: say it in one line and go on
        output.warn(f"could not check for interrupted jobs: {_one_line(err)}")
        log.debug("recover failed", exc_info=True)


def _one_line(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror}{where}"
    return " ".join(str(err).split()) or type(err).__name__


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def run(args: argparse.Namespace) -> int:
    """Run what ``args`` asks for (recover first, then the command or the dashboard)."""
    from snaptui.core.paths import check_dir_variables

    check_dir_variables()
    _check_remote_protocol(args)
    _security_setup(args)
    _recover_before(args)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        from snaptui.ui.launch import run_dashboard

        return run_dashboard(args)
    return handler(args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="snaptui: %(levelname)s: %(message)s")
    try:
        return run(args)
    except SnaptuiError as err:
        output.error(str(err))
        return err.exit_code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        output.note("snaptui: interrupted")
        return 130
    except OSError as err:
        output.error(_one_line(err))
        log.debug("traceback", exc_info=True)
        return EXIT_OS_ERROR
    except Exception as err:  # the last net: one line, traceback only with -v
        hint = "" if args.verbose else " (run with -v for the traceback)"
        output.note(f"snaptui: internal error: {type(err).__name__}: {_one_line(err)}{hint}")
        log.debug("traceback", exc_info=True)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
