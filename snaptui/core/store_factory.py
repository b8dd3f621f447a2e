"""Choose and open the image store: Glance when a cloud is configured, else the local library."""

from __future__ import annotations

from pathlib import Path

from snaptui.core.choices import resolve_destination
from snaptui.core.image_library import ImageLibrary
from snaptui.core.image_store import ImageStore
from snaptui.core.paths import library_dir

__all__ = ["open_store", "resolve_destination"]  # the rule lives in core/choices.py


def open_store(destination: str, *, cloud: str | None = None,
               library: str | Path | None = None, insecure: bool | None = None) -> ImageStore:
    """An ImageStore for the destination (Glance sessions are authenticated lazily).

    Glance's TLS certificates are verified unless ``insecure`` (default: ``--insecure`` /
    SNAPTUI_INSECURE, see ``cloud_config.insecure_requested``)."""
    if destination == "glance":
        from snaptui.core.cloud_config import load_session
        from snaptui.core.glance_images import GlanceImages

        return GlanceImages(load_session(cloud, insecure=insecure))
    return ImageLibrary(Path(library) if library else library_dir())
