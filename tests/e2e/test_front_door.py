"""Nginx in front of the hub: redirects, websockets that stay idle, large uploads, and a
TLS configuration graded against Mozilla's "intermediate" profile by two tools."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import requests
from hubclient import HubClient, idle, run_code
from testhost import TestHost, UserFactory, ok

SERVER_NAME = "hub.gpuhub.test"
SELFSIGNED = "/etc/nginx/gpuhub-tls/selfsigned"


# Dave's own server configuration (his home is kept whole): no websocket pings, which
# would otherwise reset nginx's read timeout every 30 s and hide a missing one.
NO_PINGS = {"ServerApp": {"tornado_settings": {"ws_ping_interval": 0}}}


@pytest.fixture(scope="module")
def dave(host: TestHost, make_user: UserFactory) -> HubClient:
    client = make_user("dave")
    home = host.path("home", "dave")
    # Made as the hub makes homes (0750, the user's), so a converge has nothing to mend.
    host.make_home("dave", {".jupyter/jupyter_server_config.json": json.dumps(NO_PINGS)})
    assert host.run("stat", "-c", "%a", home).strip() == "750"
    client.start_server("dave")
    return client


def test_http_redirects_to_https_except_acme_challenges(host: TestHost) -> None:
    plain = f"http://{host.address}"
    response = requests.get(f"{plain}/hub/login?next=x", allow_redirects=False, timeout=10)
    assert response.status_code == 301
    assert response.headers["Location"] == f"https://{host.address}/hub/login?next=x"
    challenge = requests.get(
        f"{plain}/.well-known/acme-challenge/none", allow_redirects=False, timeout=10
    )
    assert challenge.status_code == 404


def test_security_headers(hub_url: str, ca_file: str) -> None:
    headers = requests.get(f"{hub_url}/hub/login", verify=ca_file, timeout=10).headers
    assert headers["Strict-Transport-Security"] == "max-age=63072000"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_websocket_idle_for_75_seconds_still_runs_code(host: TestHost, dave: HubClient) -> None:
    """Nothing crosses the websocket for 75 s (nginx's default read timeout is 60 s)."""
    server = host.server_of("dave")
    assert '"ws_ping_interval": 0' in host.run(
        "docker", "exec", server, "cat", "/home/jovyan/.jupyter/jupyter_server_config.json"
    )
    kernel = dave.start_kernel("dave")
    with dave.channels("dave", kernel, timeout=150) as ws:
        assert run_code(ws, "x = 20").error is None
        idle(ws, 75)
        assert run_code(ws, "print(x + 22)").stdout == "42\n"


def test_100_mb_upload_through_the_contents_api(host: TestHost, dave: HubClient) -> None:
    data = os.urandom(100 * 2**20)
    chunk = 25 * 2**20
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for number, piece in enumerate(pieces, start=1):
        body = {
            "type": "file",
            "format": "base64",
            "content": base64.b64encode(piece).decode(),
            "chunk": -1 if number == len(pieces) else number,
        }
        response = dave.api("PUT", "/user/dave/api/contents/dataset.bin", json=body, timeout=300)
        assert response.status_code in (200, 201), response.text[:300]
    on_host = host.run("sha256sum", f"{host.root}/home/dave/dataset.bin").split()[0]
    assert on_host == hashlib.sha256(data).hexdigest()
    dave.api("DELETE", "/user/dave/api/contents/dataset.bin")


def test_sslyze_mozilla_intermediate(host: TestHost) -> None:
    from sslyze import (
        Scanner,
        ServerNetworkLocation,
        ServerScanRequest,
        ServerScanStatusEnum,
    )
    from sslyze.mozilla_tls_profile.tls_config_checker import (
        MozillaTlsConfiguration,
        ServerNotCompliantWithTlsConfiguration,
        TlsConfigurationEnum,
        check_server_against_tls_configuration,
    )

    location = ServerNetworkLocation(hostname=SERVER_NAME, port=443, ip_address=host.address)
    scanner = Scanner()
    scanner.queue_scans([ServerScanRequest(server_location=location)])
    (result,) = scanner.get_results()
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, result.connectivity_error_trace
    try:
        check_server_against_tls_configuration(
            server_scan_result=result,
            tls_config_to_check_against=MozillaTlsConfiguration.get(
                TlsConfigurationEnum.MOZILLA_INTERMEDIATE
            ),
        )
        issues: dict[str, str] = {}
    except ServerNotCompliantWithTlsConfiguration as err:
        issues = err.issues
    # A self-signed certificate cannot be in public trust stores; nothing else may deviate.
    assert set(issues) <= {"certificate_path_validation"}, issues


@pytest.fixture(scope="module")
def testssl(
    host: TestHost, ca_file: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    out = tmp_path_factory.mktemp("testssl") / "result.json"
    subprocess.run(
        [
            "testssl",
            "--quiet",
            "--color",
            "0",
            "--warnings",
            "off",
            "--add-ca",
            ca_file,
            "--ip",
            host.address,
            "--protocols",
            "--fs",
            "--headers",
            "--jsonfile",
            str(out),
            f"https://{SERVER_NAME}/",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    findings = json.loads(Path(out).read_text())
    return {f["id"]: f["finding"] for f in findings}


@pytest.mark.parametrize(
    ("finding", "expected"),
    [
        ("SSLv2", "not offered"),
        ("SSLv3", "not offered"),
        ("TLS1", "not offered"),
        ("TLS1_1", "not offered"),
        ("TLS1_2", "offered"),
        ("TLS1_3", "offered"),
    ],
)
def test_testssl_protocols(testssl: dict[str, str], finding: str, expected: str) -> None:
    assert testssl[finding].startswith(expected), testssl[finding]


def test_testssl_forward_secrecy_and_hsts(testssl: dict[str, str]) -> None:
    assert testssl["PFS"].startswith("offered"), testssl["PFS"]  # testssl 3.0 names it PFS
    days = int(testssl["HSTS_time"].split()[0])
    assert days >= 180, testssl["HSTS_time"]


def certificate(host: TestHost) -> tuple[str, str]:
    """(serial, subjectAltName) of the self-signed certificate on the host."""
    out = host.run(
        "openssl", "x509", "-in", f"{SELFSIGNED}.crt", "-noout", "-serial", "-ext", "subjectAltName"
    )
    serial = out.splitlines()[0].removeprefix("serial=")
    return serial, out.split("Subject Alternative Name:", 1)[1].strip()


def test_the_self_signed_certificate_follows_its_names_and_its_renewal(host: TestHost) -> None:
    """A re-run keeps a certificate that is still right without issuing one (a no-op
    converge skips the request), and issues a new one when the names change back and
    forth or renewal is due. The served certificate is put back at the end: the session
    trusts it (ca_file)."""
    host.run("cp", "-p", f"{SELFSIGNED}.crt", f"{SELFSIGNED}.crt.test-keep")
    try:
        first, names = certificate(host)
        assert f"DNS:{SERVER_NAME}" in names
        wider = json.dumps({"nginx_server_names": [SERVER_NAME, "alt.gpuhub.test"]})
        ok(host.converge("--tags", "nginx", "-e", wider))
        wide, wide_names = certificate(host)
        assert wide != first
        assert "DNS:alt.gpuhub.test" in wide_names

        ok(host.converge("--tags", "nginx"))
        narrow, narrow_names = certificate(host)
        assert narrow != wide
        assert narrow_names == names

        due = json.dumps({"nginx_selfsigned_days": 366, "nginx_selfsigned_renew_days": 365})
        ok(host.converge("--tags", "nginx", "-e", due))
        renewed, renewed_names = certificate(host)
        assert renewed != narrow
        assert renewed_names == names

        ok(host.converge("--tags", "nginx"), changed=0)
        assert certificate(host)[0] == renewed
    finally:
        host.run("mv", f"{SELFSIGNED}.crt.test-keep", f"{SELFSIGNED}.crt")
        host.run("systemctl", "reload", "nginx")
    assert certificate(host)[0] == first
