"""Gmail's configuration: credentials from a JSON grant or service-account key, and ``gmail://`` URLs."""

from __future__ import annotations

import json
import os
import urllib.parse
from typing import TYPE_CHECKING, Any, cast

import google.auth.credentials
import google.oauth2.credentials
import google.oauth2.service_account
from google.auth.credentials import Credentials

from sendchannel._gmail import GMAIL
from sendchannel._urls import read_options, redact_url
from sendchannel.errors import ConfigurationError

if TYPE_CHECKING:
    from sendchannel._gmail._channel import GmailOAuthChannel

__all__ = ["CREDENTIALS_ENV", "GMAIL_SEND_SCOPE", "from_url", "load_credentials"]

#: The narrowest OAuth scope that lets an application send mail as the user.
GMAIL_SEND_SCOPE = "https://www.googleapis.com/auth/gmail.send"
#: The environment variable ``gmail://`` URLs read the credentials from when the URL names none: a path
#: to an authorised-user (or service-account) JSON file, or that JSON itself.
CREDENTIALS_ENV = "SENDCHANNEL_GMAIL_CREDENTIALS"


def load_credentials(source: str, *, address: str, origin: str) -> google.auth.credentials.Credentials:
    """Credentials from a JSON file path, or from JSON text (only from the environment variable)."""
    text = source.strip()
    if text.startswith("{"):
        where = f"the JSON in {origin}"
    else:
        path = os.path.expanduser(text)
        where = f"the file {path!r} (from {origin})"
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ConfigurationError(
                f"Could not read the Gmail credentials from {where}: {exc.strerror or exc}; give the path "
                "of an authorised-user JSON file."
            ) from None
    try:
        info = json.loads(text)
    except ValueError:
        raise ConfigurationError(
            f"The Gmail credentials in {where} are not JSON; save the authorised-user grant as JSON "
            "(credentials.to_json())."
        ) from None
    if not isinstance(info, dict):
        raise ConfigurationError(f"The Gmail credentials in {where} must be a JSON object.")
    kind = info.get("type", "authorized_user")
    try:
        if kind == "authorized_user":
            user = google.oauth2.credentials.Credentials
            return cast(Credentials, user.from_authorized_user_info(info))  # type: ignore[no-untyped-call]
        if kind == "service_account":
            robot = google.oauth2.service_account.Credentials
            return cast(
                Credentials,
                robot.from_service_account_info(  # type: ignore[no-untyped-call]
                    info, scopes=[GMAIL_SEND_SCOPE], subject=address
                ),
            )
    except (ValueError, KeyError) as exc:
        # google-auth names the missing fields, never their values.
        raise ConfigurationError(f"The Gmail credentials in {where} are incomplete: {exc}") from None
    raise ConfigurationError(
        f"The Gmail credentials in {where} are of type {kind!r}; use an authorised-user grant "
        "(type authorized_user) or a service account key (type service_account)."
    )



def from_url(url: urllib.parse.SplitResult, **overrides: Any) -> GmailOAuthChannel:
    """``gmail://alice@example.com?credentials=/path/grant.json&workspace=false``.

    Without ``credentials`` in the URL or the overrides, the environment variable
    ``SENDCHANNEL_GMAIL_CREDENTIALS`` gives the path of the JSON file, or the JSON itself.
    """
    from sendchannel._gmail._channel import GmailOAuthChannel

    if url.password is not None:
        raise ConfigurationError(
            f"{redact_url(url)} has a password, but Gmail is reached with OAuth only; write "
            "gmail://alice@example.com?credentials=/path/to/authorized_user.json and keep the password out "
            "of the URL."
        )
    address = urllib.parse.unquote(url.netloc)
    if not address or "@" not in address or url.path not in ("", "/"):
        raise ConfigurationError(
            f"{redact_url(url)} does not name the Gmail account; write gmail://alice@example.com"
            "?credentials=/path/to/authorized_user.json"
        )
    options = read_options(url, GMAIL.options)
    source = options.pop("credentials", None)
    if "send_as" in options:
        options["send_as"] = tuple(options["send_as"])
    options.update(overrides)
    credentials = options.pop("credentials", None)
    if credentials is None:
        if source is not None:
            credentials = load_credentials(source, address=address, origin="the URL")
        elif os.environ.get(CREDENTIALS_ENV):
            origin = f"${CREDENTIALS_ENV}"
            credentials = load_credentials(os.environ[CREDENTIALS_ENV], address=address, origin=origin)
        else:
            raise ConfigurationError(
                f"{redact_url(url)} names no credentials; add ?credentials=/path/to/authorized_user.json "
                f"or set {CREDENTIALS_ENV} to that path."
            )
    elif isinstance(credentials, str):
        credentials = load_credentials(credentials, address=address, origin="credentials=")
    return GmailOAuthChannel(credentials, address=address, **options)
