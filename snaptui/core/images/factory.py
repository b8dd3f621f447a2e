"""Choose and open the image store: Glance when a cloud is configured, else the local library."""

from __future__ import annotations

import os
from pathlib import Path

from snaptui.core.errors import BadInput
from snaptui.core.images.library import ImageLibrary
from snaptui.core.images.store import ImageStore
from snaptui.core.paths import library_dir

DESTINATIONS = ("glance", "library")


def resolve_destination(destination: str | None, cloud: str | None,
                        library: str | os.PathLike[str] | None = None) -> str:
    """'glance' or 'library': ``destination`` when named; else the library when a library
    directory was given on the command line and no cloud was (the explicit option beats an
    OS_CLOUD in the environment); else glance when a cloud is configured, else the library.
    """
    if destination in DESTINATIONS:
        return destination
    if destination is not None:
        raise BadInput(f"unknown destination {destination!r} (glance or library)")
    if library and not cloud:
        return "library"
    from snaptui.core.cloud.config import cloud_configured  # openstacksdk: only when needed

    return "glance" if cloud_configured(cloud) else "library"


def open_store(destination: str, *, cloud: str | None = None,
               library: str | Path | None = None, insecure: bool | None = None) -> ImageStore:
    """An ImageStore for the destination (Glance sessions are authenticated lazily).

    Glance's TLS certificates are verified unless ``insecure`` (default: ``--insecure`` /
    SNAPTUI_INSECURE, see ``cloud_config.insecure_requested``)."""
    if destination == "glance":
        from snaptui.core.cloud.config import load_session
        from snaptui.core.images.glance import GlanceImages

        return GlanceImages(load_session(cloud, insecure=insecure))
    return ImageLibrary(Path(library) if library else library_dir())
