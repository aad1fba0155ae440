"""A real OpenLDAP server (Debian's slapd) for the sign-in tests: a private instance, TLS
with a CA made here, every operation refused without TLS. The hub's tests run it on
loopback; the end-to-end tests run it inside a test host's network (`enter`: a command
prefix such as nsenter's, the binary and its files staying on this machine)."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ldap3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SLAPD = "/usr/sbin/slapd"  # Debian's slapd package (scripts/prereqs.sh installs it)
SLAPADD = "/usr/sbin/slapadd"
SUFFIX = "dc=lab,dc=test"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "directory-admin-secret"  # noqa: S105 (a throwaway test directory)
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
SERVICE_DN = f"cn=gpuhub,{SUFFIX}"
SERVICE_PASSWORD = "service-account-secret"  # noqa: S105


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_tls(folder: Path, address: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A CA and a server certificate for `address` and localhost: (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("gpuhub test directory CA"))
        .issuer_name(_name("gpuhub test directory CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(address))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(address))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.crt", folder / "server.crt", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    paths[2].chmod(0o600)
    return paths


CONFIG = """\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {folder}/slapd.pid
TLSCACertificateFile {folder}/ca.crt
TLSCertificateFile {folder}/server.crt
TLSCertificateKeyFile {folder}/server.key
# Nothing without TLS (a StartTLS left out fails every bind).
security tls=1
database mdb
maxsize 10485760
suffix "{suffix}"
rootdn "{admin}"
rootpw {password}
directory {folder}/db
access to attrs=userPassword by self read by anonymous auth by * none
access to * by users read by * none
"""


@dataclass
class Directory:
    """A running slapd at `address`: StartTLS on `port`, ldaps on `ldaps_port`."""

    address: str
    port: int
    ldaps_port: int
    ca_file: Path
    process: subprocess.Popen[bytes]

    def admin(self) -> ldap3.Connection:
        tls = ldap3.Tls(ca_certs_file=str(self.ca_file))
        server = ldap3.Server(self.address, port=self.port, tls=tls)
        for attempt in range(3):
            conn = ldap3.Connection(server, ADMIN_DN, ADMIN_PASSWORD)
            conn.open()
            try:
                conn.start_tls()
                break
            except ldap3.core.exceptions.LDAPStartTLSError:
                # slapd 2.5's race on a reused socket slot ("cannot start TLS when
                # operations are outstanding"): a new connection succeeds.
                conn.unbind()
                if attempt == 2:
                    raise
        if not conn.bind():
            raise RuntimeError(f"cannot bind as the directory's admin: {conn.result}")
        return conn

    def add_person(self, uid: str, password: str) -> str:
        dn = f"uid={uid},{PEOPLE}"
        with self.admin() as conn:
            conn.add(
                dn,
                ["inetOrgPerson"],
                {"cn": uid, "sn": uid, "uid": uid, "userPassword": password},
            )
            assert conn.result["result"] == 0, conn.result
        return dn

    def set_members(self, group: str, uids: list[str]) -> None:
        """Make `group` (groupOfNames) hold exactly these people (at least one)."""
        dn = f"cn={group},{GROUPS}"
        members = [f"uid={uid},{PEOPLE}" for uid in uids]
        with self.admin() as conn:
            if not conn.search(dn, "(objectClass=*)", ldap3.BASE):
                conn.add(dn, ["groupOfNames"], {"cn": group, "member": members})
            else:
                conn.modify(dn, {"member": [(ldap3.MODIFY_REPLACE, members)]})
            assert conn.result["result"] == 0, conn.result

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start(
    folder: Path,
    address: str = "127.0.0.1",
    enter: Sequence[str] = (),
    ports: tuple[int, int] | None = None,
) -> Directory:
    """slapd at `address` (StartTLS and ldaps `ports`, free ones when not given), run
    with the `enter` prefix."""
    if not (Path(SLAPD).exists() and Path(SLAPADD).exists()):
        raise RuntimeError(f"{SLAPD} is missing: run scripts/prereqs.sh (it installs slapd)")
    ca, _, _ = make_tls(folder, address)
    (folder / "db").mkdir()
    config = folder / "slapd.conf"
    config.write_text(
        CONFIG.format(folder=folder, suffix=SUFFIX, admin=ADMIN_DN, password=ADMIN_PASSWORD)
    )
    base = f"""\
dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
o: lab
dc: lab

dn: {PEOPLE}
objectClass: organizationalUnit
ou: people

dn: {GROUPS}
objectClass: organizationalUnit
ou: groups

dn: {SERVICE_DN}
objectClass: person
cn: gpuhub
sn: gpuhub
userPassword: {SERVICE_PASSWORD}
"""
    subprocess.run(
        [SLAPADD, "-f", str(config), "-b", SUFFIX],
        input=base.encode(),
        check=True,
        capture_output=True,
    )
    port, ldaps_port = ports or (free_port(), free_port())
    urls = f"ldap://{address}:{port}/ ldaps://{address}:{ldaps_port}/"
    process = subprocess.Popen(
        [*enter, SLAPD, "-f", str(config), "-h", urls, "-d", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    directory = Directory(address, port, ldaps_port, ca, process)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"slapd stopped: {process.stderr.read().decode() if process.stderr else ''}"
            )
        try:
            directory.admin().unbind()
            return directory
        except (ldap3.core.exceptions.LDAPException, OSError):
            time.sleep(0.2)
    directory.stop()
    raise RuntimeError("slapd did not answer within 20 s")
