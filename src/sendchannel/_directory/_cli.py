"""``sendchannel directory DATABASE_URL list|connect|route|disconnect``: the directory from a shell.

Secrets come from the environment (``SENDCHANNEL_PASSWORD`` for a password or API key,
``SENDCHANNEL_GMAIL_CREDENTIALS`` or ``--credentials FILE`` for a Google grant) or from a prompt that does
not echo; the keys from ``SENDCHANNEL_SECRET_KEYS``. Nothing printed holds a secret: URLs are shown
redacted.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from typing import Any, Protocol

from sendchannel._directory._directory import ChannelDirectory
from sendchannel._directory._entry import DirectoryEntry
from sendchannel._registry import redact_url, split_url
from sendchannel.errors import ConfigurationError

__all__ = ["add_parser", "run"]

PASSWORD_ENV = "SENDCHANNEL_PASSWORD"  # noqa: S105 - the variable's name
GMAIL_ENV = "SENDCHANNEL_GMAIL_CREDENTIALS"
#: The keyword argument that takes the secret, for the built-in schemes that have one.
_SECRET_OPTION = {"smtp": "password", "smtps": "password", "office365": "password", "sparkpost": "api_key"}


class Output(Protocol):
    """Where the command writes: ``line`` to stdout, ``error`` to stderr."""

    def line(self, text: str = "") -> None: ...

    def error(self, text: str) -> None: ...


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``directory`` to the ``sendchannel`` command's subcommands."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "directory",
        help="list, connect, route and disconnect the channels of a ChannelDirectory",
        description="Manage a ChannelDirectory: one channel per sender for a team. The secret keys come "
        "from SENDCHANNEL_SECRET_KEYS; a channel's password or API key from SENDCHANNEL_PASSWORD or a "
        "prompt that does not echo.",
    )
    parser.add_argument("database", metavar="DATABASE_URL", help="sqlite:///path, postgresql://... ")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    listing = actions.add_parser("list", help="show every entry and its state")
    listing.add_argument("--owner", help="only this owner's entries")

    connect = actions.add_parser("connect", help="connect a channel for an owner (verified first)")
    connect.add_argument("owner", help="the application's id for the person or team")
    connect.add_argument("url", metavar="URL", help="the channel URL (no secret in it: it is asked for)")
    connect.add_argument("--shared", action="store_true", help="serve every owner (per-domain keys only)")
    connect.add_argument("--no-verify", action="store_true", help="store it without reaching the provider")
    connect.add_argument("--credentials", metavar="FILE", help="a Google authorised-user grant (gmail://)")

    route = actions.add_parser("route", help="say which entry sends as a sender, and why")
    route.add_argument("sender", metavar="ADDRESS")
    route.add_argument("--owner", help="whose message it is")

    disconnect = actions.add_parser("disconnect", help="remove an entry")
    disconnect.add_argument("entry_id", metavar="ENTRY_ID")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace, out: Output) -> int:
    """Run ``sendchannel directory ...``; returns the exit status (errors are raised for the caller)."""
    return asyncio.run(_run(args, out))


async def _run(args: argparse.Namespace, out: Output) -> int:
    async with ChannelDirectory(args.database) as directory:
        if args.action == "list":
            entries = await directory.entries(owner=args.owner)
            for entry in entries:
                out.line(_describe(entry))
            if not entries:
                out.line("No entries.")
            return 0
        if args.action == "connect":
            overrides = _secret_overrides(args)
            entry = await directory.connect(
                args.owner, args.url, shared=args.shared, verify=not args.no_verify, **overrides
            )
            out.line(f"Connected: {_describe(entry)}")
            return 0
        if args.action == "route":
            out.line(directory.explain(args.sender, owner=args.owner))
            directory.route(args.sender, owner=args.owner)  # no fitting entry: raised, exit status 3
            return 0
        if await directory.disconnect(args.entry_id):
            out.line(f"Disconnected {args.entry_id}.")
            return 0
        out.error(f"sendchannel directory: no entry {args.entry_id} in {directory.database}")
        return 2


def _describe(entry: DirectoryEntry) -> str:
    text = (
        f"{entry.id}  {entry.owner}  {entry.url}  {entry.scope}  {'shared' if entry.shared else 'own'}  "
        f"{entry.state} since {entry.since:%Y-%m-%d %H:%M:%S} UTC"
    )
    if entry.paused_until is not None:
        text += f" until {entry.paused_until:%Y-%m-%d %H:%M:%S} UTC"
    if entry.reason:
        text += f"\n    {entry.reason}"
    return text


def _secret_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The secret the URL lacks: from the environment, else a prompt that does not echo."""
    url: str = args.url
    scheme = url.split("://", 1)[0].lower()
    if scheme == "gmail":
        source = args.credentials or os.environ.get(GMAIL_ENV)
        if not source:
            raise ConfigurationError(
                f"{redact_url(url)} needs the user's grant: pass --credentials FILE (an authorised-user "
                f"JSON file) or set {GMAIL_ENV}"
            )
        return {"credentials": _google_grant(source)}
    option = _SECRET_OPTION.get(scheme)
    if option is None:
        return {}
    try:
        parts = split_url(url)
    except ValueError:
        return {}  # connect() says what is wrong with the URL
    has_secret = bool(parts.username) if option == "api_key" else parts.password is not None
    needs_secret = option == "api_key" or bool(parts.username) or scheme == "office365"
    if has_secret or not needs_secret:
        return {}
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return {option: from_env}
    what = "API key" if option == "api_key" else "password"
    if sys.stdin.isatty():
        return {option: getpass.getpass(f"{what.capitalize()} for {redact_url(url)}: ")}
    raise ConfigurationError(
        f"{redact_url(url)} needs a {what}; set {PASSWORD_ENV}, or run the command in a terminal to be asked "
        "for it (it is not echoed)"
    )


def _google_grant(source: str) -> Any:
    """The authorised-user grant from a file path, or from JSON text, as a refreshable Credentials."""
    import json

    from sendchannel._directory._overrides import _google_credentials

    text = source
    if not source.lstrip().startswith("{"):
        try:
            with open(os.path.expanduser(source), encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ConfigurationError(f"Could not read the Google grant {source!r}: {exc.strerror}") from None
    try:
        info = json.loads(text)
    except ValueError:
        raise ConfigurationError(
            "The Google grant is not JSON (save it with credentials.to_json())"
        ) from None
    if not isinstance(info, dict) or info.get("type", "authorized_user") != "authorized_user":
        raise ConfigurationError("The Google grant must be an authorised-user JSON object")
    return _google_credentials(info)
