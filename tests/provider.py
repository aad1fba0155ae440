"""A real OpenID Connect provider (Debian's Glewlwyd 2.7) for the sign-in tests: a private
instance, HTTPS with a CA made here, set up through its admin API. Like the directory
(directory.py), on loopback for the hub's tests, in a test host's network for the
end-to-end tests."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import requests
from directory import free_port, make_tls

GLEWLWYD = "/usr/bin/glewlwyd"  # Debian's glewlwyd package (scripts/prereqs.sh installs it)
SCHEMA = Path("/usr/share/dbconfig-common/data/glewlwyd/install/sqlite3")
ADMIN = ("admin", "password")  # the schema's own first admin
PLUGIN = "oidc"
CLIENT_ID = "gpuhub"
CLIENT_SECRET = "provider-client-secret"  # noqa: S105 (a throwaway test provider)

CONFIG = """\
port={port}
bind_address="{address}"
external_url="https://{address}:{port}"
login_url="login.html"
api_prefix="api"
log_mode="file"
log_level="INFO"
log_file="{folder}/glewlwyd.log"
cookie_secure=1
session_key="GLEWLWYD2_SESSION_ID"
session_expiration=3600
admin_scope="g_admin"
profile_scope="g_profile"
user_module_path="/usr/lib/glewlwyd/user"
client_module_path="/usr/lib/glewlwyd/client"
user_auth_scheme_module_path="/usr/lib/glewlwyd/scheme"
plugin_module_path="/usr/lib/glewlwyd/plugin"
use_secure_connection=true
secure_connection_key_file="{folder}/server.key"
secure_connection_pem_file="{folder}/server.crt"
hash_algorithm="SHA512"
database = {{ type = "sqlite3" path = "{folder}/glewlwyd.db" }};
"""

# A multi-valued `groups` property on people (the groups claim reads it).
GROUPS_PROPERTY = (
    "UPDATE g_user_module_instance SET gumi_parameters = json_set(gumi_parameters,"
    " '$.\"data-format\".groups',"
    ' json(\'{"multiple":true,"read":true,"write":true,"profile-read":true,'
    "\"profile-write\":false}')) WHERE gumi_name = 'database';"
)


@dataclass
class Provider:
    address: str
    port: int
    ca_file: Path
    process: subprocess.Popen[bytes]
    admin: requests.Session = field(default_factory=requests.Session)

    @property
    def base(self) -> str:
        return f"https://{self.address}:{self.port}/api"

    @property
    def issuer(self) -> str:
        return f"{self.base}/{PLUGIN}"

    def discovery(self) -> dict[str, str]:
        url = f"{self.issuer}/.well-known/openid-configuration"
        return dict(requests.get(url, verify=str(self.ca_file), timeout=10).json())

    def _admin(self, method: str, path: str, body: object = None) -> None:
        # verify= on each request: a session's own is overridden by REQUESTS_CA_BUNDLE.
        reply = self.admin.request(
            method, self.base + path, json=body, verify=str(self.ca_file), timeout=10
        )
        assert reply.ok, (method, path, reply.status_code, reply.text)

    def set_up(self, callback_url: str) -> None:
        self._admin("POST", "/auth/", {"username": ADMIN[0], "password": ADMIN[1]})
        claims = [
            {"name": "groups", "user-property": "groups", "mandatory": True},
            {"name": "preferred_username", "user-property": "username", "mandatory": True},
        ]
        parameters = {
            "iss": self.issuer,
            "jwt-type": "sha",
            "jwt-key-size": "256",
            "key": secrets.token_hex(32),
            "access-token-duration": 3600,
            "refresh-token-duration": 86400,
            "code-duration": 600,
            "refresh-token-rolling": False,
            "allow-non-oidc": False,
            "auth-type-code-enabled": True,
            "auth-type-token-enabled": False,
            "auth-type-id-token-enabled": True,
            "auth-type-password-enabled": False,
            "auth-type-client-enabled": False,
            "auth-type-refresh-enabled": True,
            "pkce-allowed": True,
            "name-claim": "no",
            "email-claim": "no",
            "claims": claims,
        }
        self._admin(
            "POST",
            "/mod/plugin/",
            {"module": "oidc", "name": PLUGIN, "display_name": PLUGIN, "parameters": parameters},
        )
        self._admin(
            "POST",
            "/client/",
            {
                "client_id": CLIENT_ID,
                "name": CLIENT_ID,
                "enabled": True,
                "confidential": True,
                "password": CLIENT_SECRET,
                # Glewlwyd refuses every secret of a confidential client without it.
                "token_endpoint_auth_method": ["client_secret_basic", "client_secret_post"],
                "redirect_uri": [callback_url],
                "authorization_type": ["code", "refresh_token"],
                "scope": ["openid"],
            },
        )

    def add_person(self, name: str, password: str, groups: list[str]) -> None:
        person = {
            "username": name,
            "name": name,
            "password": password,
            "enabled": True,
            "scope": ["openid"],
            "groups": groups,
        }
        self._admin("POST", "/user/", person)

    def set_groups(self, name: str, groups: list[str]) -> None:
        self._admin("PUT", f"/user/{name}", {"groups": groups})

    def authorize(self, authorize_url: str, name: str, password: str) -> str:
        """What a person's browser does at the provider: log in, grant `openid` to the
        hub, follow the hub's authorization request; returns the redirect back (with the
        code and the hub's state)."""
        browser, ca = requests.Session(), str(self.ca_file)
        person = {"username": name, "password": password}
        if not browser.post(self.base + "/auth/", json=person, verify=ca, timeout=10).ok:
            return ""
        grant = self.base + f"/auth/grant/{CLIENT_ID}"
        browser.put(grant, json={"scope": "openid"}, verify=ca, timeout=10)
        reply = browser.get(
            authorize_url + "&g_continue", allow_redirects=False, verify=ca, timeout=10
        )
        return reply.headers.get("Location", "")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlparse(url).query).items()}


def start(
    folder: Path, address: str = "127.0.0.1", enter: Sequence[str] = (), port: int = 0
) -> Provider:
    """Glewlwyd at `address`:`port` (a free one when 0), run with the `enter` prefix."""
    if not (Path(GLEWLWYD).exists() and SCHEMA.exists()):
        raise RuntimeError(f"{GLEWLWYD} is missing: run scripts/prereqs.sh (it installs glewlwyd)")
    ca, _, _ = make_tls(folder, address)
    database = folder / "glewlwyd.db"
    subprocess.run(
        ["sqlite3", str(database)], input=SCHEMA.read_bytes() + GROUPS_PROPERTY.encode(), check=True
    )
    port = port or free_port()
    config = folder / "glewlwyd.conf"
    config.write_text(CONFIG.format(address=address, port=port, folder=folder))
    process = subprocess.Popen(
        [*enter, GLEWLWYD, f"--config-file={config}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    provider = Provider(address, port, ca, process)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (
                (folder / "glewlwyd.log").read_text() if (folder / "glewlwyd.log").exists() else ""
            )
            raise RuntimeError(f"glewlwyd stopped: {log[-2000:]}")
        try:
            requests.get(provider.base + "/config", verify=str(ca), timeout=2)
            return provider
        except requests.RequestException:
            time.sleep(0.2)
    provider.stop()
    raise RuntimeError(f"glewlwyd did not answer within 20 s: {json.dumps(str(folder))}")
