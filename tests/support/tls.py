"""TLS for test clients: the test servers use self-signed certificates, made here or by tls.py."""

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def insecure_context() -> ssl.SSLContext:
    """A client context that accepts any certificate (the tests check TLS policy elsewhere)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def write_certificate(cert: Path, key: Path, common_name: str, names: tuple[str, ...] = (), *, rsa_key=False) -> None:
    """A self-signed server certificate named `common_name`, for DNS `names` (default: the common name).

    An EC key unless `rsa_key`: much faster to make, and the server accepts both.
    """
    private_key = rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in names or (common_name,)]), critical=False
        )
        .sign(private_key, hashes.SHA256())
    )
    cert.parent.mkdir(parents=True, exist_ok=True)
    key.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def presented(tls: ssl.SSLSocket | ssl.SSLObject) -> x509.Certificate:
    """The certificate the server presented (also when the client did not verify it)."""
    der = tls.getpeercert(binary_form=True)
    assert der is not None, "the server presented no certificate"
    return x509.load_der_x509_certificate(der)


def common_name(certificate: x509.Certificate) -> str:
    return certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def dns_names(certificate: x509.Certificate) -> list[str]:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName)


def encrypted_key(path: Path) -> None:
    """A private key the server cannot load: it wants a pass phrase."""
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass phrase"),
        )
    )
