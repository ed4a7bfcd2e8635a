"""verify() reads the token's claims and says which permission to grant, sending nothing; the command line
prints it (`sendchannel verify msgraph://...`) and `sendchannel info` shows the two forms' scopes."""

from __future__ import annotations

from pathlib import Path

import pytest

from sendchannel import AuthenticationError, Office365GraphChannel
from tests import sentinels
from tests.cli.conftest import cli
from tests.graph.conftest import ALICE, CLIENT_ID, Tokens
from tests.graph.entra import GraphEntraDouble
from tests.graph.server import GraphDouble, app_token, user_token


async def _verify(graph: GraphDouble, token: str, *, delegated: bool) -> None:
    if delegated:
        channel = Office365GraphChannel(ALICE, token_provider=Tokens(token), base_url=graph.url)
    else:
        channel = Office365GraphChannel(
            domains=["contoso.com"], token_provider=Tokens(token), base_url=graph.url
        )
    async with channel:
        await channel.verify()


@pytest.mark.parametrize(
    ("token", "delegated"),
    [
        (app_token("Mail.Send"), False),
        (app_token("Mail.Send", "Mail.ReadWrite", "User.Read.All"), False),
        (user_token(ALICE, "Mail.Send", "User.Read"), True),
        (user_token(ALICE, "Mail.Send.Shared"), True),
    ],
    ids=["app-mail-send", "app-more-roles", "user-mail-send", "user-mail-send-shared"],
)
async def test_a_token_holding_mail_send_verifies_without_any_request(
    graph: GraphDouble, token: str, delegated: bool
) -> None:
    await _verify(graph, token, delegated=delegated)
    assert [] == graph.received


async def test_an_application_token_without_mail_send_says_an_admin_must_grant_and_consent(
    graph: GraphDouble,
) -> None:
    with pytest.raises(AuthenticationError) as caught:
        await _verify(graph, app_token("User.Read.All"), delegated=False)
    text = str(caught.value)
    assert "lacks the Mail.Send permission (it holds: User.Read.All)" in text
    assert "application permission Mail.Send" in text
    assert "admin consent" in text
    assert [] == graph.received


async def test_a_delegated_token_without_mail_send_says_to_add_it_and_sign_in_again(
    graph: GraphDouble,
) -> None:
    with pytest.raises(AuthenticationError, match=r"holds: Mail\.Read, User\.Read\).*delegated permission "
                       r"Mail\.Send.*sign in again"):
        await _verify(graph, user_token(ALICE, "User.Read", "Mail.Read"), delegated=True)


@pytest.mark.parametrize(
    ("token", "delegated", "says"),
    [
        (user_token(ALICE, "Mail.Send"), False, "is a delegated token, but this channel was built for an "
         "application one"),
        (app_token("Mail.Send"), True, "token_from_device_code"),
        (sentinels.TOKEN, True, "not a Microsoft Graph token whose permissions can be read"),
    ],
    ids=["user-token-for-app", "app-token-for-user", "opaque-token"],
)
async def test_a_token_of_the_wrong_kind_says_which_flow_to_use(
    graph: GraphDouble, token: str, delegated: bool, says: str
) -> None:
    with pytest.raises(AuthenticationError, match=says) as caught:
        await _verify(graph, token, delegated=delegated)
    assert [] == sentinels.leaked(str(caught.value))


# -- the command line ----------------------------------------------------------------------------------------


def _env(entra: GraphEntraDouble, ca_file: str, tmp_path: Path) -> dict[str, str]:
    return {"REQUESTS_CA_BUNDLE": ca_file, "XDG_CACHE_HOME": str(tmp_path / "cache")}


async def test_cli_verify_prints_the_missing_application_permission(
    entra: GraphEntraDouble, ca_file: str, tmp_path: Path
) -> None:
    entra.roles = ("Mail.Read",)
    url = (f"msgraph://{CLIENT_ID}@contoso.onmicrosoft.com?domains=contoso.com"
           f"&authority={entra.authority}")
    run = await cli("verify", url, env={**_env(entra, ca_file, tmp_path),
                                        "SENDCHANNEL_PASSWORD": sentinels.CLIENT_SECRET})
    assert 0 != run.code
    assert "lacks the Mail.Send permission (it holds: Mail.Read)" in run.stderr
    assert "What to do: Grant the permission the message names in Entra ID" in run.stderr
    assert ["client_credentials"] == entra.grants


async def test_cli_verify_of_a_delegated_mailbox_signs_in_once_and_passes(
    entra: GraphEntraDouble, ca_file: str, tmp_path: Path
) -> None:
    url = f"msgraph://alice@contoso.com?client_id={CLIENT_ID}&tenant_id=contoso.onmicrosoft.com&authority={entra.authority}"
    first = await cli("verify", url, env=_env(entra, ca_file, tmp_path))
    again = await cli("verify", url, env=_env(entra, ca_file, tmp_path))
    assert (0, 0) == (first.code, again.code), first.output + again.output
    assert "OK: reached msgraph://alice@contoso.com" in first.stdout
    assert "devicelogin" in first.stderr
    assert "devicelogin" not in again.stderr  # the token cache kept the sign-in
    assert ["urn:ietf:params:oauth:grant-type:device_code"] == entra.grants


async def test_cli_info_shows_the_scope_difference_between_the_two_forms() -> None:
    delegated = await cli("info", "msgraph://alice@contoso.com?client_id=APP")
    application = await cli("info", "msgraph://APP@tenant?domains=contoso.com")
    assert (0, 0) == (delegated.code, application.code), delegated.output + application.output
    assert "Scope:     per-address: alice@contoso.com" in delegated.stdout
    assert "Shareable: no: it belongs to one mailbox" in delegated.stdout
    assert "Scope:     per-domain: contoso.com" in application.stdout
    assert "Shareable: yes" in application.stdout
    assert "30 messages per minute" in delegated.stdout
    assert "at most 4 concurrent connections" in application.stdout


async def test_cli_send_through_an_application_url_gets_an_msal_token_and_reaches_graph(
    entra: GraphEntraDouble, ca_file: str, tmp_path: Path, graph: GraphDouble
) -> None:
    """The whole path a user takes: a URL, msal's client credentials at Entra, then Graph's sendMail."""
    url = (f"msgraph://{CLIENT_ID}@contoso.onmicrosoft.com?domains=contoso.com"
           f"&authority={entra.authority}&base_url={graph.url}")
    run = await cli("send", url, "--from", "Sales <sales@contoso.com>", "--to", "bob@fabrikam.com",
                    "--bcc", "audit@contoso.com", "--subject", "Offer", "--text", "Hello",
                    env={**_env(entra, ca_file, tmp_path), "SENDCHANNEL_PASSWORD": sentinels.CLIENT_SECRET})
    assert 0 == run.code, run.output
    [request] = graph.received
    assert "/v1.0/users/sales@contoso.com/sendMail" == request.path
    [delivered] = graph.delivered
    assert ["bob@fabrikam.com", "audit@contoso.com"] == delivered.recipients
    assert "Offer" == delivered.header("Subject")
    assert ["client_credentials"] == entra.grants
