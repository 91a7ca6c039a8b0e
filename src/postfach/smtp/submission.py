"""Submission (listeners `submission`, STARTTLS first, and `submissions`, implicit TLS).

Policy (RFC 6409, RFC 8314): AUTH PLAIN or LOGIN through the one
Authenticator, only over TLS (before STARTTLS it is not advertised and every
command but EHLO/NOOP/STARTTLS/QUIT gets 530 5.7.0, RFC 3207 §4); no mail
without AUTH (530 5.7.0); the envelope sender and every From: address must be
the account's own address or one of its aliases (553 5.7.1), so customers
cannot send as one another.

Recipients in our domains go through the delivery pipeline like MX mail;
remote ones go to the outbound queue, and 250 after DATA comes only once the
queue entry is committed.
"""

from __future__ import annotations

import binascii
import logging
from base64 import b64decode
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.smtp import MISSING, AuthResult, Session

from postfach.auth.authenticator import AuthFailure, Authenticator
from postfach.delivery.pipeline import DeliveryPipeline
from postfach.delivery.recipients import NotLocal
from postfach.model import Account
from postfach.smtp import replies
from postfach.smtp.handler import DeliveringHandler, peer_address
from postfach.smtp.replies import Reply

log = logging.getLogger(__name__)


def from_addresses(data: bytes) -> list[str] | None:
    """The addresses in the From: field(s) of a message; None when it has no usable one."""
    end = data.find(b"\r\n\r\n")
    header = data if end < 0 else data[: end + 4]
    parsed = BytesHeaderParser(policy=default_policy).parsebytes(header)
    addresses: list[str] = []
    try:
        for field in parsed.get_all("From") or ():
            addresses.extend(address.addr_spec for address in field.addresses)
    except (IndexError, ValueError, TypeError):  # email's parser on a broken field
        return None
    return addresses or None


class SubmissionHandler(DeliveringHandler):
    offers_auth = True

    def __init__(self, pipeline: DeliveryPipeline, authenticator: Authenticator, *, max_recipients: int) -> None:
        super().__init__(pipeline, max_recipients=max_recipients)
        self._authenticator = authenticator

    # --- AUTH (aiosmtpd calls handler methods named auth_<MECHANISM>) -------------------

    async def auth_PLAIN(self, server: Any, args: list[str]) -> AuthResult:
        """RFC 4616: [authzid] NUL authcid NUL passwd."""
        response = await self._initial_response(server, args, b"")
        if response is None:
            return AuthResult(success=False, handled=True)
        parts = response.split(b"\x00")
        if len(parts) != 3:
            return AuthResult(success=False, handled=False, message=str(replies.AUTH_MALFORMED))
        authzid, login, password = parts
        if authzid and authzid != login:  # acting for another user is not offered
            return AuthResult(success=False, handled=False, message=str(replies.AUTH_FAILED))
        return await self._login(server, login, password)

    async def auth_LOGIN(self, server: Any, args: list[str]) -> AuthResult:
        login = await self._initial_response(server, args, b"Username:")
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await server.challenge_auth(b"Password:")
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        return await self._login(server, login, password)

    async def _initial_response(self, server: Any, args: list[str], challenge: bytes) -> bytes | None:
        """The client's first response: given with the AUTH command, or asked for (RFC 4954 §4).
        None when the client aborted or sent bad base64 (aiosmtpd has replied)."""
        if len(args) == 1:
            response = await server.challenge_auth(challenge)
            return None if response is MISSING else response
        if args[1] == "=":  # RFC 4954 §4: an empty initial response
            return b""
        try:
            return b64decode(args[1], validate=True)
        except (binascii.Error, ValueError):
            await server.push(str(replies.AUTH_MALFORMED))
            return None

    async def _login(self, server: Any, login: bytes, password: bytes) -> AuthResult:
        try:
            outcome = await self._authenticator.authenticate(
                login.decode(), password.decode(), source=peer_address(server.session), protocol="smtp"
            )
        except UnicodeDecodeError:
            outcome = None
        if not isinstance(outcome, Account):
            reason = outcome.reason.value if isinstance(outcome, AuthFailure) else "not UTF-8"
            log.info("[%d] AUTH failed for %r: %s", server.connection_id, login[:100], reason)
            return AuthResult(success=False, handled=False, message=str(replies.AUTH_FAILED))
        log.info("[%d] AUTH as %s", server.connection_id, outcome.address)
        return AuthResult(success=True, auth_data=outcome, message=str(replies.AUTH_OK))

    # --- policy -------------------------------------------------------------------------

    async def check_sender(self, server: Any, session: Session, address: str) -> Reply:
        account = session.auth_data
        if not isinstance(account, Account):  # aiosmtpd's auth_required answers first
            return replies.AUTH_REQUIRED
        if address == "<>" or not await self.pipeline.resolver.may_send_as(account, address):
            return replies.SENDER_NOT_YOURS
        return replies.SENDER_OK

    def non_local(self, verdict: NotLocal) -> Reply:
        return replies.RECIPIENT_OK

    async def check_message(self, server: Any, session: Session, header: bytes) -> Reply | None:
        account = session.auth_data
        assert isinstance(account, Account)
        addresses = from_addresses(header)
        if not addresses:
            return replies.FROM_NOT_YOURS
        for address in addresses:
            if not await self.pipeline.resolver.may_send_as(account, address):
                return replies.FROM_NOT_YOURS
        return None
