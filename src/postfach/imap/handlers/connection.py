"""Commands about the connection itself: CAPABILITY, NOOP, CHECK, LOGOUT, ID, STARTTLS,
LOGIN, AUTHENTICATE, ENABLE, NAMESPACE, COMPRESS, IDLE."""

from __future__ import annotations

import logging

from postfach import __version__
from postfach.auth.authenticator import AuthFailure
from postfach.auth.sasl import PLAIN, SaslError, parse_plain
from postfach.imap import commands as c
from postfach.imap import responses as r
from postfach.imap.session import Bad, Done, ImapSession, No, State, handles

log = logging.getLogger(__name__)

# ENABLE (RFC 5161) turns these on when CAPABILITY lists them; others are ignored, as §3.1 says.
ENABLEABLE = ("IMAP4rev2", "UTF8=ACCEPT", "CONDSTORE", "QRESYNC")


@handles(c.Capability)
async def capability(session: ImapSession, command: c.Command) -> Done:
    session.send(r.capability(session.capabilities()))
    return Done("CAPABILITY completed")


@handles(c.Noop, c.Check)
async def noop(session: ImapSession, command: c.Command) -> Done:
    # The session reports what changed in the selected folder before the tagged OK; NOOP is
    # how a client asks for that, so first every change the store has must have been heard.
    await session.catch_up()
    return Done(f"{type(command).__name__.upper()} completed")


@handles(c.Logout)
async def logout(session: ImapSession, command: c.Command) -> Done:
    session.send(r.untagged_status("BYE", "logging out"))
    session.close()
    return Done("LOGOUT completed")


@handles(c.Id)
async def id_(session: ImapSession, command: c.Id) -> Done:
    # RFC 2971 §3.3: the server's own identification; the client's goes to the log only.
    if command.params:
        log.info("[%d] client id: %s", session.connection_id, dict(command.params) if command.params else None)
    session.untagged(r.Atom("ID"), ["name", "Postfach", "version", __version__])
    return Done("ID completed")


@handles(c.StartTLS)
async def starttls(session: ImapSession, command: c.Command) -> Done:
    if session.tls:
        raise Bad("the connection is already encrypted")
    # The server upgrades after the OK and throws away whatever the client sent after
    # STARTTLS in the same packet (RFC 9051 §6.2.1; the CVE-2011-0411 class of flaws).
    session.starttls_requested = True
    return Done("begin TLS negotiation now")


async def _log_in(session: ImapSession, user: str, password: str) -> Done:
    result = await session.services.authenticator.authenticate(user, password, source=session.peer, protocol="imap")
    if isinstance(result, AuthFailure):
        # The client hears the same for every reason (quarantine too); the log says which.
        log.info("[%d] login failed for %r from %s: %s", session.connection_id, user, session.peer, result)
        raise No("authentication failed", "AUTHENTICATIONFAILED")
    if not await session.services.limits.log_in(result.id):
        log.info("[%d] %s has too many IMAP connections", session.connection_id, result.address)
        raise No("too many connections for this account; close some", "LIMIT")
    session.account = result
    session.state = State.AUTHENTICATED
    session.watch_account()
    log.info("[%d] %s logged in from %s", session.connection_id, result.address, session.peer)
    return Done("logged in", "CAPABILITY " + " ".join(session.capabilities()))


def _require_encryption(session: ImapSession) -> None:
    if not session.plaintext_login_allowed:
        raise No("log in only after STARTTLS", "PRIVACYREQUIRED")


@handles(c.Login)
async def login(session: ImapSession, command: c.Login) -> Done:
    _require_encryption(session)
    return await _log_in(session, command.username, command.password)


@handles(c.Authenticate)
async def authenticate(session: ImapSession, command: c.Authenticate) -> Done:
    _require_encryption(session)
    if command.mechanism.upper() != PLAIN:
        raise No(f"the mechanism {command.mechanism} is not supported; use PLAIN")
    if command.initial_response is None:
        # RFC 9051 §6.2.2: an empty challenge; the response arrives as a line of its own.
        session.sasl_pending = command.tag
        session.send(r.continuation(""))
        return Done()
    return await finish_plain(session, command.initial_response)


async def finish_plain(session: ImapSession, response: bytes) -> Done:
    try:
        credentials = parse_plain(response)
    except SaslError as error:
        raise Bad(str(error)) from None
    if credentials.authzid and credentials.authzid.lower() != credentials.authcid.lower():
        raise No("acting for another user is not allowed", "AUTHORIZATIONFAILED")
    return await _log_in(session, credentials.authcid, credentials.password)


async def sasl_response(session: ImapSession, response: bytes | None) -> None:
    """The client's answer to AUTHENTICATE's continuation (None: it cancelled with "*")."""
    tag = session.sasl_pending
    assert tag is not None
    session.sasl_pending = None
    if response is None:
        session.send(r.tagged(tag, "BAD", "authentication cancelled"))
        return
    try:
        done = await finish_plain(session, response)
    except No as refusal:
        session.send(r.tagged(tag, "NO", refusal.text, refusal.code))
    except Bad as refusal:
        session.send(r.tagged(tag, "BAD", refusal.text, refusal.code))
    else:
        session.send(r.tagged(tag, "OK", done.text, done.code))


@handles(c.Enable)
async def enable(session: ImapSession, command: c.Enable) -> Done:
    offered = {name.upper(): name for name in session.capabilities()}
    newly = []
    for requested in command.capabilities:
        name = offered.get(requested.upper())
        if name in ENABLEABLE and name not in session.enabled:
            session.enabled.add(name)
            newly.append(name)
    if {"IMAP4rev2", "UTF8=ACCEPT"} & set(newly):
        session.utf8 = True
    if newly:
        session.untagged(r.Atom("ENABLED"), *[r.Atom(name) for name in newly])
    else:
        session.send(b"* ENABLED\r\n")
    return Done("ENABLE completed")


@handles(c.Namespace)
async def namespace(session: ImapSession, command: c.Command) -> Done:
    # One personal namespace, no prefix, "/" between levels (see imap/names.py for INBOX/...).
    session.send(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
    return Done("NAMESPACE completed")


@handles(c.Compress)
async def compress(session: ImapSession, command: c.Compress) -> Done:
    # RFC 4978: raw DEFLATE both ways, starting right after this OK.
    if command.mechanism.upper() != "DEFLATE":
        raise No(f"the compression mechanism {command.mechanism} is not supported; use DEFLATE")
    if session.compressed:
        raise No("compression is already active", "COMPRESSIONACTIVE")
    session.compress_requested = True
    return Done("DEFLATE active")


@handles(c.Idle)
async def idle(session: ImapSession, command: c.Command) -> Done:
    # RFC 2177: the server keeps the command open and reports changes as they happen,
    # until the client sends DONE (imap/server.py runs that part).
    session.idling = command.tag
    session.send(r.continuation("idling"))
    await session.report_changes(expunges_allowed=True)
    return Done()


async def end_idle(session: ImapSession) -> None:
    tag = session.idling
    assert tag is not None
    session.idling = None
    await session.report_changes(expunges_allowed=True)
    session.send(r.tagged(tag, "OK", "IDLE terminated"))
