import stat

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from securegal.transport.certs import Identity, init_federation, organization_of
from securegal.cli import main
from securegal.errors import ConfigError


@pytest.fixture(scope="module")
def certdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    init_federation(d, ["alice", "party1"])
    return d


def test_files_modes_and_names(certdir):
    ca = x509.load_pem_x509_certificate((certdir / "ca.pem").read_bytes())
    for org in ("alice", "party1"):
        assert stat.S_IMODE((certdir / f"{org}.key").stat().st_mode) == 0o600
        cert = x509.load_pem_x509_certificate((certdir / f"{org}.pem").read_bytes())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == org
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [org]
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        cert.verify_directly_issued_by(ca)  # raises if another key signed it
    assert stat.S_IMODE((certdir / "ca.key").stat().st_mode) == 0o600
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_identity_load(certdir):
    ident = Identity.from_dir(certdir, "party1")
    assert ident.name == "party1" == organization_of(ident.cert_pem)
    with pytest.raises(ConfigError, match="does not belong"):
        Identity.load(certdir / "alice.pem", certdir / "party1.key", certdir / "ca.pem")
    assert b"PRIVATE KEY" in ident.key_pem and "PRIVATE KEY" not in repr(ident) and "key_pem" not in repr(ident)


def test_a_private_key_others_can_read_is_refused(certdir, tmp_path):
    """Review A: ``party serve`` accepted a world-readable key without a word."""
    import shutil

    key = tmp_path / "party1.key"
    shutil.copy(certdir / "party1.key", key)
    key.chmod(0o644)
    with pytest.raises(ConfigError, match=f"private key {key} is readable by others \\(mode 644\\): chmod 600"):
        Identity.load(certdir / "party1.pem", key, certdir / "ca.pem")
    key.chmod(0o600)
    assert Identity.load(certdir / "party1.pem", key, certdir / "ca.pem").name == "party1"


def test_refuses_to_overwrite(certdir):
    with pytest.raises(ConfigError, match="already exists"):
        init_federation(certdir, ["party1"])


@pytest.mark.parametrize("names", [[], ["Alice"], ["a b"], ["x", "x"], ["ca"], ["-x"], ["a" * 64]])
def test_bad_names(tmp_path, names):
    with pytest.raises(ConfigError):
        init_federation(tmp_path, names)
    assert list(tmp_path.iterdir()) == []


def test_cli(tmp_path, capsys):
    assert main(["certs", "init", str(tmp_path / "c"), "--parties", "alice, bob,carol"]) == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(
        ["ca.pem", "ca.key"] + [f"{o}.{e}" for o in ("alice", "bob", "carol") for e in ("pem", "key")])
    assert "do not commit" in capsys.readouterr().out
    assert main(["certs", "init", str(tmp_path / "c"), "--parties", "alice"]) == 2  # never overwrites
    assert "already exists" in capsys.readouterr().err


def test_a_server_certificate_for_the_superlink_names_every_host(tmp_path, capsys):
    """The Flower set-up needs a SuperLink certificate naming every address it is reached by, and
    no command made one (review B F9)."""
    import ipaddress

    init_federation(tmp_path, ["alice", "bob"])
    assert main(["certs", "server", str(tmp_path), "--hosts", "link.example.org,127.0.0.1,::1"]) == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "superlink.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["link.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    assert stat.S_IMODE((tmp_path / "superlink.key").stat().st_mode) == 0o600
    capsys.readouterr()
    for argv, needle in ((["--hosts", "x"], "already exists"), (["--name", "l2", "--hosts", "bad host"], "'bad host'"),
                         (["--name", "l3", "--hosts", ","], "at least one host")):
        assert main(["certs", "server", str(tmp_path), *argv]) == 2
        assert needle in capsys.readouterr().err
    assert main(["certs", "server", str(tmp_path / "none"), "--hosts", "a"]) == 2
    assert "no usable CA" in capsys.readouterr().err
