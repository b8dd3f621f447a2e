"""ImageStore on OpenStack Glance (glanceclient v2 over a keystoneauth1 session).

Uploads stream the file through a reader that hashes (sha512) and reports progress as
glanceclient pulls it; the digest is then compared with Glance's ``os_hash_value``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import glanceclient
from glanceclient import exc as glance_exc
from glanceclient.common import utils
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1.session import Session

from snaptui.core.cloud.config import (
    CloudSession,
    connection_reason,
    keystone_error,
    load_session,
)
from snaptui.core.errors import BadInput, ChecksumMismatch, CloudError, NotFound, SnaptuiError
from snaptui.core.images.store import (
    HASH_ALGO,
    ChunkReader,
    HashingReader,
    ImageSettings,
    ProgressCallback,
    UploadCancelled,
    delete_after_failure,
    validate_formats,
    validate_properties,
)
from snaptui.core.models import ImageRecord
from snaptui.core.throttle import RateLimiter

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100

# Keys of Glance's image schema; everything else on an image is a user property.
STANDARD_KEYS = frozenset({
    "id", "name", "status", "disk_format", "container_format", "size", "virtual_size",
    "created_at", "updated_at", "owner", "visibility", "protected", "checksum", "os_hash_algo",
    "os_hash_value", "min_disk", "min_ram", "tags", "file", "schema", "self", "direct_url",
    "locations", "os_hidden", "stores",
})


DELETE_RETRY_S = (0.5, 1.0, 1.5)  # waits between attempts of a delete answered 5xx


class GlanceImages:
    """ImageStore backed by a Glance v2 service found through the Keystone catalog."""

    kind = "glance"

    def __init__(
        self,
        session: CloudSession | Session,
        *,
        cloud_name: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        if isinstance(session, CloudSession):
            self.cloud = session
        else:
            auth = getattr(session, "auth", None)
            self.cloud = CloudSession(
                name=cloud_name or "cloud", auth_url=str(getattr(auth, "auth_url", "?")),
                username=getattr(auth, "_username", None), region_name=None,
                interface="public", session=session,
            )
        if cloud_name:
            self.cloud.name = cloud_name
        self.page_size = page_size
        self._client_obj: Any = None
        self._endpoint: str | None = None

    @classmethod
    def from_cloud(cls, cloud: str | None = None, **kwargs: Any) -> GlanceImages:
        """Glance of the cloud chosen like ``openstack --os-cloud`` (OS_CLOUD, clouds.yaml...)."""
        return cls(load_session(cloud), **kwargs)

    @property
    def warnings(self) -> list[str]:
        return self.cloud.warnings

    @property
    def location(self) -> str:
        """Cloud name and Glance URL (the Keystone URL until the catalog was read)."""
        return f"{self.cloud.name} ({self._endpoint or self.cloud.auth_url})"

    @property
    def project_id(self) -> str | None:
        """The authenticated project (Nova records it as ``owner_id``); None if unknown."""
        try:
            return self.cloud.session.get_project_id()
        except Exception as err:  # a property must not fail; callers treat None as unknown
            log.debug("project id unavailable: %s", keystone_error(err, self.cloud))
            return None

    def auth_state(self) -> str | None:
        """keystoneauth's auth state (token and catalog) once logged in, else None. A secret:
        handed to a job process over a pipe (jobs.JobProcess), never logged or written."""
        get_state = getattr(getattr(self.cloud.session, "auth", None), "get_auth_state", None)
        try:
            return get_state() if callable(get_state) else None
        except Exception:  # noqa: BLE001 - the job then logs in itself
            return None

    def adopt_auth_state(self, state: str) -> None:
        """Resume a login made by another process (see auth_state); keystoneauth logs in
        again by itself when the token is about to expire or is refused."""
        set_state = getattr(getattr(self.cloud.session, "auth", None), "set_auth_state", None)
        if callable(set_state):
            try:
                set_state(state)
            except Exception as err:  # noqa: BLE001 - log in as usual instead
                log.debug("could not resume the launcher's login: %s", type(err).__name__)

    @property
    def _client(self) -> Any:
        # Authenticating and reading the catalog first keeps Keystone errors apart from Glance's.
        if self._client_obj is None:
            self._endpoint = self.cloud.endpoint("image")
            self._client_obj = glanceclient.Client(
                "2", session=self.cloud.session, interface=self.cloud.interface or "public",
                region_name=self.cloud.region_name or None,
            )
        return self._client_obj

    # -- reading ---------------------------------------------------------------------------

    def iter_images(self, page_size: int | None = None) -> Iterator[ImageRecord]:
        """Every image visible to the user, yielded as each page arrives."""
        client = self._client
        pages = client.images.list(page_size=page_size or self.page_size)
        while True:
            try:
                image = next(pages)
            except StopIteration:
                return
            except Exception as err:
                raise self._error(err, "listing images") from None
            yield self._record(image)

    def show(self, image_id: str) -> ImageRecord:
        """One image; NotFound when Glance has no such image."""
        return self._record(self._get(image_id))

    def _get(self, image_id: str) -> dict[str, Any]:
        client = self._client
        try:
            return dict(client.images.get(image_id))
        except Exception as err:
            raise self._error(err, f"showing image {image_id}", image_id=image_id) from None

    # -- writing ---------------------------------------------------------------------------

    def create(
        self,
        name: str,
        disk_format: str,
        container_format: str = "bare",
        properties: dict[str, str] | None = None,
        settings: ImageSettings | None = None,
        image_id: str | None = None,
    ) -> ImageRecord:
        """Create a queued image with its properties (no data yet); ``settings`` sets Glance's
        own fields (visibility, min_disk, min_ram, tags) and adds its members; ``image_id``
        chooses its id (a direct RBD snapshot's clone is named by it). ``protected`` is
        set by ``set_protected`` once the data is in: a protected image cannot be deleted, and a
        failed job must still be able to delete its half-made image."""
        validate_formats(disk_format, container_format)
        props = validate_properties(properties)
        clash = sorted(STANDARD_KEYS & props.keys())
        if clash:
            raise BadInput(f"image properties may not set Glance's own fields: {', '.join(clash)}")
        fields: dict[str, Any] = {}
        if settings is not None:
            fields = {"visibility": settings.visibility, "min_disk": settings.min_disk,
                      "min_ram": settings.min_ram}
            if settings.tags:
                fields["tags"] = list(settings.tags)
        if image_id:
            fields["id"] = image_id
        client = self._client
        try:
            image = client.images.create(
                name=str(name), disk_format=disk_format, container_format=container_format,
                **fields, **props,
            )
        except Exception as err:
            raise self._error(err, f"creating image {name!r}") from None
        record = self._record(image)
        if settings is not None and settings.visibility == "shared":
            for member in settings.members:
                self._add_member(record.id, member, image)
        return record

    def rbd_stores(self) -> list[dict[str, Any]]:
        """Glance's ``rbd`` stores with their pool and cluster fsid (``/v2/info/stores/detail``:
        admins and service users only; others get a CloudError saying so)."""
        try:
            stores = self._client.images.get_stores_info_detail().get("stores", [])
        except Exception as err:
            raise self._error(err, "reading the stores' details") from None
        return [{"id": s["id"], "pool": s.get("properties", {}).get("pool"),
                 "fsid": s.get("properties", {}).get("fsid")}
                for s in stores if s.get("type") == "rbd"]

    def location_api(self) -> str:
        """How this user gives Glance a location: ``locations`` (the API of Glance 2.17+, for
        service users) or ``multiple-locations`` (a PATCH, when ``show_multiple_locations``)."""
        try:
            session: Any = self.cloud.session
            roles = session.auth.get_access(session).role_names or []
            newer = utils.has_version(self._client.http_client, "v2.17")
        except Exception:  # noqa: BLE001 - the older API is tried then, and says why
            return "multiple-locations"
        return "locations" if newer and "service" in roles else "multiple-locations"

    def add_location(self, image_id: str, url: str, store: str | None,
                     timeout: float = 120.0) -> str:
        """Give the queued image its data's location (nothing is uploaded); wait until it is
        active. Returns the API used (``location_api``)."""
        api = self.location_api()
        try:
            if api == "locations":
                self._client.images.add_image_location(image_id, url)
            else:
                self._client.images.add_location(image_id, url, {"store": store} if store else {})
        except Exception as err:
            raise self._error(err, f"adding location {url} to image {image_id} ({api})",
                              image_id=image_id) from None
        deadline = time.monotonic() + timeout
        while (status := self.show(image_id).status) != "active":
            if status in ("killed", "deleted") or time.monotonic() > deadline:
                raise CloudError(f"image {image_id} is {status} after its location was added")
            time.sleep(0.5)
        return api

    def _add_member(self, image_id: str, project_id: str, image: Any) -> None:
        """Share the image with ``project_id`` (accepted on its behalf is not ours to do)."""
        try:
            self._client.image_members.create(image_id, project_id)
        except Exception as err:
            error = self._error(err, f"adding project {project_id} as a member of image "
                                f"{image_id}", image_id=image_id)
            delete_after_failure(self, image_id, error)
            raise error from None

    def set_protected(self, image_id: str, protected: bool) -> None:
        """Protect the image from deletion, or lift that protection."""
        try:
            self._client.images.update(image_id, protected=protected)
        except Exception as err:
            raise self._error(err, f"setting protected={protected} on image {image_id}",
                              image_id=image_id) from None

    def raw_image(self, image_id: str) -> dict[str, Any]:
        """Glance's whole answer for one image (its own fields and properties); NotFound."""
        return self._get(image_id)

    def members(self, image_id: str) -> list[str]:
        """Project ids the image is shared with."""
        try:
            return [m["member_id"] for m in self._client.image_members.list(image_id)]
        except Exception as err:
            raise self._error(err, f"listing members of image {image_id}",
                              image_id=image_id) from None

    @property
    def user_id(self) -> str | None:
        """The authenticated user (Nova records it as ``user_id``); None if unknown."""
        try:
            return self.cloud.session.get_user_id()
        except Exception:  # noqa: BLE001 - a property must not fail
            return None

    def download(self, image_id: str, out: BinaryIO) -> None:
        """Write the image's data to ``out`` (a file opened by the caller)."""
        try:
            for chunk in self._client.images.data(image_id):
                out.write(chunk)
        except Exception as err:
            raise self._error(err, f"downloading image {image_id}", image_id=image_id) from None

    def iter_data(self, image_id: str) -> Iterator[bytes]:
        """The image's data as Glance sends it, chunk by chunk (a lost connection is a
        CloudError naming the image)."""
        try:
            yield from self._client.images.data(image_id)
        except Exception as err:
            raise self._error(err, f"downloading image {image_id}", image_id=image_id) from None

    def set_properties(self, image_id: str, properties: dict[str, str]) -> None:
        """Add or change properties of an image (a PATCH)."""
        props = validate_properties(properties)
        try:
            self._client.images.update(image_id, **props)
        except Exception as err:
            raise self._error(err, f"updating image {image_id}", image_id=image_id) from None

    def upload(
        self,
        image_id: str,
        path: Path,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        limiter: RateLimiter | None = None,
    ) -> str:
        """Stream ``path`` into the image; return its sha512 hex after checking Glance's hash.

        ChecksumMismatch when Glance's os_hash_value (or size) differs; UploadCancelled on
        cancel. The image itself is not deleted here (``add`` and the engine's undo do that).

        When the token expires mid-upload, keystoneauth logs in again and re-sends the request
        with the stream already half read, which Glance refuses (size mismatch): then the
        upload starts again once, as a fresh PUT from byte 0 with a fresh hash.
        """
        token = self._token()
        try:
            return self._upload_once(image_id, Path(path), on_progress, cancel, limiter=limiter)
        except (UploadCancelled, ChecksumMismatch, NotFound):
            raise
        except SnaptuiError:
            if (cancel is not None and cancel.is_set()) or self._token() in (None, token):
                raise
            log.warning("the login was renewed during the upload of image %s; uploading it "
                        "again from the start", image_id)
        return self._upload_once(image_id, Path(path), on_progress, cancel, limiter=limiter)

    def _token(self) -> str | None:
        """The current token's id as cached by the auth plugin (no request); compared, never
        shown."""
        auth_ref = getattr(getattr(self.cloud.session, "auth", None), "auth_ref", None)
        return getattr(auth_ref, "auth_token", None)

    def upload_stream(self, image_id: str, chunks: Iterable[bytes], size: int,
                      on_progress: ProgressCallback | None = None,
                      cancel: threading.Event | None = None,
                      limiter: RateLimiter | None = None) -> str:
        """Send ``chunks`` (exactly ``size`` bytes, produced as they are sent: a streamed
        snapshot) into the image; hashed and checked like ``upload``. Sent once: a stream
        cannot be sent again from byte 0, so a renewed login mid-upload is a failure."""
        return self._upload_once(image_id, ChunkReader(chunks), on_progress, cancel, size=size,
                                 limiter=limiter)

    def _upload_once(self, image_id: str, source: Path | ChunkReader,
                     on_progress: ProgressCallback | None, cancel: threading.Event | None,
                     *, size: int | None = None, limiter: RateLimiter | None = None) -> str:
        client = self._client
        stream: ChunkReader | BinaryIO
        if isinstance(source, ChunkReader):
            stream, total = source, size or 0
        else:
            try:
                stream = open(source, "rb")  # noqa: SIM115 - closed below
            except OSError as err:
                raise NotFound(f"cannot read {source}: {err.strerror}") from None
            total = source.stat().st_size
        with stream, HashingReader(stream, total, on_progress, cancel,
                                   limiter=limiter) as reader:
            size = reader.meter.total
            try:
                client.images.upload(image_id, reader, image_size=size)
            except UploadCancelled:
                raise
            except Exception as err:
                if reader.cancelled:
                    raise UploadCancelled("upload cancelled") from None
                sent = f"after {reader.meter.sent} of {size} bytes"
                raise self._error(err, f"upload of image {image_id} {sent}",
                                  image_id=image_id) from None
        reader.meter.finish()
        digest = reader.hexdigest()
        if reader.meter.sent != size:
            raise ChecksumMismatch(f"image {image_id}: {reader.meter.sent} bytes were sent, "
                                   f"{size} expected")
        self._verify(image_id, digest, reader.meter.sent)
        return digest

    def _verify(self, image_id: str, digest: str, sent: int) -> None:
        image = self._get(image_id)
        if image.get("status") != "active":
            raise CloudError(f"image {image_id} is {image.get('status')} after upload, not active")
        if image.get("size") is not None and image["size"] != sent:
            raise ChecksumMismatch(
                f"image {image_id}: Glance stored {image['size']} bytes, {sent} were sent"
            )
        algo, value = image.get("os_hash_algo"), image.get("os_hash_value")
        if not value:
            log.warning("Glance reported no os_hash_value for image %s; not verified", image_id)
        elif algo != HASH_ALGO:
            log.warning("Glance hashes with %s, not %s; image %s not verified by hash",
                        algo, HASH_ALGO, image_id)
        elif value != digest:
            raise ChecksumMismatch(
                f"image {image_id}: Glance's sha512 {value[:16]}... differs from the "
                f"sha512 of the bytes sent {digest[:16]}..."
            )


    def delete(self, image_id: str) -> None:
        """Delete the image (any status); NotFound when it does not exist.

        A delete is idempotent, so a 5xx answer (Glance still busy with the upload it just
        aborted, a database lock) is retried a few times over about 3 s before it counts."""
        client = self._client
        for delay in (*DELETE_RETRY_S, None):
            try:
                client.images.delete(image_id)
                return
            except glance_exc.HTTPException as err:
                code = getattr(err, "code", None)
                if delay is None or not (isinstance(code, int) and code >= 500):
                    raise self._error(err, f"deleting image {image_id}",
                                      image_id=image_id) from None
                log.info("deleting image %s: HTTP %s, trying again in %.1f s", image_id, code,
                         delay)
                time.sleep(delay)
            except Exception as err:
                raise self._error(err, f"deleting image {image_id}", image_id=image_id) from None

    # -- mapping ---------------------------------------------------------------------------

    def _error(
        self, err: BaseException, doing: str, *, image_id: str | None = None
    ) -> SnaptuiError:
        """One line naming the cloud and what was being done; secrets never included."""
        if isinstance(err, SnaptuiError):
            return err
        where = f"Glance at {self._endpoint or self.cloud.auth_url}"
        if isinstance(err, glance_exc.HTTPNotFound) and image_id:
            return NotFound(f"no image {image_id} in cloud {self.cloud.name}")
        if isinstance(err, glance_exc.HTTPException):
            details = _first_line(getattr(err, "details", "") or str(err))
            code = getattr(err, "code", None)
            status = f"HTTP {code} " if isinstance(code, int) and str(code) not in details else ""
            return CloudError(f"{where}: {doing} failed: {status}{details}".rstrip())
        if isinstance(err, (glance_exc.CommunicationError, glance_exc.InvalidEndpoint)):
            return CloudError(f"cannot reach {where}: {doing} failed: {connection_reason(err)}")
        if isinstance(err, ksa_exc.ClientException):
            return keystone_error(err, self.cloud)
        if isinstance(err, OSError):
            return CloudError(f"{where}: {doing} failed: {err.strerror or err}")
        return CloudError(f"{where}: {doing} failed: {type(err).__name__}: {err}")

    @staticmethod
    def _record(image: Any) -> ImageRecord:
        data = dict(image)
        return ImageRecord(
            id=data["id"],
            name=data.get("name") or "",
            status=data.get("status") or "?",
            disk_format=data.get("disk_format"),
            container_format=data.get("container_format"),
            size=data.get("size"),
            created_at=data.get("created_at"),
            properties={k: v for k, v in data.items() if k not in STANDARD_KEYS},
            os_hash_value=data.get("os_hash_value"),
            protected=bool(data.get("protected")),
        )


def _first_line(text: str) -> str:
    """Glance error bodies are often HTML; keep the first meaningful words."""
    text = re.sub(r"<[^>]+>", " ", text)
    text = " ".join(text.split())
    return text[:200]

