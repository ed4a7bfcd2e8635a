"""The local Entra ID double of the Office 365 tests, issuing access tokens shaped as Graph's: JWTs.

Entra's access tokens for Graph are JWTs whose ``roles`` claim (application tokens) or ``scp`` claim
(delegated tokens) holds the granted permissions; ``Office365GraphChannel.verify`` reads them. This double
issues the same numbered tokens as :class:`tests.smtp.entra.EntraDouble` (``app-token-1``, ...), as the
``jti`` claim of such a JWT, with the permissions a test grants.
"""

from __future__ import annotations

from typing import Any

from tests.graph.server import jwt
from tests.smtp.entra import EntraDouble


class GraphEntraDouble(EntraDouble):
    """Entra ID for Graph tokens.

    Args:
        roles: The application permissions in app tokens' ``roles`` claim.
        scopes: The delegated permissions in user tokens' ``scp`` claim.
    """

    def __init__(self, *args: Any, roles: tuple[str, ...] = ("Mail.Send",),
                 scopes: tuple[str, ...] = ("Mail.Send",), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.roles = roles
        self.scopes = scopes

    def issue(self, prefix: str) -> str:
        number = super().issue(prefix)
        if prefix == "app-token":
            return jwt({"aud": "https://graph.microsoft.com", "roles": list(self.roles), "jti": number})
        if prefix == "user-token":
            return jwt({"aud": "https://graph.microsoft.com", "scp": " ".join(self.scopes),
                        "upn": self.user, "jti": number})
        return number

    def _user_tokens(self) -> dict[str, Any]:
        tokens = super()._user_tokens()
        # The scopes msal asked for, so that msal finds the token in its cache for them.
        tokens["scope"] = "https://graph.microsoft.com/Mail.Send openid profile offline_access"
        return tokens


def number_of(token: str) -> str:
    """The ``jti`` of a token this double issued (``"app-token-2"``)."""
    from tests.graph.server import _claims

    claims = _claims(token)
    assert claims is not None
    return str(claims["jti"])
