"""A local HTTPS server answering as Microsoft Entra ID's v2.0 endpoints do, for msal in tests.

It serves OpenID discovery, the token endpoint (client credentials, device code, refresh token) and the
device-code endpoint, on 127.0.0.1 with a trustme certificate. msal is pointed at it with
``authority="https://127.0.0.1:<port>/<tenant>"``, ``instance_discovery=False`` and ``verify=<CA file>``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.smtp.servers import Certificates

TENANT = "contoso.onmicrosoft.com"
TENANT_ID = "0e4d9a3c-1111-2222-3333-444455556666"
USER_OID = "9f8e7d6c-aaaa-bbbb-cccc-ddddeeeeffff"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class EntraDouble:
    """Token endpoints for one confidential app and one public (device code) app.

    Args:
        certificates: The certificate authority for HTTPS.
        client_id: The app id both flows use.
        client_secret: The secret the confidential app must present.
        user: The user who signs in with the device code.
    """

    def __init__(self, certificates: Certificates, *, client_id: str, client_secret: str, user: str) -> None:
        self.certificates = certificates
        self.client_id = client_id
        self.client_secret = client_secret
        self.user = user
        #: Every token request's grant type, in order.
        self.grants: list[str] = []
        self.issued = 0
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    @property
    def authority(self) -> str:
        return f"https://127.0.0.1:{self.port}/{TENANT}"

    def issue(self, prefix: str) -> str:
        self.issued += 1
        return f"{prefix}-{self.issued}"

    @contextlib.contextmanager
    def running(self) -> Iterator[EntraDouble]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _json(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.startswith(f"/{TENANT}/v2.0/.well-known/openid-configuration"):
                    base = f"https://127.0.0.1:{double.port}/{TENANT}"
                    self._json(200, {
                        "issuer": f"https://127.0.0.1:{double.port}/{TENANT_ID}/v2.0",
                        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                        "token_endpoint": f"{base}/oauth2/v2.0/token",
                        "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                    })
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                unknown_app = form.get("client_id") != double.client_id
                if self.path.endswith("/oauth2/v2.0/devicecode") and unknown_app:
                    self._json(400, {"error": "unauthorized_client",
                                     "error_description": "AADSTS700016: Application with identifier "
                                     f"'{form.get('client_id')}' was not found in the directory."})
                elif self.path.endswith("/oauth2/v2.0/devicecode"):
                    self._json(200, {
                        "device_code": "device-code-1",
                        "user_code": "ABCD-EFGH",
                        "verification_uri": "https://microsoft.com/devicelogin",
                        "expires_in": 900,
                        "interval": 1,
                        "message": "To sign in, open https://microsoft.com/devicelogin and enter ABCD-EFGH.",
                    })
                elif self.path.endswith("/oauth2/v2.0/token"):
                    self._token(form)
                else:
                    self._json(404, {"error": "not_found"})

            def _token(self, form: dict[str, str]) -> None:
                grant = form.get("grant_type", "")
                double.grants.append(grant)
                if form.get("client_id") != double.client_id:
                    self._json(400, {"error": "unauthorized_client",
                                     "error_description": "AADSTS700016: Application not found."})
                elif grant == "client_credentials":
                    if form.get("client_secret") != double.client_secret:
                        description = "AADSTS7000215: Invalid client secret provided."
                        self._json(401, {"error": "invalid_client", "error_description": description})
                        return
                    self._json(200, {"token_type": "Bearer", "expires_in": 3599,
                                     "access_token": double.issue("app-token")})
                elif grant in ("urn:ietf:params:oauth:grant-type:device_code", "refresh_token"):
                    self._json(200, double._user_tokens())
                else:
                    self._json(400, {"error": "unsupported_grant_type"})

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.certificates.server_certificate.configure_cert(context)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._httpd.shutdown()
            self._httpd.server_close()
            thread.join(5)

    def _user_tokens(self) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "aud": self.client_id,
            "iss": f"https://127.0.0.1:{self.port}/{TENANT_ID}/v2.0",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "oid": USER_OID,
            "sub": "subject",
            "tid": TENANT_ID,
            "preferred_username": self.user,
            "name": "Alice",
        }
        id_token = ".".join(
            (_b64url(b'{"alg":"none","typ":"JWT"}'), _b64url(json.dumps(claims).encode()), "")
        )
        client_info = _b64url(json.dumps({"uid": USER_OID, "utid": TENANT_ID}).encode())
        return {
            "token_type": "Bearer",
            "scope": "https://outlook.office.com/SMTP.Send openid profile offline_access",
            "expires_in": 3599,
            "access_token": self.issue("user-token"),
            "refresh_token": self.issue("refresh"),
            "id_token": id_token,
            "client_info": client_info,
        }
