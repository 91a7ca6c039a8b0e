"""tls.Certificates: the certificate for the client's SNI name, and reloading it without a gap.

Every handshake is a real one on 127.0.0.1, and the tests read the certificate the server
presented (the common name says which file it came from).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from postfach.config import Config, load_config
from postfach.tls import (
    SELF_SIGNED_CERT,
    SELF_SIGNED_KEY,
    Certificates,
    certificate_name,
    write_self_signed_certificate,
)
from tests.support.tls import (
    common_name,
    encrypted_key,
    insecure_context,
    presented,
    write_certificate,
)

HOSTNAME = "mail.example.test"
DOMAINS = ("mail.example.org", "*.example.net", "bücher.example", "Upper.Example.COM.")
SNI_CASES = {
    None: "default",
    "mail.example.org": "mail.example.org",
    "MAIL.Example.ORG": "mail.example.org",  # clients keep the case the user typed
    "unknown.example.org": "default",
    "a.example.net": "*.example.net",
    "A.Example.NET": "*.example.net",
    "a.b.example.net": "default",  # a wildcard stands for one label only
    "example.net": "default",
    "bücher.example": "bücher.example",  # sent as the A-label xn--bcher-kva.example
    "upper.example.com": "Upper.Example.COM.",
}


def pair_paths(directory: Path, label: str) -> tuple[Path, Path]:
    stem = label.replace("*", "star").strip(".").lower()
    return directory / f"{stem}-cert.pem", directory / f"{stem}-key.pem"


def write_pair(directory: Path, label: str, version: int = 1, *, rsa_key: bool = False) -> tuple[Path, Path]:
    """The pair for `label` ("default" or a configured name), its common name "<label> v<version>"."""
    cert, key = pair_paths(directory, label)
    write_certificate(cert, key, f"{label} v{version}", ("placeholder.test",), rsa_key=rsa_key)
    return cert, key


def config_for(tmp_path: Path, domains=DOMAINS, *, default: bool = True) -> Config:
    """A config naming the pairs in tmp_path/certs: the default one (unless not `default`) and one per domain."""
    lines = []
    if default:
        cert, key = pair_paths(tmp_path / "certs", "default")
        lines += ["[tls]", f'cert = "{cert}"', f'key = "{key}"']
    for domain in domains:
        cert, key = pair_paths(tmp_path / "certs", domain)
        lines += [f'[tls.certificates."{domain}"]', f'cert = "{cert}"', f'key = "{key}"']
    path = tmp_path / "postfach.toml"
    path.write_text(f'data_dir = "data"\nhostname = "{HOSTNAME}"\n' + "\n".join(lines) + "\n", encoding="utf-8")
    return load_config(path, {})


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    for label in ("default", *DOMAINS):
        write_pair(tmp_path / "certs", label)
    return tmp_path / "certs"


def loaded(config: Config) -> Certificates:
    certificates = Certificates(config)
    certificates.load()
    return certificates


@contextlib.asynccontextmanager
async def tls_server(context: ssl.SSLContext) -> AsyncIterator[int]:
    """A real TLS server on 127.0.0.1: greets, then echoes lines until the client hangs up."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            writer.write(b"hello\r\n")
            while line := await reader.readline():
                writer.write(line)
            writer.close()
            await writer.wait_closed()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def connection(port: int, sni: str | None, client: ssl.SSLContext | None = None):
    """An open TLS connection (its greeting read) with SNI `sni`; None sends none (we dial an address)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=client or insecure_context(), server_hostname=sni), 10
    )
    try:
        assert await asyncio.wait_for(reader.readline(), 10) == b"hello\r\n"
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def presented_name(port: int, sni: str | None, client: ssl.SSLContext | None = None) -> str:
    async with connection(port, sni, client) as (_, writer):
        return common_name(presented(writer.get_extra_info("ssl_object")))


# --- which name ---------------------------------------------------------------

NAMES = frozenset({"mail.example.org", "*.example.net", "www.example.net"})


@pytest.mark.parametrize(
    "server_name, chosen",
    [
        (None, None),
        ("mail.example.org", "mail.example.org"),
        ("MAIL.EXAMPLE.ORG", "mail.example.org"),
        ("mail.example.org.", "mail.example.org"),
        ("other.example.org", None),
        ("example.org", None),
        ("a.example.net", "*.example.net"),
        ("www.example.net", "www.example.net"),  # the exact name wins over the wildcard
        ("a.b.example.net", None),
        ("example.net", None),
        ("*.example.net", "*.example.net"),  # as odd as it is, a client may send the pattern itself
        ("net", None),
        ("", None),
    ],
)
def test_certificate_name(server_name, chosen):
    assert certificate_name(server_name, NAMES) == chosen


# --- handshakes ---------------------------------------------------------------


async def test_each_sni_name_gets_its_certificate(tmp_path, certs):
    certificates = loaded(config_for(tmp_path))
    async with tls_server(certificates.server_context()) as port:
        seen = {sni: await presented_name(port, sni) for sni in SNI_CASES}
    assert seen == {sni: f"{label} v1" for sni, label in SNI_CASES.items()}


async def test_every_listener_context_chooses_alike(tmp_path, certs):
    # Each listener has a context of its own (its own session cache); all share the certificates.
    certificates = loaded(config_for(tmp_path))
    first, second = certificates.server_context(), certificates.server_context()
    assert first is not second
    async with tls_server(first) as port_1, tls_server(second) as port_2:
        for port in (port_1, port_2):
            assert await presented_name(port, "a.example.net") == "*.example.net v1"
            assert await presented_name(port, None) == "default v1"


async def test_self_signed_default_with_domain_certificates(tmp_path, certs):
    certificates = loaded(config_for(tmp_path, default=False))
    async with tls_server(certificates.server_context()) as port:
        assert await presented_name(port, None) == HOSTNAME
        assert await presented_name(port, "unknown.example.org") == HOSTNAME
        assert await presented_name(port, "mail.example.org") == "mail.example.org v1"


@pytest.mark.parametrize("sni", [None, "mail.example.org", "a.example.net"])
async def test_alpn_is_kept_for_every_name(tmp_path, certs, sni):
    # OpenSSL asks the context switched to for ALPN, so every one of them must offer it.
    certificates = loaded(config_for(tmp_path))
    async with tls_server(certificates.server_context(alpn=("h2", "http/1.1"))) as port:
        for offered, agreed in ((["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1"), (["spdy/3"], None)):
            client = insecure_context()
            client.set_alpn_protocols(offered)
            async with connection(port, sni, client) as (_, writer):
                tls = writer.get_extra_info("ssl_object")
                assert (common_name(presented(tls)), tls.selected_alpn_protocol()) == (SNI_CASES[sni] + " v1", agreed)


def client(version: tuple[ssl.TLSVersion, ssl.TLSVersion], ciphers: str | None = None) -> ssl.SSLContext:
    context = insecure_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1, on purpose
        context.minimum_version, context.maximum_version = version
    if ciphers:
        context.set_ciphers(ciphers)
    return context


TLS12 = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)


@pytest.mark.parametrize("sni", [None, "mail.example.org"])
async def test_policy_is_the_same_for_every_name(tmp_path, sni):
    # RSA pairs, so that a static-RSA suite would be possible at all if the policy allowed it.
    for label in ("default", "mail.example.org"):
        write_pair(tmp_path / "certs", label, rsa_key=True)
    certificates = loaded(config_for(tmp_path, domains=("mail.example.org",)))
    expected = f"{SNI_CASES[sni]} v1"
    async with tls_server(certificates.server_context()) as port:
        tls13 = client((ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3))
        assert await presented_name(port, sni, tls13) == expected
        assert await presented_name(port, sni, client(TLS12, "ECDHE-RSA-AES256-GCM-SHA384")) == expected
        for refused in (
            client(TLS12, "AES128-GCM-SHA256"),  # static RSA: no forward secrecy
            client(TLS12, "ECDHE-RSA-AES128-SHA"),  # CBC
            client((ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1), "ALL:@SECLEVEL=0"),
        ):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await presented_name(port, sni, refused)


# --- reloading ----------------------------------------------------------------


async def test_reload_presents_new_certificates_and_leaves_open_connections_alone(tmp_path, certs):
    certificates = loaded(config_for(tmp_path))
    async with (
        tls_server(certificates.server_context()) as port,
        connection(port, "mail.example.org") as (reader, writer),
    ):
        for label in ("default", *DOMAINS):
            write_pair(certs, label, version=2)
        assert await asyncio.to_thread(certificates.reload) == []

        seen = {sni: await presented_name(port, sni) for sni in SNI_CASES}
        assert seen == {sni: f"{label} v2" for sni, label in SNI_CASES.items()}
        # The connection made before the reload still works, with the certificate it got.
        writer.write(b"still there?\r\n")
        assert await asyncio.wait_for(reader.readline(), 10) == b"still there?\r\n"
        assert common_name(presented(writer.get_extra_info("ssl_object"))) == "mail.example.org v1"


def other_key(path: Path) -> None:
    write_certificate(path.with_suffix(".other"), path, "another certificate")


def is_a_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


DAMAGE = {
    "certificate missing": (0, Path.unlink, 'certificate file "{cert}" cannot be read: no such file or directory'),
    "certificate not PEM": (
        0,
        lambda path: path.write_text("not a certificate\n"),
        'certificate file "{cert}" holds no PEM certificate',
    ),
    "key of another certificate": (
        1,
        other_key,
        'certificate "{cert}" and key "{key}" do not load together (key values mismatch)',
    ),
    "key encrypted": (
        1,
        encrypted_key,
        (
            'certificate "{cert}" and key "{key}" do not load together '
            "(the key is encrypted; postfach needs an unencrypted key)"
        ),
    ),
    "key unreadable": (1, is_a_directory, 'key file "{key}" cannot be read: is a directory'),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
async def test_broken_pair_at_reload_keeps_its_old_certificate(tmp_path, certs, caplog, damage):
    which, break_it, reason = DAMAGE[damage]
    certificates = loaded(config_for(tmp_path))
    async with tls_server(certificates.server_context()) as port:
        for label in ("default", *DOMAINS):
            write_pair(certs, label, version=2)
        cert, key = pair_paths(certs, "mail.example.org")
        break_it((cert, key)[which])

        with caplog.at_level(logging.INFO, logger="postfach.tls"):
            problems = await asyncio.to_thread(certificates.reload)
        expected = (
            'TLS certificate for "mail.example.org" not reloaded, the old one stays in use: '
            + reason.format(cert=cert, key=key)
        )
        assert problems == [expected]
        assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
            ("ERROR", expected),
            ("INFO", f"reloaded {len(DOMAINS)} of {len(DOMAINS) + 1} TLS certificates"),
        ]
        # The broken name keeps its old certificate; every other name has its new one.
        seen = {sni: await presented_name(port, sni) for sni in SNI_CASES}
        assert seen == {sni: f"{label} v{1 if label == 'mail.example.org' else 2}" for sni, label in SNI_CASES.items()}

        # Once the files are right again, the next reload takes them.
        if cert.is_dir() or key.is_dir():
            (cert if cert.is_dir() else key).rmdir()
        write_pair(certs, "mail.example.org", version=3)
        assert await asyncio.to_thread(certificates.reload) == []
        assert await presented_name(port, "mail.example.org") == "mail.example.org v3"


def swap(cert: Path, key: Path) -> None:
    cert_bytes, key_bytes = cert.read_bytes(), key.read_bytes()
    cert.write_bytes(key_bytes)
    key.write_bytes(cert_bytes)


@pytest.mark.parametrize(
    "damage, reasons",
    [
        (
            lambda cert, key: (cert.unlink(), key.unlink()),
            [
                'certificate file "{cert}" cannot be read: no such file or directory',
                'key file "{key}" cannot be read: no such file or directory',
            ],
        ),
        (swap, ['certificate file "{cert}" holds no PEM certificate', 'key file "{key}" holds no PEM key']),
    ],
    ids=["both missing", "swapped"],
)
async def test_two_broken_files_are_one_sentence_each(tmp_path, certs, damage, reasons):
    certificates = loaded(config_for(tmp_path, domains=("mail.example.org",)))
    context = certificates.server_context()
    cert, key = pair_paths(certs, "mail.example.org")
    damage(cert, key)
    prefix = 'TLS certificate for "mail.example.org" not reloaded, the old one stays in use: '
    assert await asyncio.to_thread(certificates.reload) == [prefix + r.format(cert=cert, key=key) for r in reasons]
    async with tls_server(context) as port:
        assert await presented_name(port, "mail.example.org") == "mail.example.org v1"


async def test_reload_renews_the_self_signed_pair_when_due_and_only_then(tmp_path, certs):
    config = config_for(tmp_path, domains=(), default=False)
    certificates = loaded(config)
    cert_path, key_path = config.tls_dir / SELF_SIGNED_CERT, config.tls_dir / SELF_SIGNED_KEY
    async with tls_server(certificates.server_context()) as port:
        async with connection(port, None) as (_, writer):
            first = presented(writer.get_extra_info("ssl_object"))

        # Still current: a reload keeps the very same certificate.
        assert await asyncio.to_thread(certificates.reload) == []
        async with connection(port, None) as (_, writer):
            assert presented(writer.get_extra_info("ssl_object")).serial_number == first.serial_number

        # Due for renewal: the reload makes a new pair and presents it.
        write_self_signed_certificate(HOSTNAME, cert_path, key_path, valid_for=timedelta(days=29))
        expiring = cert_path.read_bytes()
        assert await asyncio.to_thread(certificates.reload) == []
        assert cert_path.read_bytes() != expiring
        async with connection(port, None) as (_, writer):
            renewed = presented(writer.get_extra_info("ssl_object"))
        assert renewed.serial_number != first.serial_number
        assert renewed.not_valid_after_utc > datetime.now(UTC) + timedelta(days=700)
        assert common_name(renewed) == HOSTNAME


async def test_self_signed_pair_that_cannot_be_renewed_keeps_the_old_one(tmp_path):
    config = config_for(tmp_path, domains=(), default=False)
    certificates = loaded(config)
    async with tls_server(certificates.server_context()) as port:
        async with connection(port, None) as (_, writer):
            before = presented(writer.get_extra_info("ssl_object")).serial_number
        # The lock file that serialises renewals cannot be opened (a directory stands in its way).
        lock = config.tls_dir / ".lock"
        lock.unlink()
        lock.mkdir()
        assert await asyncio.to_thread(certificates.reload) == [
            (
                "default TLS certificate not reloaded, the old one stays in use: "
                f'the self-signed certificate cannot be renewed: "{lock}": is a directory'
            )
        ]
        async with connection(port, None) as (_, writer):
            assert presented(writer.get_extra_info("ssl_object")).serial_number == before


async def test_reload_before_the_load_changes_nothing(tmp_path, certs):
    # SIGHUP may come while the server starts; the load then reads the files as they are.
    certificates = Certificates(config_for(tmp_path))
    assert certificates.reload() == []
    write_pair(certs, "mail.example.org", version=2)
    certificates.load()
    async with tls_server(certificates.server_context()) as port:
        assert await presented_name(port, "mail.example.org") == "mail.example.org v2"
