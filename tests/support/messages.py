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
