"""A Keystone login made elsewhere (the operator's), resumed here without any clouds.yaml.

A remote job (core/fleet/remote_jobs.py) gets the operator's keystoneauth auth state — token and
catalog, what ``GlanceImages.auth_state`` returns — as the first line of its stdin over SSH.
``forwarded_session`` turns it into a CloudSession whose plugin starts already logged in; the
Keystone URL comes from the token's own catalog. When the token expires the job cannot log in
again (it has no password): the operator's token lifetime bounds a remote job's upload.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from keystoneauth1 import access
from keystoneauth1.identity import v3
from keystoneauth1.session import Session

from snaptui.core.cloud.config import CloudSession, insecure_requested
from snaptui.core.errors import BadInput

FORWARDED_NAME = "forwarded"


def read_auth_line(stream: Any = None) -> str | None:
    """The first line of stdin as sent by the launcher: a JSON string (the auth state) or
    null. BadInput when it is not that."""
    line = (stream or sys.stdin).readline()
    if not line.strip():
        raise BadInput("--auth-stdin: no login on stdin (expected one JSON line)")
    try:
        state = json.loads(line)
    except json.JSONDecodeError:
        raise BadInput("--auth-stdin: the first line of stdin is not JSON") from None
    if state is not None and not isinstance(state, str):
        raise BadInput("--auth-stdin: the first line of stdin must be a JSON string or null")
    return state


def forwarded_session(state: str, *, insecure: bool | None = None) -> CloudSession:
    """A session resuming the login ``state`` (keystoneauth's auth state JSON)."""
    try:
        data = json.loads(state)
        ref = access.create(body=data["body"], auth_token=data["auth_token"])
        auth_url = ref.service_catalog.url_for(service_type="identity", interface="public")
        token = ref.auth_token
        if not (auth_url and token):
            raise ValueError("no identity endpoint or token")
    except Exception:  # noqa: BLE001 - any malformed state is the same one line
        raise BadInput("the forwarded login is not a Keystone token with a catalog") from None
    plugin = v3.Token(auth_url=auth_url, token=token, project_id=ref.project_id)
    plugin.set_auth_state(state)
    if insecure is None:
        insecure = insecure_requested()
    session = Session(auth=plugin, verify=not insecure)
    return CloudSession(name=FORWARDED_NAME, auth_url=auth_url, username=ref.username,
                        region_name=None, interface="public", session=session,
                        auth_type="v3token")


def login_on_stdin() -> tuple[Any, str | None]:
    """``--auth-stdin`` (a command a fleet launcher started): a Glance store on the login read
    from the first line of stdin, and that login (for a job process); (None, None) when the
    launcher sent none."""
    state = read_auth_line()
    return (forwarded_store(state), state) if state else (None, None)


def forwarded_store(state: str) -> Any:
    """A GlanceImages store on the forwarded login."""
    from snaptui.core.images.glance import GlanceImages

    return GlanceImages(forwarded_session(state))
