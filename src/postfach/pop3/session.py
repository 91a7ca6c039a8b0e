"""The POP3 state machine (RFC 1939 §3): typed commands in, replies out; never a socket.

It asks the store and the authenticator through a few async calls; the
glue in server.py moves the bytes. Which command is legal in which state is
`LEGAL`, one table to hold against RFC 1939 §§4–6, RFC 2449 §5 (CAPA: any
state), RFC 2595 §4 (STLS: AUTHORIZATION only) and RFC 5034 §4 (AUTH).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from postfach.auth.authenticator import Authenticator, AuthFailure
from postfach.auth.sasl import PLAIN, SaslError, decode_plain
from postfach.model import INBOX, Account, BlobRef
from postfach.pop3 import commands as c
from postfach.pop3.maildrop import Maildrop, MaildropLocks
from postfach.pop3.responses import AUTH, IN_USE, SYS_TEMP, Reply, err, multiline, ok
from postfach.pop3.transfer import MessageEncoder
from postfach.store.base import Store
from postfach.store.changes import Change, MessagesExpunged
from postfach.store.events import Subscription

log = logging.getLogger(__name__)

# RETR reads a message in chunks of this size: a 50 MB message is never in memory whole.
CHUNK_SIZE = 1 << 20
# Commands a connection may send before it logs in (CAPA, STLS, USER, PASS: a real client needs
# five or six); more is a script guessing passwords or probing, which must reconnect to go on.
MAX_COMMANDS_BEFORE_LOGIN = 20


class State(enum.Enum):
    AUTHORIZATION = "AUTHORIZATION"
    SASL = "AUTHORIZATION, in AUTH"  # AUTH sent "+ "; the next line is the client's response
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"  # after QUIT: deletions are committed, then the connection closes


_A, _S, _T = State.AUTHORIZATION, State.SASL, State.TRANSACTION
LEGAL: dict[type, frozenset] = {
    c.User: frozenset({_A}),
    c.Pass: frozenset({_A}),
    c.Auth: frozenset({_A}),
    c.Stls: frozenset({_A}),
    c.SaslResponse: frozenset({_S}),
    c.Capa: frozenset({_A, _T}),
    c.Quit: frozenset({_A, _T}),
    c.Stat: frozenset({_T}),
    c.List: frozenset({_T}),
    c.Uidl: frozenset({_T}),
    c.Retr: frozenset({_T}),
    c.Top: frozenset({_T}),
    c.Dele: frozenset({_T}),
    c.Noop: frozenset({_T}),
    c.Rset: frozenset({_T}),
}

# RFC 2449 §6: what CAPA always lists. EXPIRE NEVER and LOGIN-DELAY 0 are honest:
# mail stays until the user deletes it, and logins are never delayed.
BASE_CAPABILITIES = (
    "TOP",
    "UIDL",
    "RESP-CODES",
    "AUTH-RESP-CODE",
    "PIPELINING",
    "EXPIRE NEVER",
    "LOGIN-DELAY 0",
    "IMPLEMENTATION Postfach",
)

PLAINTEXT_REFUSED = "plaintext login is not allowed on an unencrypted connection; use STLS first"


class Session:
    def __init__(
        self,
        store: Store,
        authenticator: Authenticator,
        locks: MaildropLocks,
        *,
        tls_active: bool,
        stls_offered: bool,
        plaintext_allowed: bool = False,
        connection_id: int = 0,
        chunk_size: int = CHUNK_SIZE,
        source: str = "",
        max_commands_before_login: int = MAX_COMMANDS_BEFORE_LOGIN,
    ) -> None:
        self._store = store
        self._authenticator = authenticator
        self._locks = locks
        self._tls_active = tls_active
        self._stls_offered = stls_offered and not tls_active
        self._plaintext_allowed = plaintext_allowed
        self._id = connection_id
        self._source = source  # the peer's address, for the quarantine and the audit
        self._chunk_size = chunk_size
        self._commands_left_before_login = max_commands_before_login
        self.state = State.AUTHORIZATION
        self._user: str | None = None  # given by USER, waiting for PASS
        self._account: Account | None = None  # set while this session holds the maildrop lock
        self._maildrop: Maildrop | None = None
        self._inbox_id: int | None = None
        self._subscription: Subscription | None = None
        self._expunged_meanwhile: list[int] = []
        self._handlers: dict[type, Callable[..., Awaitable[Reply]]] = {
            c.User: self._do_user,
            c.Pass: self._do_pass,
            c.Auth: self._do_auth,
            c.SaslResponse: self._do_sasl_response,
            c.Stls: self._do_stls,
            c.Capa: self._do_capa,
            c.Quit: self._do_quit,
            c.Stat: self._do_stat,
            c.List: self._do_list,
            c.Uidl: self._do_uidl,
            c.Retr: self._do_retr,
            c.Top: self._do_top,
            c.Dele: self._do_dele,
            c.Noop: self._do_noop,
            c.Rset: self._do_rset,
        }

    @property
    def login_allowed(self) -> bool:
        return self._tls_active or self._plaintext_allowed

    def greeting(self) -> bytes:
        # No APOP timestamp: passwords are stored as argon2 hashes, APOP needs them in clear.
        return b"+OK Postfach POP3 server ready\r\n"

    def tls_started(self) -> None:
        """STLS finished its handshake; the session starts over in AUTHORIZATION (RFC 2595 §4)."""
        self._tls_active = True
        self._stls_offered = False
        self._user = None
        self.state = State.AUTHORIZATION

    async def handle(self, command: c.ParseResult) -> Reply:
        if self.state in (State.AUTHORIZATION, State.SASL):
            if self._commands_left_before_login <= 0:
                log.info("[%d] POP3 too many commands before login from %s, closing", self._id, self._source)
                return Reply(err("too many commands before login", SYS_TEMP).data, close=True)
            self._commands_left_before_login -= 1
        if isinstance(command, c.LineTooLong):
            if self.state is State.SASL:
                self.state = State.AUTHORIZATION  # the response was the over-long line: AUTH fails
            return err(f"line too long (at most {command.limit} octets)")
        if isinstance(command, c.Invalid):
            return err(command.reason)
        if self.state not in LEGAL[type(command)]:
            return err(self._not_now(command))
        return await self._handlers[type(command)](command)

    async def close(self) -> None:
        """The connection ended. Without QUIT nothing is deleted (RFC 1939 §6): just let go of the lock."""
        self._release()

    def _on_change(self, change: Change) -> None:
        if isinstance(change, MessagesExpunged) and change.folder_id == self._inbox_id:
            if self._maildrop is None:
                self._expunged_meanwhile.extend(change.uids)  # while the snapshot is being read
            else:
                self._maildrop.note_expunged(change.uids)

    def _release(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        if self._account is not None:
            self._locks.release(self._account.id)
            self._account = None

    def _not_now(self, command: c.Command) -> str:
        name = type(command).__name__.upper()
        if self.state is State.TRANSACTION:
            return f"{name} is not valid after login"
        if self.state is State.UPDATE:
            return "the session is ending"
        return f"{name} is only valid after login"

    # ------------------------------------------------------------------ AUTHORIZATION

    async def _do_user(self, command: c.User) -> Reply:
        if not self.login_allowed:
            return err(PLAINTEXT_REFUSED, AUTH)
        self._user = command.name
        # The same answer for every name: USER must not tell which mailboxes exist.
        return ok("send PASS")

    async def _do_pass(self, command: c.Pass) -> Reply:
        if not self.login_allowed:
            return err(PLAINTEXT_REFUSED, AUTH)
        if self._user is None:
            return err("send USER first")  # RFC 1939 §7: PASS only right after USER
        user, self._user = self._user, None
        return await self._login(user, command.password)

    async def _do_auth(self, command: c.Auth) -> Reply:
        self._user = None
        if not self.login_allowed:
            return err(PLAINTEXT_REFUSED, AUTH)
        if command.mechanism is None:
            return multiline("SASL mechanisms follow", [PLAIN])
        if command.mechanism != PLAIN:
            return err(f"unsupported SASL mechanism; use {PLAIN}")
        if command.initial_response is None:
            self.state = State.SASL
            return Reply(b"+ \r\n", continuation=True)
        # RFC 5034 §4: "=" is an empty initial response.
        return await self._auth_plain("" if command.initial_response == "=" else command.initial_response)

    async def _do_sasl_response(self, command: c.SaslResponse) -> Reply:
        self.state = State.AUTHORIZATION
        if command.text == "*":
            return err("authentication cancelled")  # RFC 5034 §4
        return await self._auth_plain(command.text)

    async def _auth_plain(self, response: str) -> Reply:
        try:
            credentials = decode_plain(response)
        except SaslError as error:
            return err(str(error))
        if credentials.authzid and credentials.authzid.lower() != credentials.authcid.lower():
            return err("logging in as another user is not allowed", AUTH)
        return await self._login(credentials.authcid, credentials.password)

    async def _login(self, user: str, password: str) -> Reply:
        try:
            result = await self._authenticator.authenticate(user, password, source=self._source, protocol="pop3")
        except Exception:
            log.exception("[%d] POP3 login could not be checked", self._id)
            return err("cannot check logins just now; try again later", SYS_TEMP)
        if isinstance(result, AuthFailure):
            # The client hears the same for every reason (quarantine too); the log says which.
            log.info("[%d] POP3 login failed for %r from %s: %s", self._id, user, self._source, result)
            return err("wrong user name or password", AUTH)
        if not await self._locks.acquire(result.id):
            return err("the maildrop is in use by another session", IN_USE)
        self._account = result  # from here on close() lets go of the lock, even if cancelled
        try:
            folder = await self._store.get_folder(result.id, INBOX)
            if folder is None:
                raise LookupError(f"{result.address} has no INBOX")
            # Before the snapshot, so that no expunge committed after it goes unheard.
            self._inbox_id = folder.id
            self._subscription = self._store.events.subscribe(result.id, self._on_change)
            uids, sizes, shas = await self._store.message_files(folder.id)
        except Exception:
            log.exception("[%d] POP3 could not open the maildrop of %s", self._id, result.address)
            self._release()
            return err("cannot open the maildrop just now; try again later", SYS_TEMP)
        self._maildrop = Maildrop(folder.id, folder.uidvalidity, uids, sizes, shas)
        self._maildrop.note_expunged(self._expunged_meanwhile)
        self._expunged_meanwhile.clear()
        self.state = State.TRANSACTION
        log.info("[%d] POP3 login: %s", self._id, result.address)
        count, octets = self._maildrop.stat()
        return ok(f"{count} messages ({octets} octets)")

    async def _do_stls(self, command: c.Stls) -> Reply:
        if self._tls_active:
            return err("TLS is already active")
        if not self._stls_offered:
            return err("STLS is not offered on this port")
        self._user = None
        return Reply(ok("begin TLS negotiation").data, start_tls=True)

    async def _do_capa(self, command: c.Capa) -> Reply:
        capabilities = list(BASE_CAPABILITIES)
        if self.login_allowed:
            capabilities += ["USER", f"SASL {PLAIN}"]
        if self._stls_offered and self.state is State.AUTHORIZATION:
            capabilities.append("STLS")
        return multiline("capability list follows", capabilities)

    async def _do_quit(self, command: c.Quit) -> Reply:
        if self.state is not State.TRANSACTION:
            return Reply(ok("bye").data, close=True)
        maildrop = self._maildrop
        assert maildrop is not None
        # RFC 1939 §6: the UPDATE state removes the messages marked deleted, then says goodbye.
        self.state = State.UPDATE
        deleted = maildrop.deleted_uids()
        try:
            if deleted:
                await self._store.expunge(maildrop.folder_id, deleted)
        except Exception:
            log.exception("[%d] POP3 could not remove %d messages", self._id, len(deleted))
            return Reply(err("the deleted messages could not be removed", SYS_TEMP).data, close=True)
        finally:
            self._release()
        return Reply(ok(f"bye ({len(deleted)} messages deleted)").data, close=True)

    # ------------------------------------------------------------------ TRANSACTION

    def _missing(self, number: int) -> str | None:
        """Why `number` names no message this session can use, or None."""
        maildrop = self._maildrop
        assert maildrop is not None
        if maildrop.is_deleted(number):
            return f"message {number} is already deleted"
        if not maildrop.exists(number):
            return f"no message {number}; the maildrop has {len(maildrop)}"
        return None

    async def _do_stat(self, command: c.Stat) -> Reply:
        assert self._maildrop is not None
        count, octets = self._maildrop.stat()
        return ok(f"{count} {octets}")

    async def _do_list(self, command: c.List) -> Reply:
        maildrop = self._maildrop
        assert maildrop is not None
        if command.number is None:
            count, octets = maildrop.stat()
            return multiline(f"{count} messages ({octets} octets)", maildrop.list_lines())
        if problem := self._missing(command.number):
            return err(problem)
        return ok(f"{command.number} {maildrop.size(command.number)}")

    async def _do_uidl(self, command: c.Uidl) -> Reply:
        maildrop = self._maildrop
        assert maildrop is not None
        if command.number is None:
            return multiline("unique-id listing follows", maildrop.uidl_lines())
        if problem := self._missing(command.number):
            return err(problem)
        return ok(f"{command.number} {maildrop.unique_id(command.number)}")

    async def _do_retr(self, command: c.Retr) -> Reply:
        return await self._send_message(command.number, None)

    async def _do_top(self, command: c.Top) -> Reply:
        return await self._send_message(command.number, command.lines)

    async def _send_message(self, number: int, body_lines: int | None) -> Reply:
        maildrop = self._maildrop
        assert maildrop is not None
        if problem := self._missing(number):
            return err(problem)
        removed = err(f"message {number} was removed by another session")
        if maildrop.is_expunged(number):
            return removed
        blob = maildrop.blob(number)
        try:
            # The first chunk before "+OK": a message that cannot be read gets -ERR, not half a reply.
            first = await self._store.read_blob_range(blob.sha256, 0, self._chunk_size)
        except FileNotFoundError:
            return removed  # expunged in another worker, and its file already collected
        except Exception:
            log.exception("[%d] POP3 could not read message %d", self._id, number)
            return err("cannot read the message just now; try again later", SYS_TEMP)
        status = f"{blob.size} octets" if body_lines is None else "top of message follows"
        if len(first) >= blob.size:  # all of it in hand (most messages): one piece, no stream
            encoder = MessageEncoder(body_lines)
            return Reply(ok(status).data + encoder.feed(first) + encoder.finish())
        return Reply(ok(status).data, body=self._stream(blob, first, body_lines))

    async def _stream(self, blob: BlobRef, first: bytes, body_lines: int | None) -> AsyncIterator[bytes]:
        encoder = MessageEncoder(body_lines)
        if out := encoder.feed(first):
            yield out
        position = len(first)
        while first and position < blob.size and not encoder.done:
            chunk = await self._store.read_blob_range(blob.sha256, position, position + self._chunk_size)
            if not chunk:
                break
            position += len(chunk)
            if out := encoder.feed(chunk):
                yield out
        yield encoder.finish()

    async def _do_dele(self, command: c.Dele) -> Reply:
        assert self._maildrop is not None
        if problem := self._missing(command.number):
            return err(problem)
        self._maildrop.delete(command.number)  # only marked: QUIT removes it (RFC 1939 §5 DELE)
        return ok(f"message {command.number} deleted")

    async def _do_noop(self, command: c.Noop) -> Reply:
        return ok()

    async def _do_rset(self, command: c.Rset) -> Reply:
        assert self._maildrop is not None
        self._maildrop.reset()
        count, octets = self._maildrop.stat()
        return ok(f"{count} messages ({octets} octets)")
