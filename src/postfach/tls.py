"""Certificates and TLS contexts: every door speaks TLS 1.2 or 1.3 with forward secrecy only.

Invariants:

- a configured certificate is used as it is, never rewritten;
- without one, a self-signed pair lives in `config.tls_dir`; it always names
  the configured host name (plus localhost, 127.0.0.1 and ::1), is valid for
  at least `RENEW_BEFORE` more, and its key matches it; anything else is
  regenerated on the next start;
- the key file is mode 0600 from the moment it exists; both files are
  replaced atomically (temp file, fsync, rename, fsync of the directory), key
  first, so a crash leaves the old pair, or a new key with an old certificate,
  which the key check above then repairs;
- every handshake presents the certificate for the client's SNI name: the
  configured one for that name, else for "*." and its parent, else the default
  (tls.cert, or the self-signed one); every context has the same policy;
- a reload (SIGHUP) changes no context a connection may be using: it builds new
  ones and swaps them in, and keeps the old ones for a pair that fails to load.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import ssl
import tempfile
import threading
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from postfach.config import CertificatePair, Config
from postfach.config_values import certificate_problems, os_error_text

log = logging.getLogger(__name__)

SELF_SIGNED_CERT = "selfsigned-cert.pem"
SELF_SIGNED_KEY = "selfsigned-key.pem"
DEFAULT_VALIDITY = timedelta(days=730)
RENEW_BEFORE = timedelta(days=30)
# RSA rather than ECDSA: old mail clients (and some appliances that relay
# through us) still cannot verify ECDSA server certificates.
RSA_KEY_BITS = 2048
LOOPBACK_NAMES = ("localhost",)
LOOPBACK_ADDRESSES = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))

# TLS 1.2 suites: ephemeral ECDH key exchange (forward secrecy) with an AEAD
# cipher only; no static-RSA key exchange, no CBC (Lucky13-style padding
# oracles), no finite-field DHE (we ship no DH parameters, and small-group
# DHE is what Logjam broke). TLS 1.3 suites are all ECDHE + AEAD already and
# Python 3.11 cannot restrict them further, so OpenSSL's defaults stand.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"


# --- certificates -----------------------------------------------------------


def ensure_certificate(config: Config) -> tuple[Path, Path]:
    """The (certificate, key) to serve: the configured pair, or a self-signed one made on demand."""
    if config.tls_cert is not None and config.tls_key is not None:
        return config.tls_cert, config.tls_key
    tls_dir = config.tls_dir
    tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = tls_dir / SELF_SIGNED_CERT, tls_dir / SELF_SIGNED_KEY
    # Several worker processes may start at once: one generates, the others
    # then find a good pair. Without the lock two writers could leave one's
    # key next to the other's certificate.
    with open(tls_dir / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not self_signed_is_current(cert_path, key_path, config.hostname):
                write_self_signed_certificate(config.hostname, cert_path, key_path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return cert_path, key_path


def self_signed_is_current(cert_path: Path, key_path: Path, hostname: str, *, now: datetime | None = None) -> bool:
    """True if the pair exists, belongs together, names `hostname` and is not about to expire."""
    now = now or datetime.now(timezone.utc)
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        return False
    if cert.not_valid_after_utc - now < RENEW_BEFORE or cert.not_valid_before_utc > now:
        return False
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return hostname in names.get_values_for_type(x509.DNSName)


def write_self_signed_certificate(
    hostname: str,
    cert_path: Path,
    key_path: Path,
    *,
    valid_for: timedelta = DEFAULT_VALIDITY,
) -> None:
    """Generate an RSA key and a self-signed server certificate for `hostname` and write both."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    now = datetime.now(timezone.utc)
    dns_names = [hostname] + [name for name in LOOPBACK_NAMES if name != hostname]
    # A common name is limited to 64 characters; clients match on the SAN anyway.
    common_name = hostname if len(hostname) <= 64 else "postfach"
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Postfach self-signed"),
        ]
    )
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))  # tolerate clients whose clock is a little behind
        .not_valid_after(now + valid_for)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name) for name in dns_names] + [x509.IPAddress(ip) for ip in LOOPBACK_ADDRESSES]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_atomically(key_path, key_pem, mode=0o600)
    _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    # mkstemp creates the file 0600, so the key is never readable by others,
    # not even for a moment; fchmod then sets the final mode.
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        try:
            os.unlink(temp_name)
        except OSError:
            pass
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)  # make the rename itself durable
    finally:
        os.close(directory)


# --- contexts ---------------------------------------------------------------


def server_context(cert: Path, key: Path, alpn: Sequence[str] = ()) -> ssl.SSLContext:
    """A server context for every listener (implicit TLS and STARTTLS alike).

    - TLS 1.2 and 1.3 only: TLS 1.0/1.1 lack AEAD suites and are deprecated
      by RFC 8996; RFC 8314 §4.1 asks mail servers for TLS 1.2 or later.
    - TLS 1.2 suites per `TLS12_CIPHERS`, the server's order preferred, so
      a client offering a weak suite first still gets a strong one.
    - No compression (CRIME), no renegotiation (client-initiated
      renegotiation is a cheap CPU DoS and TLS 1.3 has none anyway).
    - No session tickets at all. In TLS 1.2 a stateless ticket is encrypted
      under a key OpenSSL keeps for the life of the process and never rotates,
      so whoever gets that key decrypts every recorded session resumed with
      it (OP_NO_TICKET; TLS 1.2 resumes from the server-side cache instead).
      In TLS 1.3 the tickets the server sends right after the handshake
      arrive together with its first answer, and clients that wait for
      readable sockets under TLS (imaplib2, and so offlineimap) then never see
      that answer: STARTTLS followed by CAPABILITY hung in about one
      connection in seven. So none are sent (num_tickets = 0); every TLS 1.3
      connection makes a full ECDHE handshake, which forward secrecy wants
      anyway.
    - `alpn`: the application protocols offered (RFC 7301), the server's
      order preferred; none for the mail protocols.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= (
        ssl.OP_CIPHER_SERVER_PREFERENCE
        | ssl.OP_NO_COMPRESSION
        | ssl.OP_NO_RENEGOTIATION
        | ssl.OP_NO_TICKET
        | ssl.OP_SINGLE_ECDH_USE
    )
    context.num_tickets = 0
    if alpn:
        context.set_alpn_protocols(list(alpn))
    context.load_cert_chain(cert, key, password=_refuse_password)
    return context


def _refuse_password() -> bytes:
    # A server cannot ask for a pass phrase at start-up; never prompt on the terminal.
    raise ssl.SSLError("the TLS key is encrypted; postfach needs an unencrypted key")


# --- certificates by SNI name -------------------------------------------------


def certificate_name(server_name: str | None, names: Collection[str]) -> str | None:
    """Which of `names` (normalised as config.py does) serves `server_name`; None: the default.

    The exact name wins over a wildcard; "*.example.org" stands for exactly one more label
    (RFC 6125 §6.4.3), so neither "example.org" nor "a.b.example.org" match it.
    """
    if server_name is None:  # the client sent no SNI
        return None
    # RFC 6066 §3: the name is an A-label without a trailing dot, but clients keep its case.
    name = server_name.lower().removesuffix(".")
    if name in names:
        return name
    _, dot, parent = name.partition(".")
    if dot and f"*.{parent}" in names:
        return f"*.{parent}"
    return None


class Certificates:
    """The default certificate and one per configured SNI name, and the contexts presenting them.

    Each listener (implicit TLS or STARTTLS) gets a context of its own from `server_context`,
    so each keeps its own session cache. Its SNI callback, which OpenSSL calls in every
    handshake, with a server name or without, hands the connection over to the context that
    holds the certificate for that name, taken from one table shared by all listeners. So
    a reload swaps that table, and never loads into a context in use: OpenSSL would let the
    new certificate replace the old one and then drop the old key when the new one does not
    match it, and one bad file would leave a context without a usable certificate.
    """

    def __init__(self, config: Config) -> None:
        self._config = config
        self._pairs: dict[str | None, CertificatePair] = {}  # None: the default pair
        # By ALPN protocols, by name as in _pairs. Never changed once published, only replaced,
        # because the SNI callback reads it on the event loop while a reload runs in a thread.
        self._contexts: dict[tuple[str, ...], dict[str | None, ssl.SSLContext]] = {}
        self._lock = threading.Lock()  # one load or reload at a time

    def load(self) -> None:
        """Read every certificate and key (making the self-signed pair if needed); raises if one fails.

        Blocking: run it off the event loop.
        """
        with self._lock:
            default = CertificatePair(*ensure_certificate(self._config))
            self._pairs = {None: default, **self._config.tls_certificates}
            self._contexts = {}

    def server_context(self, alpn: Sequence[str] = ()) -> ssl.SSLContext:
        """A new context for one listener: `tls.server_context`'s policy, the certificate by SNI name."""
        protocols = tuple(alpn)
        with self._lock:
            assert self._pairs, "load() the certificates first"
            if protocols not in self._contexts:
                # The context switched to must offer the same ALPN protocols: OpenSSL asks the
                # switched-to context's ALPN callback, after the SNI callback has run.
                table = {name: server_context(pair.cert, pair.key, protocols) for name, pair in self._pairs.items()}
                self._contexts = {**self._contexts, protocols: table}
            default = self._pairs[None]
        context = server_context(default.cert, default.key, protocols)

        def choose(ssl_object: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
            table = self._contexts[protocols]
            ssl_object.context = table[certificate_name(server_name, table)]

        context.sni_callback = choose
        return context

    def reload(self) -> list[str]:
        """Re-read every certificate and key file (SIGHUP), renewing the self-signed pair if due.

        New handshakes present what was read; open connections keep what they have. A pair that
        fails keeps its old certificate and is logged as an error, one sentence per mistake;
        returns those sentences. Blocking: run it off the event loop.
        """
        with self._lock:
            if not self._contexts:
                return []  # no listener yet: each will read the files as they are when it starts
            problems: list[str] = []
            failed = 0
            contexts: dict[tuple[str, ...], dict[str | None, ssl.SSLContext]] = {alpn: {} for alpn in self._contexts}
            for name, pair in self._pairs.items():
                fresh, reasons = self._reload_pair(name, pair)
                for alpn, context in fresh.items():
                    contexts[alpn][name] = context
                label = "default TLS certificate" if name is None else f'TLS certificate for "{name}"'
                problems += [f"{label} not reloaded, the old one stays in use: {reason}" for reason in reasons]
                failed += bool(reasons)
            self._contexts = contexts
        for problem in problems:
            log.error("%s", problem)
        log.info("reloaded %d of %d TLS certificates", len(self._pairs) - failed, len(self._pairs))
        return problems

    def _reload_pair(
        self, name: str | None, pair: CertificatePair
    ) -> tuple[dict[tuple[str, ...], ssl.SSLContext], list[str]]:
        """`pair`'s contexts by ALPN protocols, read anew; or its old ones, and why not."""
        old = {alpn: table[name] for alpn, table in self._contexts.items()}
        if name is None and self._config.tls_cert is None:
            try:
                ensure_certificate(self._config)
            except OSError as exc:
                return old, [f"the self-signed certificate cannot be renewed: {_error_text(exc)}"]
        try:
            return {alpn: server_context(pair.cert, pair.key, alpn) for alpn in self._contexts}, []
        except OSError as exc:  # ssl.SSLError is one too
            # Say which file is wrong and how, in the words config.py uses at start-up; a file
            # fixed again since the load failed leaves only the error itself.
            return old, [text for _, text in certificate_problems(pair)] or [_error_text(exc)]


def _error_text(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc)
    return f'"{exc.filename}": {os_error_text(exc)}' if exc.filename else os_error_text(exc)
