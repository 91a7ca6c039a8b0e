"""Test messages: small, distinct, and of a chosen size."""

import itertools

_serial = itertools.count(1)


def make_message(size: int = 0, subject: str | None = None) -> bytes:
    """A well-formed message; padded with body lines to at least `size` bytes; each one distinct."""
    number = next(_serial)
    head = (
        f"From: Sender <sender@example.org>\r\nTo: alice@example.com\r\n"
        f"Subject: {subject or f'message {number}'}\r\nMessage-ID: <{number}@test>\r\n\r\n"
    ).encode()
    body = f"This is message {number}.\r\n".encode()
    message = head + body
    if len(message) < size:
        line = b"x" * 76 + b"\r\n"
        message += line * ((size - len(message)) // len(line) + 1)
    return message


# Every kind of nesting at once: a group address, an encoded word, multipart/alternative inside
# multipart/mixed, message/rfc822 holding a multipart/digest, base64 HTML, preamble and epilogue.
# The seed of the MIME property tests and of bench/fuzz_mime.py.
NESTED_MIME = (
    b"From: \"A\" <a@x>, G: b@y;\r\nSubject: =?utf-8?q?x?=\r\n"
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n"
    b"--b\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n--c\r\n\r\nt\r\n--c--\r\n"
    b"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: i\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n"
    b"--d\r\n\r\nSubject: dd\r\n\r\nx\r\n--d--\r\n"
    b"--b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+aGk8L2I+\r\n"
    b"--b--\r\nepi\r\n"
)
