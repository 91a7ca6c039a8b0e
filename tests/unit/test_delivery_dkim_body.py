"""DKIM with the body read in chunks: the same body hash as dkimpy's, and whole verifications."""

import base64
import hashlib

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from dkim.canonicalization import Relaxed, Simple
from hypothesis import given, settings
from hypothesis import strategies as st

from postfach.delivery.dkim_body import StreamingVerifier, body_hash
from postfach.delivery.incoming import SpooledMessage, SpoolWriter
from postfach.dkim_keys import generate_private_key

# Bodies made of what canonicalization cares about: WSP runs, empty lines, lines without an end.
_PIECES = st.sampled_from([b"a", b"word", b" ", b"\t", b"  \t ", b"\r\n", b"\r\n\r\n", b".", b"\r", b"\n"])


def chunked(data: bytes, sizes: list[int]):
    start = 0
    for size in sizes:
        yield data[start:start + size]
        start += size
    yield data[start:]


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=40).map(b"".join), st.lists(st.integers(1, 7), max_size=12),
       st.booleans(), st.none() | st.integers(0, 60))
def test_the_body_hash_is_dkimpys_however_the_body_is_cut(body, sizes, relaxed, length):
    canonical = (Relaxed if relaxed else Simple).canonicalize_body(body)
    if length is not None:
        canonical = canonical[:length]
    assert body_hash(chunked(body, sizes), hashlib.sha256, relaxed=relaxed, length=length) == \
        hashlib.sha256(canonical).digest()


@pytest.mark.parametrize("body, relaxed, canonical", [
    (b"", False, b"\r\n"),  # RFC 6376 §3.4.3: an empty body is one CRLF
    (b"", True, b""),  # §3.4.4 (erratum 1384): nothing at all
    (b"x\r\n\r\n\r\n", False, b"x\r\n"),  # empty lines at the end do not count
    (b"a  \t b \t\r\n\r\n \r\nc\r\n", True, b"a b\r\n\r\n\r\nc\r\n"),  # inside they do
    (b"no line end", False, b"no line end\r\n"),
])
def test_the_rfc_examples(body, relaxed, canonical):
    assert body_hash([body], hashlib.sha256, relaxed=relaxed) == hashlib.sha256(canonical).digest()


@pytest.fixture(scope="module")
def key():
    pem = generate_private_key().encode("ascii")
    private = serialization.load_pem_private_key(pem, password=None)
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


MESSAGE = (b"From: Alice <alice@a.test>\r\nTo: bob@b.test\r\nSubject: signed\r\n\r\n"
           b"Hello   Bob,\t \r\n\r\n.a dotted line\r\n" + b"0123456789 " * 9 + b"\r\n\r\n")


def signed(key, message: bytes, canonicalize=(b"relaxed", b"relaxed"), length=False) -> bytes:
    pem, _ = key
    return dkim.sign(message, b"sel", b"a.test", pem, canonicalize=canonicalize, include_headers=[b"from", b"subject"],
                     length=length) + message


def verify(key, message: bytes, chunk: int = 5) -> bool:
    _, record = key
    end = message.find(b"\r\n\r\n") + 4
    header, body = message[:end], message[end:]
    verifier = StreamingVerifier(header, lambda: (body[i:i + chunk] for i in range(0, len(body), chunk)))
    return verifier.verify(dnsfunc=lambda name, timeout=5: record if name == b"sel._domainkey.a.test." else None)


@pytest.mark.parametrize("canonicalize", [(b"simple", b"simple"), (b"relaxed", b"relaxed"), (b"relaxed", b"simple")])
def test_a_good_signature_verifies(key, canonicalize):
    assert verify(key, signed(key, MESSAGE, canonicalize))


def test_a_changed_body_fails_on_the_body_hash(key):
    message = signed(key, MESSAGE).replace(b"Hello", b"Hallo")
    with pytest.raises(dkim.ValidationError, match="body hash mismatch"):
        verify(key, message)


def test_a_changed_signed_field_fails_on_the_signature(key):
    assert not verify(key, signed(key, MESSAGE).replace(b"Subject: signed", b"Subject: forged"))


def test_with_l_text_added_after_the_signed_length_still_verifies(key):
    # RFC 6376 §3.5 l=: only that many body octets are signed (and §8.2 says why that is risky).
    assert verify(key, signed(key, MESSAGE, length=True) + b"appended by a list\r\n")
    with pytest.raises(dkim.ValidationError):
        verify(key, signed(key, MESSAGE, length=True).replace(b"Hello", b"Hallo"))


def test_a_spooled_message_verifies_from_its_file(key, tmp_path):
    message = signed(key, MESSAGE + b"".join(b"line %d  with  spaces \r\n" % n for n in range(100_000)))
    writer = SpoolWriter(tmp_path, in_memory=64 * 1024)
    writer.write(message)
    spooled = writer.finish()
    assert isinstance(spooled, SpooledMessage) and spooled.size == len(message)
    with spooled:
        _, record = key
        verifier = StreamingVerifier(spooled.header, spooled.body_chunks)
        assert verifier.verify(dnsfunc=lambda name, timeout=5: record)
