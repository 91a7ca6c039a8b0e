"""Sending one message to one remote host: smtplib in a worker thread, per-recipient results.

Opportunistic STARTTLS (RFC 3207, RFC 7435): used when offered, without
certificate checks (an MX's name is not authenticated by DNS anyway); a host
whose TLS handshake fails is tried again in plain text, as other MTAs do.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


class ConnectionFailed(Exception):
    """No SMTP conversation with this host (refused, timed out, greeting not 2xx): try the next."""


def _text(message: bytes | str) -> str:
    return (message.decode("utf-8", "replace") if isinstance(message, bytes) else message).replace("\n", " ")


def _opportunistic_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def send(address: str, port: int, helo: str, sender: str, recipients: list[str], message: bytes,
         *, timeout: float = 60.0, tls: bool = True) -> dict[str, Reply]:
    """Each recipient's final reply: RCPT's when it refused, else DATA's. Blocking."""
    try:
        # Connecting in the constructor also names the host for STARTTLS.
        client = smtplib.SMTP(address, port, local_hostname=helo, timeout=timeout)
    except smtplib.SMTPConnectError as error:  # a greeting other than 220
        raise ConnectionFailed(f"{address}:{port} greeted with {error.smtp_code} {_text(error.smtp_error)}") from None
    except (OSError, smtplib.SMTPException) as error:
        raise ConnectionFailed(f"cannot connect to {address}:{port}: {error}") from None
    try:
        try:
            return _transaction(client, helo, sender, recipients, message, tls)
        except ssl.SSLError:
            if not tls:
                raise
            client.close()
            return send(address, port, helo, sender, recipients, message, timeout=timeout, tls=False)
    except smtplib.SMTPServerDisconnected as error:
        raise ConnectionFailed(f"{address}:{port} closed the connection: {error}") from None
    except (OSError, socket.timeout) as error:
        raise ConnectionFailed(f"{address}:{port}: {error}") from None
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


def _transaction(client: smtplib.SMTP, helo: str, sender: str, recipients: list[str], message: bytes,
                 tls: bool) -> dict[str, Reply]:
    code, text = client.ehlo(helo)
    if code != 250:
        code, text = client.helo(helo)
        if code != 250:
            return {r: Reply(code, _text(text)) for r in recipients}
    if tls and client.has_extn("starttls"):
        try:
            client.starttls(context=_opportunistic_context())
        except smtplib.SMTPResponseException as error:  # 454: TLS not available now
            raise ssl.SSLError(f"STARTTLS refused: {error.smtp_code}") from None
        client.ehlo(helo)
    options = []
    if not message.isascii() and client.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    if not (sender.isascii() and all(r.isascii() for r in recipients)) and client.has_extn("smtputf8"):
        options.append("SMTPUTF8")
    if client.has_extn("size"):
        options.append(f"SIZE={len(message)}")
    code, text = client.mail(sender, options)
    if code != 250:
        return {r: Reply(code, _text(text)) for r in recipients}
    results: dict[str, Reply] = {}
    accepted = []
    for recipient in recipients:
        code, text = client.rcpt(recipient)
        if code in (250, 251):
            accepted.append(recipient)
        else:
            results[recipient] = Reply(code, _text(text))
    if not accepted:
        client.rset()
        return results
    try:
        code, text = client.data(message)
    except smtplib.SMTPDataError as error:  # DATA itself refused (no 354)
        code, text = error.smtp_code, error.smtp_error
    for recipient in accepted:
        results[recipient] = Reply(code, _text(text))
    return results
