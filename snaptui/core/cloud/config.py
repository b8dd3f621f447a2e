"""Cloud credentials the way the openstack CLI finds them, and Keystone errors as one line.

openstacksdk's config loader reads clouds.yaml (``OS_CLIENT_CONFIG_FILE``), ``OS_CLOUD`` and the
``OS_*`` variables; keystoneauth1 holds the secrets inside its session. Nothing here prints them.

TLS certificates are verified unless the operator asks otherwise: ``snaptui --insecure`` (which
sets ``SNAPTUI_INSECURE=1`` for this process and the job processes it starts), or ``verify:
false`` / ``insecure: true`` in clouds.yaml.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1.session import Session
from openstack import exceptions as sdk_exc
from openstack.config import OpenStackConfig

from snaptui.core.cloud.secrets_check import exposed_secret_warning
from snaptui.core.errors import BadInput, CloudError

log = logging.getLogger(__name__)
# keystoneauth warns on stderr (logging's last resort) before we turn its failure into one
# line; a NullHandler keeps that off the terminal while configured log files still get it.
logging.getLogger("keystoneauth").addHandler(logging.NullHandler())

_NO_CLOUD = "defaults"  # what the loader calls the empty cloud it makes when nothing is set
INSECURE_ENV = "SNAPTUI_INSECURE"


def insecure_requested() -> bool:
    """True when TLS verification was switched off (``--insecure`` / SNAPTUI_INSECURE=1)."""
    return os.environ.get(INSECURE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class CloudSession:
    """A keystoneauth1 session for one cloud, with what is safe to show about it."""

    name: str
    auth_url: str
    username: str | None
    region_name: str | None
    interface: str | list[str] | None  # openstacksdk allows a list (tried in order)
    session: Session = field(repr=False)
    config_file: str | None = None
    warnings: list[str] = field(default_factory=list)
    auth_type: str | None = None

    @property
    def uses_token(self) -> bool:
        """Authenticates with a given token (which may have expired or been revoked)."""
        return bool(self.auth_type) and "token" in str(self.auth_type)

    @property
    def verify(self) -> bool | str:
        """What the session does with TLS certificates: True, a CA bundle path, or False."""
        verify = self.session.verify
        return True if verify is None else verify

    @property
    def description(self) -> str:
        """Cloud name and Keystone URL, for people."""
        return f"{self.name} ({self.auth_url})"

    def authenticate(self) -> None:
        """Get a token now, so wrong credentials or an unreachable Keystone show up here."""
        try:
            self.session.get_token()
        except Exception as err:
            raise keystone_error(err, self) from None

    def endpoint(self, service_type: str) -> str:
        """The catalog URL of a service (authenticating first); CloudError when absent."""
        try:
            url = self.session.get_endpoint(
                service_type=service_type, interface=self.interface or "public",
                region_name=self.region_name or None,
            )
        except Exception as err:
            raise keystone_error(err, self) from None
        if not url:
            raise CloudError(
                f"cloud {self.name} has no {service_type} service in its catalog "
                f"(interface {self.interface or 'public'}, region {self.region_name or 'any'})"
            )
        return url


def _open_config() -> OpenStackConfig:
    try:
        return OpenStackConfig()
    except sdk_exc.ConfigException as err:
        raise CloudError(f"cannot read cloud configuration: {err}") from None
    except OSError as err:
        reason = f"{err.strerror}: {err.filename}"
        raise CloudError(f"cannot read cloud configuration: {reason}") from None


def cloud_configured(cloud: str | None = None) -> bool:
    """True when a cloud is chosen: ``cloud`` given, OS_CLOUD set, OS_* auth variables set, or
    a clouds.yaml with exactly one cloud (the same default the openstack CLI picks)."""
    if cloud or os.environ.get("OS_CLOUD"):
        return True  # a named cloud: loading it says what is wrong, never a silent fallback
    try:
        config = OpenStackConfig()
    except (sdk_exc.ConfigException, OSError):
        return bool(os.environ.get("OS_CLOUD") or os.environ.get("OS_AUTH_URL"))
    return bool(config.default_cloud) and config.default_cloud != _NO_CLOUD


def load_session(cloud: str | None = None, *, insecure: bool | None = None) -> CloudSession:
    """Load one cloud like ``openstack --os-cloud`` and return its (not yet authenticated) session.

    TLS is verified unless ``insecure`` (default: ``insecure_requested()``) or the cloud's own
    config says otherwise. BadInput for an unknown cloud name or when no cloud is configured;
    CloudError for a config that cannot be used. Does not contact Keystone (see
    ``CloudSession.authenticate``).
    """
    if insecure is None:
        insecure = insecure_requested()
    config = _open_config()
    named = cloud or os.environ.get("OS_CLOUD")
    if named and named not in config.get_cloud_names():
        known = ", ".join(sorted(n for n in config.get_cloud_names() if n != _NO_CLOUD))
        where = config.config_filename or "no clouds.yaml found"
        raise BadInput(f"unknown cloud {named!r} ({where}; known: {known or 'none'})")
    if not cloud and config.default_cloud in (None, _NO_CLOUD):
        names = [n for n in config.get_cloud_names() if n != _NO_CLOUD]
        if names:
            raise BadInput(
                f"several clouds in {config.config_filename}: choose one with --os-cloud or "
                f"OS_CLOUD ({', '.join(sorted(names))})"
            )
        raise BadInput("no cloud configured: set OS_CLOUD / OS_CLIENT_CONFIG_FILE or OS_AUTH_URL")
    try:
        extra: dict[str, Any] = {"insecure": True} if insecure else {}
        region = config.get_one(cloud=cloud or None, **extra)
    except sdk_exc.ConfigException as err:
        name = cloud or config.default_cloud
        if name not in config.get_cloud_names():
            known = ", ".join(sorted(config.get_cloud_names())) or "none"
            where = config.config_filename or "no clouds.yaml found"
            raise BadInput(f"unknown cloud {name!r} ({where}; known: {known})") from None
        raise CloudError(f"cloud {name}: {err}") from None
    except ksa_exc.MissingRequiredOptions as err:
        missing = ", ".join(o.dest for o in err.options)
        raise CloudError(f"cloud {cloud or config.default_cloud}: missing {missing}") from None
    except ksa_exc.ClientException as err:
        raise CloudError(f"cloud {cloud or config.default_cloud}: {err}") from None
    except (AttributeError, TypeError, ValueError) as err:  # an entry that is no mapping
        raise BadInput(f"cloud {cloud or config.default_cloud} in {config.config_filename}: "
                       f"not a cloud entry ({err})") from None

    auth: dict[str, Any] = region.config.get("auth") or {}
    name = region.name or cloud or str(config.default_cloud)
    try:
        session = region.get_session()
    except ksa_exc.ClientException as err:
        raise CloudError(f"cloud {name}: {err}") from None
    result = CloudSession(
        name=name,
        auth_url=str(auth.get("auth_url") or "?"),
        username=auth.get("username") or auth.get("user_id"),
        region_name=region.region_name or None,
        interface=region.get_interface() or None,
        session=session,
        config_file=config.config_filename,
        auth_type=region.config.get("auth_type"),
    )
    if not session.verify:
        log.debug("TLS certificates of cloud %s are not verified", name)
    for path in {config.config_filename, config.secure_config_filename} - {None}:
        warning = exposed_secret_warning(str(path))
        if warning:  # the CLI prints these at start; the dashboard shows them
            log.debug("%s", warning)
            result.warnings.append(warning)
    return result


_REASONS = (
    ("connection refused", "connection refused"),
    ("timed out", "timed out"),
    ("name or service not known", "host not found"),
    ("nodename nor servname", "host not found"),
    ("temporary failure in name resolution", "host not found"),
    ("no route to host", "no route to host"),
    ("network is unreachable", "network unreachable"),
    ("connection reset", "connection reset"),
    ("remotedisconnected", "connection closed by the server"),
    ("connection aborted", "connection aborted"),
    ("certificate verify failed", "TLS certificate verify failed"),
)


def connection_reason(err: BaseException) -> str:
    """A short reason ("connection refused", "timed out", ...) from a nested connection error."""
    parts, seen = [], set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:  # the useful words are often in a cause
        seen.add(id(cur))
        parts.append(str(cur))
        cur = cur.__cause__ or cur.__context__
    text = " ".join(parts).lower()
    for needle, reason in _REASONS:
        if needle in text:
            return reason
    if isinstance(err, ksa_exc.ConnectTimeout):
        return "timed out"
    return type(err).__name__


def keystone_error(err: BaseException, cloud: CloudSession) -> CloudError:
    """Map a keystoneauth failure while authenticating to one line without secrets."""
    url = cloud.auth_url
    if cloud.uses_token and isinstance(err, (ksa_exc.Unauthorized, ksa_exc.NotFound)):
        return CloudError(
            f"Keystone at {url} rejected the token of cloud {cloud.name} (expired or revoked; "
            f"HTTP {err.http_status}): get a new token"
        )
    if isinstance(err, ksa_exc.Unauthorized):
        return CloudError(
            f"authentication failed for user {cloud.username or '?'} at {url} (HTTP 401)"
        )
    if isinstance(err, ksa_exc.SSLError):
        hint = "" if not cloud.verify else " (snaptui --insecure skips verification)"
        return CloudError(
            f"TLS error talking to Keystone at {url}: {connection_reason(err)}{hint}"
        )
    if isinstance(err, (ksa_exc.ConnectFailure, ksa_exc.ConnectTimeout,
                        ksa_exc.UnknownConnectionError, ksa_exc.DiscoveryFailure)):
        return CloudError(f"cannot reach Keystone at {url}: {connection_reason(err)}")
    if isinstance(err, ksa_exc.HttpError):
        return CloudError(
            f"Keystone at {url} refused: HTTP {err.http_status} {err.message or ''}".rstrip()
        )
    if isinstance(err, ksa_exc.EndpointNotFound):
        return CloudError(f"cloud {cloud.name}: {err}")
    if isinstance(err, ksa_exc.ClientException):
        return CloudError(f"Keystone at {url}: {err}")
    if isinstance(err, CloudError):
        return err
    return CloudError(f"Keystone at {url}: {type(err).__name__}: {err}")
