"""pop3/session.py and pop3/transfer.py: the state machine and the wire form of messages, no sockets."""

import base64
import itertools

import pytest
from argon2 import PasswordHasher

from postfach.auth.authenticator import Authenticator
from postfach.auth.passwords import Passwords
from postfach.pop3 import commands as c
from postfach.pop3.maildrop import MaildropLocks
from postfach.pop3.session import LEGAL, Session, State
from postfach.pop3.transfer import MessageEncoder, encode_message
from postfach.provisioning import Provisioning
from postfach.store.sqlite import SqliteStore

ADDRESS = "alice@example.com"
PASSWORD = "correct horse battery"

# --- the wire form of a message: CRLF, dot-stuffing, TOP -------------------------------

TRICKY = [
    # (stored bytes, what RETR sends after "+OK ...\r\n")
    (b"", b".\r\n"),
    (b"A: b\r\n\r\nbody\r\n", b"A: b\r\n\r\nbody\r\n.\r\n"),
    (b".starts with a dot\r\n", b"..starts with a dot\r\n.\r\n"),
    (b"A: b\r\n\r\n.\r\n..\r\n.x\r\nx.\r\n", b"A: b\r\n\r\n..\r\n...\r\n..x\r\nx.\r\n.\r\n"),
    (b"A: b\r\n\r\nno final newline", b"A: b\r\n\r\nno final newline\r\n.\r\n"),
    (b"A: b\r\n\r\nends in a dot line\r\n.", b"A: b\r\n\r\nends in a dot line\r\n..\r\n.\r\n"),
    (b"A: b\n\nbare\nLF\n.dot\n", b"A: b\r\n\r\nbare\r\nLF\r\n..dot\r\n.\r\n"),
    (b"A: b\r\rbare\rCR\r.dot\r", b"A: b\r\n\r\nbare\r\nCR\r\n..dot\r\n.\r\n"),
    (b"mixed\r\nlf\ncr\rcrlf\r\n", b"mixed\r\nlf\r\ncr\r\ncrlf\r\n.\r\n"),
    (b"\n\r", b"\r\n\r\n.\r\n"),  # LF then CR: two line ends, not one
    (b"\r\n", b"\r\n.\r\n"),
    (b".", b"..\r\n.\r\n"),
]


@pytest.mark.parametrize(("stored", "sent"), TRICKY)
def test_retr_wire_form(stored, sent):
    assert encode_message(stored) == sent


@pytest.mark.parametrize(("stored", "sent"), TRICKY)
def test_wire_form_does_not_depend_on_chunk_boundaries(stored, sent):
    for size in (1, 2, 3, 5):
        encoder = MessageEncoder()
        out = b"".join(encoder.feed(stored[i : i + size]) for i in range(0, len(stored), size))
        assert out + encoder.finish() == sent, size


def test_crlf_message_goes_out_byte_for_byte():
    message = b"Subject: x\r\n\r\n" + b"line of text\r\n" * 1000
    assert encode_message(message) == message + b".\r\n"


HEADER = b"From: a@example.org\r\nSubject: top\r\n\r\n"
BODY = b"one\r\n.two\r\nthree\r\nfour\r\n"


@pytest.mark.parametrize(
    ("lines", "sent"),
    [
        (0, HEADER + b".\r\n"),
        (1, HEADER + b"one\r\n.\r\n"),
        (2, HEADER + b"one\r\n..two\r\n.\r\n"),
        (4, HEADER + b"one\r\n..two\r\nthree\r\nfour\r\n.\r\n"),
        (5, HEADER + b"one\r\n..two\r\nthree\r\nfour\r\n.\r\n"),  # beyond the body: all of it
        (10**9, HEADER + b"one\r\n..two\r\nthree\r\nfour\r\n.\r\n"),
    ],
)
def test_top(lines, sent):
    assert encode_message(HEADER + BODY, lines) == sent
    for size in (1, 2, 7):
        encoder = MessageEncoder(lines)
        data = HEADER + BODY
        out = b"".join(encoder.feed(data[i : i + size]) for i in range(0, len(data), size))
        assert out + encoder.finish() == sent, size


def test_top_on_tricky_messages():
    assert encode_message(b"", 0) == b".\r\n"
    assert encode_message(b"Subject: only a header\r\n", 3) == b"Subject: only a header\r\n.\r\n"
    assert encode_message(b"Subject: no newline", 0) == b"Subject: no newline\r\n.\r\n"
    assert encode_message(b"\r\nbody right away\r\nsecond\r\n", 1) == b"\r\nbody right away\r\n.\r\n"
    assert encode_message(b"A: b\n\n.x\ny\n", 1) == b"A: b\r\n\r\n..x\r\n.\r\n"
    assert encode_message(b"A: b\r\rx\ry\r", 1) == b"A: b\r\n\r\nx\r\n.\r\n"
    assert encode_message(b"A: b\r\n\r\nlast line unterminated", 5) == b"A: b\r\n\r\nlast line unterminated\r\n.\r\n"


# --- the session ------------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path):
    opened = await SqliteStore.open(tmp_path / "db.sqlite3", tmp_path / "blobs")
    yield opened
    await opened.close()


@pytest.fixture
def passwords():
    return Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
async def inbox(store, passwords):
    provisioning = Provisioning(store, passwords)
    await provisioning.add_domain("example.com")
    account = await provisioning.add_mailbox(ADDRESS, PASSWORD)
    return await store.get_folder(account.id, "INBOX")


@pytest.fixture
def locks():
    return MaildropLocks()


@pytest.fixture
def make_session(store, passwords, locks, inbox):
    authenticator = Authenticator(store, passwords)

    def make(tls_active=True, stls_offered=False, plaintext_allowed=False, chunk_size=1 << 20, on=store):
        return Session(on, authenticator, locks, tls_active=tls_active, stls_offered=stls_offered,
                       plaintext_allowed=plaintext_allowed, chunk_size=chunk_size)

    return make


async def text(session, command) -> bytes:
    reply = await session.handle(command)
    if reply.body is None:
        return reply.data
    return reply.data + b"".join([chunk async for chunk in reply.body])


async def logged_in(make_session, **options):
    session = make_session(**options)
    assert (await text(session, c.User(ADDRESS))).startswith(b"+OK")
    assert (await text(session, c.Pass(PASSWORD))).startswith(b"+OK")
    assert session.state is State.TRANSACTION
    return session


def plain(authzid, authcid, password) -> str:
    return base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode()).decode()


SAMPLES = [
    c.User(ADDRESS), c.Pass("x"), c.Auth(None), c.Stls(), c.SaslResponse("*"), c.Capa(), c.Quit(), c.Stat(),
    c.List(None), c.Uidl(None), c.Retr(1), c.Top(1, 0), c.Dele(1), c.Noop(), c.Rset(),
]


def test_the_table_covers_every_command():
    assert {type(command) for command in SAMPLES} == set(LEGAL)
    assert all(LEGAL[kind] <= {State.AUTHORIZATION, State.SASL, State.TRANSACTION} for kind in LEGAL)


@pytest.mark.parametrize("command", SAMPLES, ids=lambda command: type(command).__name__)
async def test_state_table_before_login(make_session, command):
    session = make_session(tls_active=False, stls_offered=True)
    answer = await text(session, command)
    name = type(command).__name__.upper()
    if State.AUTHORIZATION in LEGAL[type(command)]:
        assert b"only valid after login" not in answer
    else:
        assert answer == f"-ERR {name} is only valid after login\r\n".encode()
        assert session.state is State.AUTHORIZATION


@pytest.mark.parametrize("command", SAMPLES, ids=lambda command: type(command).__name__)
async def test_state_table_after_login(make_session, command):
    session = await logged_in(make_session)
    answer = await text(session, command)
    name = type(command).__name__.upper()
    if State.TRANSACTION in LEGAL[type(command)]:
        assert b"not valid after login" not in answer, answer
    else:
        assert answer == f"-ERR {name} is not valid after login\r\n".encode()
        assert session.state is State.TRANSACTION


@pytest.mark.parametrize("command", [command for command in SAMPLES if not isinstance(command, c.SaslResponse)],
                         ids=lambda command: type(command).__name__)
async def test_in_an_auth_exchange_only_the_response_is_legal(make_session, command):
    session = make_session()
    reply = await session.handle(c.Auth("PLAIN"))
    assert reply.data == b"+ \r\n" and reply.continuation and session.state is State.SASL
    # (the parser turns the next line into a SaslResponse; anything else here is a glue bug)
    assert (await text(session, command)).startswith(b"-ERR")
    assert session.state is State.SASL


async def test_invalid_and_too_long_lines_get_err_in_every_state(make_session):
    session = make_session()
    assert await text(session, c.Invalid("unknown command")) == b"-ERR unknown command\r\n"
    assert await text(session, c.LineTooLong(255)) == b"-ERR line too long (at most 255 octets)\r\n"
    session = await logged_in(make_session)
    assert await text(session, c.Invalid("unknown command")) == b"-ERR unknown command\r\n"
    assert session.state is State.TRANSACTION


async def test_user_pass_login(make_session, store, inbox):
    await store.append(inbox.id, b"Subject: 1\r\n\r\nx\r\n")
    session = make_session()
    assert await text(session, c.User(ADDRESS)) == b"+OK send PASS\r\n"
    assert await text(session, c.Pass(PASSWORD)) == b"+OK 1 messages (17 octets)\r\n"


async def test_pass_needs_user_right_before(make_session):
    session = make_session()
    assert await text(session, c.Pass(PASSWORD)) == b"-ERR send USER first\r\n"
    await text(session, c.User(ADDRESS))
    assert (await text(session, c.Pass("wrong"))).startswith(b"-ERR [AUTH]")
    assert await text(session, c.Pass(PASSWORD)) == b"-ERR send USER first\r\n"


async def test_wrong_password_and_unknown_user_look_the_same(make_session):
    session = make_session()
    await text(session, c.User(ADDRESS))
    wrong_password = await text(session, c.Pass("wrong password"))
    await text(session, c.User("nobody@example.com"))
    unknown_user = await text(session, c.Pass(PASSWORD))
    assert wrong_password == unknown_user == b"-ERR [AUTH] wrong user name or password\r\n"
    assert session.state is State.AUTHORIZATION


async def test_plaintext_login_refused_without_tls(make_session):
    session = make_session(tls_active=False, stls_offered=True)
    refusal = b"-ERR [AUTH] plaintext login is not allowed on an unencrypted connection; use STLS first\r\n"
    assert await text(session, c.User(ADDRESS)) == refusal
    assert await text(session, c.Pass(PASSWORD)) == refusal
    assert await text(session, c.Auth("PLAIN", plain("", ADDRESS, PASSWORD))) == refusal
    assert await text(session, c.Auth("PLAIN")) == refusal
    assert session.state is State.AUTHORIZATION


async def test_plaintext_login_where_allowed(make_session):
    await logged_in(make_session, tls_active=False, stls_offered=True, plaintext_allowed=True)


async def test_stls_then_login(make_session):
    session = make_session(tls_active=False, stls_offered=True)
    await text(session, c.User(ADDRESS))
    reply = await session.handle(c.Stls())
    assert reply.data == b"+OK begin TLS negotiation\r\n" and reply.start_tls
    session.tls_started()
    # RFC 2595 §4: what came before TLS does not count; USER must be given again.
    assert await text(session, c.Pass(PASSWORD)) == b"-ERR send USER first\r\n"
    assert await text(session, c.Stls()) == b"-ERR TLS is already active\r\n"
    await text(session, c.User(ADDRESS))
    assert (await text(session, c.Pass(PASSWORD))).startswith(b"+OK")


async def test_stls_not_offered_on_the_tls_port(make_session):
    assert await text(make_session(tls_active=True), c.Stls()) == b"-ERR TLS is already active\r\n"
    assert await text(make_session(tls_active=False, stls_offered=False), c.Stls()) == (
        b"-ERR STLS is not offered on this port\r\n"
    )


async def test_auth_plain_initial_response(make_session):
    session = make_session()
    assert (await text(session, c.Auth("PLAIN", plain("", ADDRESS, PASSWORD)))).startswith(b"+OK 0 messages")
    assert session.state is State.TRANSACTION


async def test_auth_plain_with_continuation(make_session):
    session = make_session()
    await session.handle(c.Auth("PLAIN"))
    assert (await text(session, c.SaslResponse(plain(ADDRESS, ADDRESS, PASSWORD)))).startswith(b"+OK")


@pytest.mark.parametrize(
    ("response", "answer"),
    [
        ("*", b"-ERR authentication cancelled\r\n"),
        ("not base64!", b"-ERR the response is not valid base64\r\n"),
        ("", b"-ERR a PLAIN response has three parts separated by NUL\r\n"),
        (base64.b64encode(b"a\0b").decode(), b"-ERR a PLAIN response has three parts separated by NUL\r\n"),
        (plain("", ADDRESS, "wrong"), b"-ERR [AUTH] wrong user name or password\r\n"),
        (plain("bob@example.com", ADDRESS, PASSWORD), b"-ERR [AUTH] logging in as another user is not allowed\r\n"),
    ],
)
async def test_auth_plain_failures(make_session, response, answer):
    session = make_session()
    await session.handle(c.Auth("PLAIN"))
    assert await text(session, c.SaslResponse(response)) == answer
    assert session.state is State.AUTHORIZATION


async def test_auth_other_mechanisms_and_listing(make_session):
    session = make_session()
    assert await text(session, c.Auth("CRAM-MD5")) == b"-ERR unsupported SASL mechanism; use PLAIN\r\n"
    assert await text(session, c.Auth(None)) == b"+OK SASL mechanisms follow\r\nPLAIN\r\n.\r\n"
    assert await text(session, c.Auth("PLAIN", "=")) == b"-ERR a PLAIN response has three parts separated by NUL\r\n"


async def test_over_long_sasl_response_ends_the_exchange(make_session):
    session = make_session()
    await session.handle(c.Auth("PLAIN"))
    assert (await text(session, c.LineTooLong(2048))).startswith(b"-ERR line too long")
    assert session.state is State.AUTHORIZATION


async def test_second_login_to_the_same_maildrop_is_in_use_until_the_first_ends(make_session):
    first = await logged_in(make_session)
    second = make_session()
    await text(second, c.User(ADDRESS))
    assert await text(second, c.Pass(PASSWORD)) == b"-ERR [IN-USE] the maildrop is in use by another session\r\n"
    assert second.state is State.AUTHORIZATION
    await first.close()
    await logged_in(make_session)


async def test_quit_lets_go_of_the_lock(make_session):
    session = await logged_in(make_session)
    assert (await session.handle(c.Quit())).close
    await logged_in(make_session)


class FailingStore:
    """A store whose reads fail: the session must answer [SYS/TEMP] and let go of the lock."""

    def __init__(self, store, fail):
        self._store = store
        self._fail = fail

    def __getattr__(self, name):
        if name in self._fail:
            async def fail(*args, **kwargs):
                raise OSError("disk on fire")
            return fail
        return getattr(self._store, name)


async def test_store_failure_at_login_is_sys_temp_and_releases_the_lock(make_session, store, locks):
    session = make_session(on=FailingStore(store, {"message_files"}))
    await text(session, c.User(ADDRESS))
    assert await text(session, c.Pass(PASSWORD)) == (
        b"-ERR [SYS/TEMP] cannot open the maildrop just now; try again later\r\n"
    )
    assert session.state is State.AUTHORIZATION
    await logged_in(make_session)  # the failed login gave the maildrop lock back


async def test_a_message_expunged_elsewhere_is_answered_removed(make_session, store, inbox):
    first, second, third = [await store.append(inbox.id, b"Subject: %d\r\n\r\nx\r\n" % n) for n in range(3)]
    session = await logged_in(make_session)
    await store.expunge(inbox.id, [first.uid])  # an IMAP client's EXPUNGE: its file stays a while
    store.blobs.path(second.blob.sha256).unlink()  # expunged in another worker, file collected
    assert await text(session, c.Retr(1)) == b"-ERR message 1 was removed by another session\r\n"
    assert await text(session, c.Retr(2)) == b"-ERR message 2 was removed by another session\r\n"
    assert (await text(session, c.Retr(3))).startswith(b"+OK")
    assert await text(session, c.Stat()) == b"+OK 3 %d\r\n" % (first.size + second.size + third.size)


class ExpungingStore:
    """A store where another session expunges a message just after the login's snapshot was read."""

    def __init__(self, store, uid):
        self._store = store
        self._uid = uid

    def __getattr__(self, name):
        return getattr(self._store, name)

    async def message_files(self, folder_id):
        snapshot = await self._store.message_files(folder_id)
        await self._store.expunge(folder_id, [self._uid])
        return snapshot


async def test_an_expunge_while_the_snapshot_is_read_is_heard(make_session, store, inbox):
    first = await store.append(inbox.id, b"Subject: 1\r\n\r\nx\r\n")
    await store.append(inbox.id, b"Subject: 2\r\n\r\nx\r\n")
    session = await logged_in(make_session, on=ExpungingStore(store, first.uid))
    assert await text(session, c.Retr(1)) == b"-ERR message 1 was removed by another session\r\n"
    assert (await text(session, c.Retr(2))).startswith(b"+OK")


async def test_store_failure_on_retr_and_quit_is_sys_temp(make_session, store, inbox):
    await store.append(inbox.id, b"Subject: x\r\n\r\nx\r\n")
    session = await logged_in(make_session, on=FailingStore(store, {"read_blob_range", "expunge"}))
    assert await text(session, c.Retr(1)) == b"-ERR [SYS/TEMP] cannot read the message just now; try again later\r\n"
    await text(session, c.Dele(1))
    reply = await session.handle(c.Quit())
    assert reply.data == b"-ERR [SYS/TEMP] the deleted messages could not be removed\r\n" and reply.close


async def test_stat_list_uidl(make_session, store, inbox):
    sizes = []
    for length in (10, 200, 3000):
        message = b"Subject: s\r\n\r\n" + b"x" * length + b"\r\n"
        await store.append(inbox.id, message)
        sizes.append(len(message))
    session = await logged_in(make_session)
    v = inbox.uidvalidity
    assert await text(session, c.Stat()) == f"+OK 3 {sum(sizes)}\r\n".encode()
    assert await text(session, c.List(None)) == (
        f"+OK 3 messages ({sum(sizes)} octets)\r\n1 {sizes[0]}\r\n2 {sizes[1]}\r\n3 {sizes[2]}\r\n.\r\n".encode()
    )
    assert await text(session, c.List(2)) == f"+OK 2 {sizes[1]}\r\n".encode()
    assert await text(session, c.Uidl(None)) == (
        f"+OK unique-id listing follows\r\n1 {v}.1\r\n2 {v}.2\r\n3 {v}.3\r\n.\r\n".encode()
    )
    assert await text(session, c.Uidl(3)) == f"+OK 3 {v}.3\r\n".encode()


async def test_numbers_out_of_range_and_deleted(make_session, store, inbox):
    await store.append(inbox.id, b"Subject: 1\r\n\r\n1\r\n")
    await store.append(inbox.id, b"Subject: 2\r\n\r\n2\r\n")
    session = await logged_in(make_session)
    for command in (c.List(0), c.List(3), c.Uidl(3), c.Retr(3), c.Top(3, 1), c.Dele(3), c.Retr(0)):
        assert (await text(session, command)).startswith(b"-ERR no message "), command
    assert await text(session, c.Retr(3)) == b"-ERR no message 3; the maildrop has 2\r\n"
    assert await text(session, c.Dele(1)) == b"+OK message 1 deleted\r\n"
    for command in (c.List(1), c.Uidl(1), c.Retr(1), c.Top(1, 1), c.Dele(1)):
        assert await text(session, command) == b"-ERR message 1 is already deleted\r\n", command
    assert await text(session, c.Stat()) == b"+OK 1 17\r\n"
    assert await text(session, c.List(None)) == b"+OK 1 messages (17 octets)\r\n2 17\r\n.\r\n"
    assert await text(session, c.Uidl(None)) == f"+OK unique-id listing follows\r\n2 {inbox.uidvalidity}.2\r\n.\r\n".encode()
    assert await text(session, c.Rset()) == b"+OK 2 messages (34 octets)\r\n"
    assert (await text(session, c.Retr(1))).startswith(b"+OK 17 octets\r\n")


async def test_quit_removes_exactly_the_deleted(make_session, store, inbox):
    for number in range(5):
        await store.append(inbox.id, f"Subject: {number}\r\n\r\n".encode())
    session = await logged_in(make_session)
    await text(session, c.Dele(2))
    await text(session, c.Dele(4))
    reply = await session.handle(c.Quit())
    assert reply.data == b"+OK bye (2 messages deleted)\r\n" and reply.close
    assert (await store.message_sizes(inbox.id))[0] == [1, 3, 5]


async def test_close_without_quit_removes_nothing(make_session, store, inbox):
    await store.append(inbox.id, b"Subject: x\r\n\r\n")
    session = await logged_in(make_session)
    await text(session, c.Dele(1))
    await session.close()
    assert (await store.message_sizes(inbox.id))[0] == [1]


async def test_quit_before_login(make_session):
    reply = await make_session().handle(c.Quit())
    assert reply.data == b"+OK bye\r\n" and reply.close


async def test_noop(make_session):
    assert await text(await logged_in(make_session), c.Noop()) == b"+OK\r\n"


@pytest.mark.parametrize(("stored", "sent"), TRICKY)
async def test_retr_and_top_through_the_store_in_small_chunks(make_session, store, inbox, stored, sent):
    await store.append(inbox.id, stored)
    session = await logged_in(make_session, chunk_size=3)
    assert await text(session, c.Retr(1)) == f"+OK {len(stored)} octets\r\n".encode() + sent
    assert (await text(session, c.Top(1, 10**6))) == b"+OK top of message follows\r\n" + sent


async def test_top_through_the_store(make_session, store, inbox):
    await store.append(inbox.id, HEADER + BODY)
    session = await logged_in(make_session, chunk_size=4)
    assert await text(session, c.Top(1, 0)) == b"+OK top of message follows\r\n" + HEADER + b".\r\n"
    assert await text(session, c.Top(1, 2)) == b"+OK top of message follows\r\n" + HEADER + b"one\r\n..two\r\n.\r\n"


async def test_top_stops_reading_once_it_has_its_lines(make_session, store, inbox):
    await store.append(inbox.id, HEADER + b"line\r\n" * 100_000)
    reads = itertools.count()
    read = store.read_blob_range

    async def counting(*args):
        next(reads)
        return await read(*args)

    store.read_blob_range = counting
    session = await logged_in(make_session, chunk_size=1024)
    assert await text(session, c.Top(1, 1)) == b"+OK top of message follows\r\n" + HEADER + b"line\r\n.\r\n"
    assert next(reads) == 1  # the first chunk held the lines: no second read


async def test_capa(make_session):
    base = [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING", b"EXPIRE NEVER", b"LOGIN-DELAY 0",
            b"IMPLEMENTATION Postfach"]

    async def capa(session):
        answer = await text(session, c.Capa())
        assert answer.startswith(b"+OK capability list follows\r\n") and answer.endswith(b"\r\n.\r\n")
        return answer.split(b"\r\n")[1:-2]

    before_tls = make_session(tls_active=False, stls_offered=True)
    assert await capa(before_tls) == base + [b"STLS"]
    before_tls.tls_started()
    assert await capa(before_tls) == base + [b"USER", b"SASL PLAIN"]
    assert await capa(make_session(tls_active=True)) == base + [b"USER", b"SASL PLAIN"]
    loopback = make_session(tls_active=False, stls_offered=True, plaintext_allowed=True)
    assert await capa(loopback) == base + [b"USER", b"SASL PLAIN", b"STLS"]
    assert await capa(await logged_in(make_session)) == base + [b"USER", b"SASL PLAIN"]
