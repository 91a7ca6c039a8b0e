"""One IMAP connection's state machine: which command is legal when, and what follows it.

The session never touches a socket. The asyncio server (imap/server.py)
feeds it commands from the parser and gives it an `Output` to write to;
handlers (imap/handlers/) do the work of each command through the store.

Per command (`run`): check the state table, run the handler, report what
changed elsewhere in the selected folder where IMAP allows it, then send
the tagged result. A handler reports failure by raising `No` or `Bad`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from postfach.auth.authenticator import Authenticator
from postfach.connection_limits import ConnectionLimits
from postfach.imap import commands as c
from postfach.imap import responses as r
from postfach.imap.selected import Exists, Expunged, FlagsUpdate, SelectedFolder
from postfach.model import Account, Folder, FolderIndex
from postfach.store.base import Store, StoreError
from postfach.store.changes import Change, FolderDeleted, FolderRenamed
from postfach.store.events import Subscription

log = logging.getLogger(__name__)


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


_ANY_STATE = frozenset({c.Capability, c.Noop, c.Logout, c.Id})
_AUTHENTICATED = frozenset(
    {
        c.Select, c.Examine, c.Create, c.Delete, c.Rename, c.Subscribe, c.Unsubscribe, c.List, c.Lsub,
        c.Namespace, c.Status, c.Append, c.Idle, c.GetQuota, c.GetQuotaRoot, c.SetQuota, c.Compress,
    }
)
_SELECTED_ONLY = frozenset(
    {c.Check, c.Close, c.Unselect, c.Expunge, c.Search, c.Fetch, c.Store, c.Copy, c.Move, c.Sort, c.Thread}
)

# RFC 9051 §3: which command is legal in which state.
LEGAL: dict[State, frozenset[type]] = {
    State.NOT_AUTHENTICATED: _ANY_STATE | {c.StartTLS, c.Authenticate, c.Login},
    # RFC 5161 §3.1: ENABLE only before a mailbox is selected.
    State.AUTHENTICATED: _ANY_STATE | _AUTHENTICATED | {c.Enable},
    State.SELECTED: _ANY_STATE | _AUTHENTICATED | _SELECTED_ONLY,
    State.LOGOUT: frozenset(),
}

# RFC 9051 §7.5.1: no EXPUNGE while answering these by sequence number.
_NUMBERED = (c.Fetch, c.Store, c.Search, c.Sort, c.Thread)


# NOOP waits at most this long for changes committed in another worker to reach this one
# (they take well under a millisecond).
CATCH_UP_SECONDS = 0.5
APPEND_TOO_BIG = object()


class No(Exception):
    """The command failed: `tag NO [code] text`."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


class Bad(Exception):
    """The command is not acceptable as sent: `tag BAD [code] text`."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


@dataclass(frozen=True, slots=True)
class Done:
    """A handler's success: `tag OK [code] text`."""

    text: str = "done"
    code: str | None = None


class Output(Protocol):
    def write(self, data: bytes) -> None: ...
    def flush(self) -> None:
        """Hand what was written on now (an output may collect writes: imap/server.py)."""
    async def drain(self) -> None:
        """Flush, then wait until the transport has room again."""


@dataclass(frozen=True)
class ImapSettings:
    hostname: str
    append_limit: int = 50 * 1024 * 1024
    allow_plaintext_on_loopback: bool = False


@dataclass
class ImapServices:
    """What every session of a server shares; built by the composition root."""

    store: Store
    authenticator: Authenticator
    settings: ImapSettings
    limits: ConnectionLimits = field(default_factory=lambda: ConnectionLimits("imap", 50, 20))


Handler = Callable[["ImapSession", c.Command], Awaitable[Done]]
HANDLERS: dict[type, Handler] = {}


def handles(*command_types: type) -> Callable[[Handler], Handler]:
    """Register a handler for command types (each handler module does this on import)."""

    def register(handler: Handler) -> Handler:
        for command_type in command_types:
            HANDLERS[command_type] = handler
        return handler

    return register


@dataclass(eq=False)
class ImapSession:
    services: ImapServices
    output: Output
    connection_id: int
    peer: str
    tls: bool
    loopback: bool = False
    state: State = State.NOT_AUTHENTICATED
    account: Account | None = None
    folder: Folder | None = None
    selected: SelectedFolder | None = None
    utf8: bool = False
    enabled: set[str] = field(default_factory=set)
    # RFC 5182 SEARCHRES: the UIDs saved by SEARCH RETURN (SAVE), valid for that view only
    # (a new SELECT, or none, resets it; see imap/targets.py).
    saved_search: tuple[SelectedFolder, tuple[int, ...]] | None = None
    # Requests to the server around it, read after a command ran:
    starttls_requested: bool = False
    compress_requested: bool = False
    compressed: bool = False
    selected_deleted: bool = False
    sasl_pending: str | None = None  # the tag of an AUTHENTICATE waiting for the client's response
    idling: str | None = None  # the tag of an IDLE in progress
    # APPEND's message, spooled by the server: a file positioned at 0, None for an empty
    # message, or APPEND_TOO_BIG when it exceeded APPENDLIMIT (its bytes were dropped).
    append_data: object = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    # Set whenever the selected folder's view hears of a change (catch_up waits for it).
    _heard: asyncio.Event = field(default_factory=asyncio.Event)
    _subscription: Subscription | None = None
    # While SELECT reads the folder's index: the changes heard meanwhile (see `open_view`).
    _heard_while_loading: list[Change] | None = None

    @property
    def store(self) -> Store:
        return self.services.store

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled or "QRESYNC" in self.enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    @property
    def rev2(self) -> bool:
        """IMAP4rev2 was enabled: no \\Recent, no RECENT, no [UNSEEN] (RFC 9051 Appendix E)."""
        return "IMAP4rev2" in self.enabled

    @property
    def claims_recent(self) -> bool:
        """Whether new messages in the selected folder become \\Recent for this session."""
        return self.selected is not None and not self.selected.read_only and not self.rev2

    @property
    def plaintext_login_allowed(self) -> bool:
        return self.tls or (self.loopback and self.services.settings.allow_plaintext_on_loopback)

    def send(self, data: bytes) -> None:
        self.output.write(data)

    def untagged(self, *values: object) -> None:
        self.send(r.untagged(*values, utf8=self.utf8))

    def capabilities(self) -> list[str]:
        from postfach.imap.capabilities import capabilities

        return capabilities(self)

    def greeting(self) -> bytes:
        names = " ".join(self.capabilities())
        return r.untagged_status("OK", f"{self.services.settings.hostname} Postfach ready", f"CAPABILITY {names}")

    # ---------------------------------------------------------------- running commands

    async def run(self, command: c.Command) -> None:
        """Run one command to its tagged response (an AUTHENTICATE or IDLE may stay open)."""
        tag = command.tag
        if type(command) not in LEGAL[self.state]:
            self.send(r.tagged(tag, "BAD", f"{_name(command)} is not allowed in the {self.state.value} state"))
            return
        handler = HANDLERS.get(type(command))
        if handler is None:
            self.send(r.tagged(tag, "BAD", f"{_name(command)} is not supported"))
            return
        try:
            done = await handler(self, command)
        except No as refusal:
            await self.report_changes(expunges_allowed=not isinstance(command, _NUMBERED) or _is_uid(command))
            self.send(r.tagged(tag, "NO", refusal.text, refusal.code))
            return
        except Bad as refusal:
            self.send(r.tagged(tag, "BAD", refusal.text, refusal.code))
            return
        except StoreError as error:
            log.info("[%d] %s refused by the store: %s", self.connection_id, _name(command), error)
            self.send(r.tagged(tag, "NO", str(error)))
            return
        if self.sasl_pending or self.idling:
            return
        await self.report_changes(expunges_allowed=not isinstance(command, _NUMBERED) or _is_uid(command))
        self.send(r.tagged(tag, "OK", done.text, done.code))

    # ---------------------------------------------------------------- the selected folder

    def watch_account(self) -> None:
        """After login: hear of every change to this account's folders."""
        assert self.account is not None
        self._subscription = self.store.events.subscribe(self.account.id, self._on_change)

    async def open_view(self, folder: Folder, *, read_only: bool) -> tuple[FolderIndex, SelectedFolder]:
        """The folder's index and a view of it that misses no change committed after the index's
        snapshot: the event of such a change can come while the read's answer is on its way
        back to the event loop, before the view exists to note it."""
        self._heard_while_loading = heard = []
        try:
            index = await self.store.load_index(folder.id)
        finally:
            self._heard_while_loading = None
        view = SelectedFolder.load(index, read_only=read_only)
        for change in heard:
            view.note(change)  # what the snapshot holds already is left alone (SelectedFolder.note)
        return index, view

    def _on_change(self, change: Change) -> None:
        if self._heard_while_loading is not None:
            self._heard_while_loading.append(change)
        if self.folder is not None and getattr(change, "folder_id", None) == self.folder.id:
            if isinstance(change, FolderDeleted):
                self.selected_deleted = True
                self.changed.set()
                return
            if isinstance(change, FolderRenamed):
                self.folder = dataclasses.replace(self.folder, name=change.new_name)
        if self.selected is not None:
            self.selected.note(change)
            self._heard.set()
            if self.selected.has_pending:
                self.changed.set()

    async def catch_up(self) -> None:
        """Wait until the selected folder's view has heard of every change the store has.

        A change made in another worker process comes through the supervisor a moment after
        its COMMIT: a client that expunges in one connection and sends NOOP in another at once
        would otherwise be told nothing. A change whose event never comes (none should) costs
        one wait of CATCH_UP_SECONDS, not one per NOOP.
        """
        view = self.selected
        if view is None:
            return
        folder = await self.store.get_folder_by_id(view.folder_id)
        if folder is None or folder.highestmodseq <= view.awaited_modseq:
            return
        try:
            async with asyncio.timeout(CATCH_UP_SECONDS):
                # Checked and cleared with no await between: an event cannot slip past.
                while self.selected is view and view.highestmodseq < folder.highestmodseq:
                    self._heard.clear()
                    await self._heard.wait()
        except TimeoutError:
            pass
        view.awaited_modseq = folder.highestmodseq

    async def report_changes(self, *, expunges_allowed: bool) -> None:
        """Send what changed elsewhere in the selected folder, as far as IMAP allows now."""
        self.changed.clear()
        if self.selected_deleted:
            # Its messages are gone and its name may be reused: nothing safe is left to show.
            self.send(r.untagged_status("BYE", "the selected mailbox was deleted in another session"))
            self.close()
            return
        view = self.selected
        if view is None or not view.has_pending:
            return
        wanted = view.wanted_uids
        # New messages: the first session to claim them sees them as \Recent (RFC 3501 §2.3.2).
        claim = bool(wanted) and self.claims_recent and any(view.seq_of(uid) is None for uid in wanted)
        if wanted:
            view.refresh(await self.store.get_messages(view.folder_id, wanted))
        for update in view.take_updates(expunges_allowed=expunges_allowed):
            if isinstance(update, Expunged):
                if self.qresync:
                    self.send(b"* VANISHED %d\r\n" % update.uid)
                else:
                    self.send(b"* %d EXPUNGE\r\n" % update.seq)
            elif isinstance(update, Exists):
                self.send(b"* %d EXISTS\r\n" % update.count)
                if not self.rev2:
                    if claim:
                        # The claim is a write that waits for its COMMIT: the EXISTS goes out
                        # first, so an IDLE-ing client hears of new mail without that wait
                        # (issue 7 point 3). RECENT may come in a response of its own.
                        await self.output.drain()
                        view.recent.update(await self.store.claim_recent(view.folder_id))
                    self.send(b"* %d RECENT\r\n" % len(view.recent))
            elif isinstance(update, FlagsUpdate):
                items: list[tuple[str, object]] = [("UID", update.uid), ("FLAGS", r.flag_list(update.flags.names()))]
                if self.condstore:
                    items.append(("MODSEQ", [update.modseq]))
                self.send(r.fetch(update.seq, items, utf8=self.utf8))

    def deselect(self) -> None:
        self.selected = None
        self.folder = None
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED

    def close(self) -> None:
        """The connection ends: stop hearing of changes, and free its place for the account."""
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
            assert self.account is not None
            self.services.limits.log_out(self.account.id)
        self.state = State.LOGOUT


def _name(command: c.Command) -> str:
    return type(command).__name__.upper()


def _is_uid(command: c.Command) -> bool:
    return bool(getattr(command, "uid", False))
