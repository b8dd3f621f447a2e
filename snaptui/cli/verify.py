"""``snaptui verify IMAGE``: boot an existing Glance or library image to prove it works."""

from __future__ import annotations

import argparse
import asyncio
import json

from snaptui.cli.output import line, note
from snaptui.cli.snapshot import add_verify_options


def register(sub: argparse._SubParsersAction, common) -> None:
    p = sub.add_parser("verify", help="boot an image on a throwaway overlay (no network) and "
                       "mark it snaptui_verified when its guest agent (or console) answers")
    common(p)
    p.add_argument("image", help="image id or name (Glance, or the library with --library)")
    p.add_argument("--domain", help="copy this domain's machine, firmware and boot settings "
                   "(default: the image's source domain when it is on this host)")
    add_verify_options(p)
    p.add_argument("--json", action="store_true", help="one JSON object with the outcome")
    p.set_defaults(handler=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    from snaptui.core.engine.preflight.checks import new_job_id
    from snaptui.core.engine.preflight.quiesce import check_verify_options
    from snaptui.core.images.factory import open_store, resolve_destination
    from snaptui.core.libvirt.host import LibvirtHost
    from snaptui.core.verify.boot import VerifyFailed
    from snaptui.core.verify.image import find_image, verify_stored

    check_verify_options(args.verify_console, args.verify_timeout, args.verify_accel)
    destination = resolve_destination(None, args.cloud, args.library)
    store = open_store(destination, cloud=args.cloud, library=args.library)
    image = find_image(store, args.image)
    host = LibvirtHost(args.uri).connect()
    try:
        result = asyncio.run(verify_stored(
            store, host, image, job_id=new_job_id(), domain=args.domain,
            console_regex=args.verify_console, timeout=args.verify_timeout,
            accel=args.verify_accel))
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
                          "seconds": result.seconds}))
    else:
        how = "guest agent answered" if result.method == "agent" else "console matched"
        line(f"image {image.name!r} ({image.id}) verified: {how} {result.seconds:.1f} s "
             "after the start")
        note(f"marked snaptui_verified={result.method} in {store.location}")
    return 0
