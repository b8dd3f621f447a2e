"""``snaptui verify IMAGE``: boot an existing Glance or library image to prove it works."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from snaptui.cli.output import line, note
from snaptui.cli.snapshot import add_verify_options
from snaptui.core.errors import BadInput
from snaptui.core.present import DURATION_EXAMPLES, parse_duration


def register(sub: argparse._SubParsersAction, common) -> None:
    p = sub.add_parser("verify", help="boot an image on a throwaway overlay (no network; an "
                       "image in Ceph: a copy-on-write clone of its snap) and mark it "
                       "snaptui_verified when its guest agent (or console) answers")
    common(p)
    p.add_argument("image", nargs="?",
                   help="image id or name (Glance, or the library with --library)")
    p.add_argument("--domain", action="append", default=[],
                   help="copy this domain's machine, firmware and boot settings (default: the "
                   "image's source domain when it is on this host); with --stale: only this "
                   "guest's images (repeatable)")
    p.add_argument("--stale", metavar="AGE",
                   help="instead of IMAGE: every snapshot or backup not verified for AGE "
                   f"({DURATION_EXAMPLES}) or never, oldest proof first")
    p.add_argument("--budget", metavar="DURATION",
                   help="with --stale: start no boot check that could end after this long")
    add_verify_options(p)
    p.add_argument("--json", action="store_true", help="one JSON object with the outcome")
    p.add_argument("--auth-stdin", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(handler=run_verify)


def _open_store(args: argparse.Namespace) -> Any:
    """The store the image is in; with --auth-stdin (a schedule's run, a fleet host's verify)
    Glance on the login read from the first line of stdin."""
    from snaptui.core.images.factory import open_store, resolve_destination

    if getattr(args, "auth_stdin", False):
        from snaptui.core.cloud.forwarded_login import login_on_stdin

        store, _ = login_on_stdin()
        if store is not None:
            return store
    destination = resolve_destination(None, args.cloud, args.library)
    return open_store(destination, cloud=args.cloud, library=args.library)


def run_verify(args: argparse.Namespace) -> int:
    from snaptui.core.engine.preflight.checks import new_job_id
    from snaptui.core.engine.preflight.quiesce import check_verify_options
    from snaptui.core.engine.verify_stored import verify_stored
    from snaptui.core.libvirt.host import LibvirtHost
    from snaptui.core.verify.boot import VerifyFailed
    from snaptui.core.verify.image import find_image

    check_verify_options(args.verify_console, args.verify_timeout, args.verify_accel)
    if (args.image is None) == (args.stale is None):
        raise BadInput("verify takes an IMAGE or --stale AGE, one of them")
    if args.budget is not None and args.stale is None:
        raise BadInput("--budget goes with --stale")
    if args.stale is not None:
        return run_stale(args)
    if len(args.domain) > 1:
        raise BadInput("--domain once: the domain whose boot settings the check copies")
    store = _open_store(args)
    image = find_image(store, args.image)
    host = LibvirtHost(args.uri).connect()
    try:
        result, via = asyncio.run(verify_stored(
            store, host, image, job_id=new_job_id(),
            domain=args.domain[0] if args.domain else None,
            console_regex=args.verify_console, timeout=args.verify_timeout,
            accel=args.verify_accel, said=note))
    except VerifyFailed as failed:
        if args.json:
            print(json.dumps({"event": "failed", "image_id": image.id, "error": failed.reason,
                              "console": failed.console}))
        else:
            for text in failed.console:  # the guest's own output: note() cleans it
                note(f"  console: {text}")
            note(f"snaptui: image {image.id} not verified: {failed.reason}")
        return 1
    finally:
        host.close()
    if args.json:
        print(json.dumps({"event": "verified", "image_id": image.id, "method": result.method,
                          "seconds": result.seconds, "via": via}))
    else:
        how = "guest agent answered" if result.method == "agent" else "console matched"
        line(f"image {image.name!r} ({image.id}) verified: {how} {result.seconds:.1f} s "
             "after the start")
        note(f"marked snaptui_verified={result.method} in {store.location}")
    return 0


def run_stale(args: argparse.Namespace) -> int:
    """``verify --stale AGE [--domain D]... [--budget T]``."""
    import time

    from snaptui.core.engine.preflight.checks import new_job_id
    from snaptui.core.engine.verify_stored import verify_stored
    from snaptui.core.keep.stale import failed_properties, reverify, stale_images
    from snaptui.core.libvirt.host import LibvirtHost
    from snaptui.core.verify.boot import VerifyFailed

    age = parse_duration(args.stale, "--stale")
    budget = parse_duration(args.budget, "--budget") if args.budget is not None else None
    if budget is not None and budget < args.verify_timeout:
        raise BadInput(f"--budget {args.budget} is shorter than one boot check "
                       f"(--verify-timeout {args.verify_timeout:g} s)")
    store = _open_store(args)
    images = stale_images(store.iter_images(), age, time.time(), frozenset(args.domain))
    host = LibvirtHost(args.uri).connect()

    async def check(image) -> str | None:
        try:
            await verify_stored(store, host, image, job_id=new_job_id(), domain=None,
                                console_regex=args.verify_console,
                                timeout=args.verify_timeout, accel=args.verify_accel, said=note)
        except VerifyFailed as failed:
            store.set_properties(image.id, failed_properties(failed.reason))
            return failed.reason
        except BadInput as err:
            return str(err)
        return None

    def said(result) -> None:
        if args.json:
            return
        text = f"{result.outcome} {result.image_id} ({result.name!r})"
        if result.outcome != "skipped":
            text += f" in {result.seconds:.1f} s"
        line(text + (f": {result.detail}" if result.detail else ""))

    try:
        results = asyncio.run(reverify(images, budget_s=budget, timeout_s=args.verify_timeout,
                                       check=check, said=said))
    finally:
        host.close()
    if args.json:
        print(json.dumps([r.to_json() for r in results]))
    elif not results:
        note(f"snaptui: no image in {store.location} needs verifying (none older than "
             f"{args.stale})")
    return 1 if any(r.outcome == "failed" for r in results) else 0
