"""Development certificates for a federation: one CA and one certificate per organization.

``securegal certs init DIR --parties alice,party1,party2`` writes ``ca.pem`` (the federation
CA), ``ca.key`` and, for every organization, ``<org>.pem`` and ``<org>.key``. The organization
name is the certificate's subject common name and its only subjectAltName (a DNS name), so a
TLS client can check a server's name and a server can check which organization called it.
Keys are written with mode 0600 and never overwritten; keep them out of version control.

This is a development CA: a real federation uses certificates from its own PKI, loaded with
:meth:`Identity.load` exactly like these.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..errors import ConfigError

ORG_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
CA_NAME = "securegal development CA"


def check_org_name(name: str) -> str:
    """Return ``name`` if it can be a certificate's DNS name (lower-case letters, digits, '-')."""
    if not isinstance(name, str) or not ORG_NAME.match(name):
        raise ConfigError(f"organization name {name!r} must be 1-63 lower-case letters, digits or '-' "
                          "(it becomes the certificate's DNS name)")
    return name


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "securegal federation"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


# Longest validity of a development certificate (ten years).
MAX_DAYS = 3650


def make_ca(days: int = 365) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA certificate (P-256) that may sign organization certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(_name(CA_NAME)).issuer_name(_name(CA_NAME))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, org: str,
          days: int = 365) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """An organization's certificate, valid for both TLS server and client authentication."""
    check_org_name(org)
    usage = x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False)
    return _signed(ca_cert, ca_key, org, days, [x509.DNSName(org)],
                   [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], usage)


def _signed(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, name: str, days: int,
            alt_names: list, usages: list, key_usage: x509.KeyUsage | None = None
            ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new P-256 key and its leaf certificate for ``name``, signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(name)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    builder = (builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
               .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    return builder.sign(ca_key, hashes.SHA256()), key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (no window where a key is world-readable)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; refusing to overwrite certificates or keys") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def init_federation(directory: str | os.PathLike, parties: Sequence[str], days: int = 365) -> dict[str, Path]:
    """Write a fresh CA and one certificate + key per organization into ``directory``.

    Returns ``{org: certificate path}`` (the key sits next to it as ``<org>.key``; the CA as
    ``ca.pem``). Existing files are never overwritten.
    """
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise ConfigError(f"days must be an integer in 1..{MAX_DAYS}, got {days!r}")
    names = [check_org_name(p) for p in parties]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"need one or more distinct organization names, got {list(parties)}")
    if "ca" in names:
        raise ConfigError("'ca' is reserved for the federation CA's files")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for path in [out / "ca.pem", out / "ca.key"] + [out / f"{n}.{ext}" for n in names for ext in ("pem", "key")]:
        if path.exists():
            raise ConfigError(f"{path} already exists; refusing to overwrite certificates or keys")
    ca_cert, ca_key = make_ca(days)
    _write_new(out / "ca.key", key_pem(ca_key), 0o600)
    _write_new(out / "ca.pem", cert_pem(ca_cert), 0o644)
    paths = {}
    for name in names:
        cert, key = issue(ca_cert, ca_key, name, days)
        _write_new(out / f"{name}.key", key_pem(key), 0o600)
        _write_new(out / f"{name}.pem", cert_pem(cert), 0o644)
        paths[name] = out / f"{name}.pem"
    return paths


def init_server(directory: str | os.PathLike, name: str, hosts: Sequence[str], days: int = 365) -> Path:
    """``<name>.pem``/``.key`` in ``directory``, signed by its ``ca.pem``/``ca.key``: a TLS server
    certificate (e.g. Flower's SuperLink) valid for every host name or IP address in ``hosts``,
    each one it is reached by. Existing files are never overwritten."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise ConfigError(f"days must be an integer in 1..{MAX_DAYS}, got {days!r}")
    check_org_name(name)
    if name == "ca":
        raise ConfigError("'ca' is reserved for the federation CA's files")
    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not re.fullmatch(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]"
                                r"([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*", host):
                raise ConfigError(f"--hosts: {host!r} is neither an IP address nor a host name") from None
            names.append(x509.DNSName(host))
    if not names:
        raise ConfigError("give at least one host name or IP address the server is reached by")
    out = Path(directory)
    try:
        ca_cert = x509.load_pem_x509_certificate((out / "ca.pem").read_bytes())
        ca_key = serialization.load_pem_private_key((out / "ca.key").read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"no usable CA in {out} (ca.pem and ca.key, from `securegal certs init`): {exc}") from None
    for path in (out / f"{name}.pem", out / f"{name}.key"):
        if path.exists():
            raise ConfigError(f"{path} already exists; refusing to overwrite certificates or keys")
    cert, key = _signed(ca_cert, ca_key, name, days, names, [ExtendedKeyUsageOID.SERVER_AUTH])
    _write_new(out / f"{name}.key", key_pem(key), 0o600)
    _write_new(out / f"{name}.pem", cert_pem(cert), 0o644)
    return out / f"{name}.pem"


def _certificate(pem: bytes, path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise ConfigError(f"{path} is not a PEM certificate") from None


def organization_of(pem: bytes) -> str:
    """The organization a certificate names (its subject common name)."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ConfigError(f"not a PEM certificate: {exc}") from None
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1:
        raise ConfigError(f"certificate subject {cert.subject.rfc4514_string()!r} must have exactly one common name")
    return str(cns[0].value)


@dataclass(frozen=True)
class Identity:
    """One organization's TLS material (PEM bytes): its certificate and key, and the federation CA."""

    name: str
    cert_pem: bytes
    key_pem: bytes = field(repr=False)  # a repr of a config (an error, a log line) must not print the key
    ca_pem: bytes

    @classmethod
    def load(cls, cert: str | os.PathLike, key: str | os.PathLike, ca: str | os.PathLike) -> "Identity":
        """Read the three files and check them: the key belongs to the certificate, and the CA
        signed the certificate. The name is the certificate's common name."""
        try:
            cert_b, key_b, ca_b = (Path(p).read_bytes() for p in (cert, key, ca))
            mode = os.stat(key).st_mode
        except OSError as exc:
            raise ConfigError(f"cannot read TLS file {exc.filename}: {exc.strerror}") from None
        if mode & 0o077:  # as ssh does: a key others can read is no longer this organization's alone
            raise ConfigError(f"private key {key} is readable by others (mode {mode & 0o777:o}): chmod 600 {key}")
        try:
            private = serialization.load_pem_private_key(key_b, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"cannot read private key {key}: {exc}") from None
        certificate, authority = (_certificate(b, p) for b, p in ((cert_b, cert), (ca_b, ca)))
        spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        if private.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
            raise ConfigError(f"key {key} does not belong to certificate {cert}")
        try:
            certificate.verify_directly_issued_by(authority)
        except (ValueError, TypeError, InvalidSignature):
            raise ConfigError(f"certificate {cert} was not signed by the CA in {ca}") from None
        return cls(check_org_name(organization_of(cert_b)), cert_b, key_b, ca_b)

    @classmethod
    def from_dir(cls, directory: str | os.PathLike, name: str) -> "Identity":
        """Load ``<name>.pem``, ``<name>.key`` and ``ca.pem`` from a ``certs init`` directory."""
        d = Path(directory)
        ident = cls.load(d / f"{name}.pem", d / f"{name}.key", d / "ca.pem")
        if ident.name != name:
            raise ConfigError(f"{d / (name + '.pem')} names organization {ident.name!r}, not {name!r}")
        return ident
