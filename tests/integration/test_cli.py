"""The operator's command line: what it does, and that a refusal is one sentence, exit 1, no change."""

import asyncio
import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from postfach.auth.authenticator import Authenticator, AuthFailure, FailureReason
from postfach.auth.passwords import GENERATED_ALPHABET, Passwords
from postfach.cli import main
from postfach.config import load_config
from postfach.model import INBOX, Account, LoginAttempt
from postfach.store.sqlite import SqliteStore
from tests.support.config import write_config
from tests.support.database import snapshot

PASSWORD = "correct horse battery"


@pytest.fixture
def config_file(tmp_path):
    return write_config(tmp_path, listeners=())


@pytest.fixture
def cli(config_file, capsys, monkeypatch):
    """Runs `postfach ARGS --config FILE` in this process; returns (exit code, stdout, stderr)."""

    def run(*args: str, stdin: str | None = None):
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", _Stdin(stdin))
        code = main([*args, "--config", str(config_file)])
        out, err = capsys.readouterr()
        return code, out, err

    return run


class _Stdin:
    def __init__(self, text: str) -> None:
        self._lines = text.splitlines(keepends=True)

    def readline(self) -> str:
        return self._lines.pop(0) if self._lines else ""

    def read(self) -> str:
        text, self._lines = "".join(self._lines), []
        return text

    def isatty(self) -> bool:
        return False


@pytest.fixture
def db_path(config_file):
    return load_config(config_file, environ={}).db_path


@pytest.fixture
def example(cli):
    assert cli("domain", "add", "example.com")[0] == 0
    assert cli("mailbox", "add", "alice@example.com", "--password-stdin", stdin=PASSWORD + "\n")[0] == 0
    assert cli("mailbox", "add", "bob@example.com", "--password-stdin", stdin=PASSWORD + "\n")[0] == 0


async def login(config_file: Path, user: str, password: str) -> Account | AuthFailure:
    config = load_config(config_file, environ={})
    store = await SqliteStore.open(config.db_path, config.blob_dir)
    try:
        return await Authenticator(store, Passwords()).authenticate(user, password, source="127.0.0.1", protocol="imap")
    finally:
        await store.close()


# ---------------------------------------------------------------- what works


def test_domains_including_international_names(cli, db_path):
    assert cli("domain", "add", "Example.COM") == (0, "added domain example.com\n", "")
    assert cli("domain", "add", "bücher.example")[0] == 0
    assert cli("domain", "list")[1] == "bücher.example\nexample.com\n"
    assert ("xn--bcher-kva.example",) in {row[1:2] for row in snapshot(db_path)["domains"]}
    assert cli("domain", "remove", "xn--bcher-kva.example")[0] == 0
    assert cli("domain", "list")[1] == "example.com\n"


def test_generated_password_is_printed_once_and_logs_in(cli, config_file):
    cli("domain", "add", "example.com")
    code, out, err = cli("mailbox", "add", "carol@example.com", "--quota", "2G", "--generate-password")
    assert code == 0 and err == ""
    [password] = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("password: ")]
    assert len(password) >= 20 and set(password) <= set(GENERATED_ALPHABET)
    account = asyncio.run(login(config_file, "Carol@Example.com", password))
    assert isinstance(account, Account) and account.quota_bytes == 2 << 30
    assert isinstance(asyncio.run(login(config_file, "carol@example.com", password + "x")), AuthFailure)
    # Two generated passwords are never the same.
    code, out, _ = cli("mailbox", "passwd", "carol@example.com", "--generate-password")
    assert code == 0 and password not in out


def test_mailbox_list_quota_disable_and_remove(cli, example, config_file):
    code, out, _ = cli("mailbox", "list", "example.com")
    assert code == 0
    assert [line.split("\t")[0] for line in out.splitlines()] == ["alice@example.com", "bob@example.com"]
    assert "0 B of 1.0 GiB (0%)\tenabled" in out
    assert cli("mailbox", "quota", "alice@example.com", "5M")[1].startswith("alice@example.com\t0 B of 5.0 MiB")
    assert cli("mailbox", "disable", "alice@example.com")[0] == 0
    assert asyncio.run(login(config_file, "alice@example.com", PASSWORD)) == AuthFailure(FailureReason.DISABLED)
    assert cli("mailbox", "enable", "alice@example.com")[0] == 0
    assert isinstance(asyncio.run(login(config_file, "alice@example.com", PASSWORD)), Account)
    assert cli("mailbox", "remove", "alice@example.com")[0] == 0
    assert isinstance(asyncio.run(login(config_file, "alice@example.com", PASSWORD)), AuthFailure)


def test_aliases_forwarding_and_vacation(cli, example, tmp_path):
    assert cli("alias", "add", "info@example.com", "alice@example.com")[0] == 0
    assert cli("alias", "add", "@example.com", "bob@example.com")[0] == 0
    assert cli("alias", "list")[1] == "@example.com\tbob@example.com\ninfo@example.com\talice@example.com\n"
    code, out, _ = cli("forward", "set", "alice@example.com", "x@elsewhere.org", "y@elsewhere.org", "--keep-copy")
    assert code == 0
    assert cli("forward", "show", "alice@example.com")[1] == "x@elsewhere.org\ny@elsewhere.org\nkeep copy: yes\n"
    assert cli("forward", "clear", "alice@example.com")[0] == 0
    assert "does not forward" in cli("forward", "show", "alice@example.com")[1]
    body = tmp_path / "away.txt"
    body.write_text("Ich bin bis Januar nicht im Büro.\n", encoding="utf-8")
    start, end = date.today(), date.today() + timedelta(days=14)
    args = ("vacation", "set", "alice@example.com", "--start", str(start), "--end", str(end), "--subject", "Away")
    assert cli(*args, "--body-file", str(body))[0] == 0
    shown = cli("vacation", "show", "alice@example.com")[1]
    assert f"from: {start}\nto: {end}\nsubject: Away\n" in shown and "nicht im Büro" in shown
    assert cli("vacation", "clear", "alice@example.com")[0] == 0
    assert "no autoresponder" in cli("vacation", "show", "alice@example.com")[1]


def test_twenty_forwarding_targets_are_allowed(cli, example):
    targets = [f"t{number}@elsewhere.org" for number in range(20)]
    assert cli("forward", "set", "alice@example.com", *targets)[0] == 0


# ---------------------------------------------------------------- refusals


def refused(cli, db_path, *args, stdin=None, expect: str):
    before = snapshot(db_path)
    code, out, err = cli(*args, stdin=stdin)
    assert code == 1, (out, err)
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("postfach: ") and expect in err, err
    assert snapshot(db_path) == before
    return err


@pytest.mark.parametrize(
    "args, expect",
    [
        (("mailbox", "add", "not-an-address", "--password-stdin"), "is not a mail address"),
        (("mailbox", "add", "a b@example.com", "--password-stdin"), "is not a valid mail address"),
        (("mailbox", "add", "x@exa_mple.com", "--password-stdin"), "is not a valid domain name"),
        (("mailbox", "add", "x@unknown.org", "--password-stdin"), "is not hosted here"),
        (("mailbox", "add", "alice@example.com", "--password-stdin"), "exists already"),
        (("mailbox", "add", "dave@example.com", "--quota", "4M", "--password-stdin"), "the minimum is 5.0 MiB"),
        (("mailbox", "add", "dave@example.com", "--quota", "5X", "--password-stdin"), "is not a size"),
        (("mailbox", "quota", "alice@example.com", "1K"), "too small"),
        (("mailbox", "remove", "nobody@example.com"), "there is no mailbox"),
        (("domain", "add", "example.com"), "exists already"),
        (("domain", "add", "localhost"), "at least two labels"),
        (("domain", "remove", "example.com"), "still has 2 mailbox"),
        (("alias", "add", "alice@example.com", "bob@example.com"), "is a mailbox"),
        (("alias", "add", "x@example.com", "x@example.com"), "cannot point to itself"),
        (("alias", "add", "x@example.com", "ghost@example.com"), "does not exist here"),
        (("alias", "remove", "x@example.com", "bob@example.com"), "there is no alias"),
        (("forward", "set", "alice@example.com", "alice@example.com"), "cannot forward to itself"),
        (("forward", "set", "alice@example.com", "ALICE@example.com"), "cannot forward to itself"),
        (("forward", "set", "alice@example.com", "nobody@example.com"), "does not exist here"),
        (("forward", "set", "nobody@example.com", "x@elsewhere.org"), "there is no mailbox"),
        (("forward", "set", "alice@example.com", "x@"), "is not a"),
        (("vacation", "set", "alice@example.com", "--start", "2030-02-01", "--end", "2030-01-01",
          "--subject", "Away", "--body-file", "-"), "before the start date"),
        (("vacation", "set", "alice@example.com", "--start", "2020-01-01", "--end", "2020-01-02",
          "--subject", "Away", "--body-file", "-"), "has already passed"),
        (("vacation", "set", "alice@example.com", "--start", "1.1.2030", "--end", "2030-01-02",
          "--subject", "Away", "--body-file", "-"), "is not a date"),
        (("vacation", "set", "alice@example.com", "--start", "2030-01-01", "--end", "2030-01-02",
          "--subject", "Away", "--body-file", "/nonexistent/file"), "cannot read"),
        (("mailbox", "frobnicate"), "invalid choice"),
        (("mailbox",), "required"),
    ],
)
def test_bad_input_is_one_sentence_exit_1_and_changes_nothing(cli, example, db_path, args, expect):
    refused(cli, db_path, *args, stdin="a good long password\n", expect=expect)


def test_twenty_one_forwarding_targets_are_refused(cli, example, db_path):
    targets = [f"t{number}@elsewhere.org" for number in range(21)]
    refused(cli, db_path, "forward", "set", "alice@example.com", *targets, expect="at most 20")


def test_forwarding_loops_are_refused(cli, example, db_path):
    assert cli("forward", "set", "alice@example.com", "bob@example.com")[0] == 0
    refused(cli, db_path, "forward", "set", "bob@example.com", "alice@example.com", expect="loop")
    assert cli("alias", "add", "team@example.com", "alice@example.com")[0] == 0
    refused(cli, db_path, "forward", "set", "bob@example.com", "team@example.com", expect="loop")
    # Forwarding elsewhere and keeping copies is no loop.
    assert cli("forward", "set", "bob@example.com", "bob@elsewhere.org", "--keep-copy")[0] == 0


def test_passwords_are_checked(cli, example, db_path):
    refused(cli, db_path, "mailbox", "passwd", "alice@example.com", "--password-stdin", stdin="short\n",
            expect="too short")
    refused(cli, db_path, "mailbox", "passwd", "alice@example.com", "--password-stdin", stdin="",
            expect="no password")
    refused(cli, db_path, "mailbox", "passwd", "alice@example.com", expect="--password-stdin or --generate-password")
    refused(cli, db_path, "mailbox", "add", "x@example.com", "--password-stdin", "--generate-password",
            expect="not allowed with")


# ---------------------------------------------------------------- the real command


def run_postfach(*args: str, env: dict | None = None, cwd: Path | None = None, stdin: str = ""):
    return subprocess.run(
        [sys.executable, "-m", "postfach", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**_clean_environ(), **(env or {})},
        cwd=cwd,
        timeout=60,
    )


def _clean_environ() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("POSTFACH_")}


def test_config_is_found_before_or_after_the_subcommand_or_in_the_environment(config_file):
    assert run_postfach("--config", str(config_file), "domain", "add", "one.example").returncode == 0
    assert run_postfach("domain", "add", "two.example", "--config", str(config_file)).returncode == 0
    listed = run_postfach("domain", "list", env={"POSTFACH_CONFIG": str(config_file)})
    assert listed.returncode == 0 and listed.stdout == "one.example\ntwo.example\n"


def test_configuration_mistakes_stop_every_command(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('data_dir = "data"\n[listen]\nimap = "127.0.0.1:99999"\n')
    result = run_postfach("domain", "list", "--config", str(bad))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("postfach: ") and "listen.imap" in result.stderr
    missing = run_postfach("domain", "list", "--config", str(tmp_path / "missing.toml"))
    assert missing.returncode == 1 and "cannot read the config file" in missing.stderr
    unknown = run_postfach("domain", "list", env={"POSTFACH_DATADIR": str(tmp_path)}, cwd=tmp_path)
    assert unknown.returncode == 1 and "POSTFACH_DATADIR" in unknown.stderr


def test_refusal_exit_code_from_the_real_command(config_file):
    result = run_postfach("mailbox", "add", "bad address", "--password-stdin", "--config", str(config_file),
                          stdin="a good long password\n")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("postfach: ")


# ---------------------------------------------------------------- the outbound queue


QUEUED = b"From: alice@example.com\r\nTo: x@remote.example\r\nSubject: Queued\r\n\r\nsecret body\r\n"
HOLDER = "mail.example.com:4242:cafe"  # a worker's lease owner


async def _with_store(config_file: Path, work):
    config = load_config(config_file, environ={})
    store = await SqliteStore.open(config.db_path, config.blob_dir)
    try:
        return await work(store)
    finally:
        await store.close()


def enqueue(config_file, sender, recipients, *, next_attempt=None, error=None, holder=None) -> int:
    """A queue entry as the server leaves it: tried once with `error`, held by `holder`'s lease."""

    async def work(store):
        entry = await store.enqueue(sender, recipients, await store.store_blob(QUEUED), next_attempt)
        if error:
            outcomes = {recipient: ("pending", error) for recipient in recipients}
            await store.record_attempt(entry.id, outcomes, next_attempt or time.time(), error)
        if holder:
            await store.claim_queued(entry.id, holder, time.time(), 3600)
        return entry.id

    return asyncio.run(_with_store(config_file, work))


def queue_of(config_file):
    return asyncio.run(_with_store(config_file, lambda store: store.list_queue()))


def postfach(config_file, *args):
    return run_postfach(*args, "--config", str(config_file))


def test_queue_list_retry_and_remove_through_the_real_command(config_file, example):
    later = int(time.time()) + 3600
    first = enqueue(config_file, "alice@example.com", ["x@remote.example", "y@xn--bcher-kva.example"],
                    next_attempt=later, error="451 4.3.0 Try\tagain\nlater")
    bounce = enqueue(config_file, "", ["z@remote.example"], next_attempt=later)
    listed = postfach(config_file, "queue", "list")
    assert listed.returncode == 0 and listed.stderr == ""
    when = datetime.fromtimestamp(later).strftime("%Y-%m-%d %H:%M:%S")
    assert [line.split("\t") for line in listed.stdout.splitlines()] == [
        [str(first), "<alice@example.com>", "x@remote.example, y@bücher.example", "1", when,
         "451 4.3.0 Try again later", "0m"],
        [str(bounce), "<>", "z@remote.example", "0", when, "-", "0m"],
    ]

    retried = postfach(config_file, "queue", "retry", str(first))
    assert (retried.returncode, retried.stdout) == (0, f"queue entry {first} is due now\n")
    assert [entry.id for entry in queue_of(config_file)] == [first, bounce]  # first is due, bounce later
    assert queue_of(config_file)[0].next_attempt.timestamp() <= time.time()
    everything = postfach(config_file, "queue", "retry", "--all")
    assert (everything.returncode, everything.stdout) == (0, "2 queue entries are due now\n")
    assert all(entry.next_attempt.timestamp() <= time.time() for entry in queue_of(config_file))

    removed = postfach(config_file, "queue", "remove", str(bounce))
    assert removed.returncode == 0
    assert removed.stdout == f"removed queue entry {bounce} (from <> to z@remote.example); its sender was not told\n"
    assert [entry.id for entry in queue_of(config_file)] == [first]
    assert len(postfach(config_file, "queue", "list").stdout.splitlines()) == 1


def test_queue_list_shows_an_entry_being_delivered_and_says_when_it_shows_only_some(config_file, example, cli):
    held = enqueue(config_file, "alice@example.com", ["x@remote.example"], holder=HOLDER)
    enqueue(config_file, "alice@example.com", ["y@remote.example"], next_attempt=time.time() + 60)
    code, out, err = cli("queue", "list", "--limit", "1")
    assert code == 0 and out.split("\t")[0] == str(held) and out.split("\t")[4] == "being delivered now"
    assert err == "postfach: the queue holds more than these 1; give --limit N for more\n"


def test_queue_bounce_returns_the_mail_to_a_local_sender_as_a_dsn(config_file, example):
    queued = enqueue(config_file, "alice@example.com", ["x@remote.example", "y@remote.example"],
                     error="451 4.2.0 Mailbox busy")
    bounced = postfach(config_file, "queue", "bounce", str(queued))
    assert bounced.returncode == 0, bounced.stderr
    assert bounced.stdout == (
        f"returned queue entry {queued} (from <alice@example.com> to x@remote.example, y@remote.example)"
        " to its sender with a delivery status notification\n"
    )
    assert queue_of(config_file) == []

    async def inbox(store):
        account = await store.get_account("alice@example.com")
        folder = await store.get_folder(account.id, INBOX)
        metas = await store.get_messages(folder.id, (await store.load_index(folder.id)).uids)
        return [await store.read_blob(meta.blob.sha256) for meta in metas]

    [dsn] = asyncio.run(_with_store(config_file, inbox))
    text = dsn.decode()
    assert text.startswith("Return-Path: <>\r\n")
    assert "Content-Type: multipart/report; report-type=delivery-status;" in text
    for recipient in ("x@remote.example", "y@remote.example"):
        assert f"Final-Recipient: rfc822; {recipient}" in text
    assert text.count("Action: failed") == 2 and text.count("Status: 5.0.0") == 2
    assert "returned to the sender by the postmaster of mail.example.com" in text
    assert "Subject: Queued" in text and "secret body" not in text  # the header comes back, not the body


def test_queue_bounce_to_a_sender_elsewhere_is_queued_for_the_server_to_send(config_file, example):
    queued = enqueue(config_file, "carol@elsewhere.org", ["x@remote.example"])
    assert postfach(config_file, "queue", "bounce", str(queued)).returncode == 0
    [dsn] = queue_of(config_file)
    assert (dsn.sender, dsn.pending) == ("", ("carol@elsewhere.org",))
    data = asyncio.run(_with_store(config_file, lambda store: store.read_blob(dsn.blob.sha256)))
    assert b"Final-Recipient: rfc822; x@remote.example" in data and b"To: <carol@elsewhere.org>" in data


@pytest.mark.parametrize(
    "args, expect",
    [
        (("queue", "retry"), "give a queue entry's ID, or --all for every entry"),
        (("queue", "retry", "{plain}", "--all"), "give a queue entry's ID, or --all for every entry"),
        (("queue", "retry", "999"), "queue entry 999 does not exist"),
        (("queue", "remove", "999"), "queue entry 999 does not exist"),
        (("queue", "bounce", "999"), "queue entry 999 does not exist"),
        (("queue", "remove", "x1"), "'x1' is not a queue entry's ID"),
        (("queue", "bounce", "0"), "'0' is not a queue entry's ID"),
        (("queue", "bounce", "{bounce}"), "is itself a bounce and has no sender to return it to"),
        (("queue", "retry", "{held}"), f"is being delivered right now ({HOLDER})"),
        (("queue", "remove", "{held}"), f"is being delivered right now ({HOLDER})"),
        (("queue", "bounce", "{held}"), f"is being delivered right now ({HOLDER})"),
        (("queue", "list", "--limit", "0"), "the limit must be at least 1"),
        (("queue", "purge"), "invalid choice"),
        (("audit", "--prune", "alice@example.com"),
         "--prune deletes old attempts of every mailbox; give it no address"),
    ],
)
def test_queue_refusals_are_one_sentence_exit_1_and_change_nothing(cli, example, config_file, db_path, args, expect):
    ids = {
        "plain": enqueue(config_file, "alice@example.com", ["x@remote.example"]),
        "bounce": enqueue(config_file, "", ["alice@remote.example"]),
        "held": enqueue(config_file, "alice@example.com", ["y@remote.example"], holder=HOLDER),
    }
    refused(cli, db_path, *(arg.format(**ids) for arg in args), expect=expect)


def test_a_queue_refusal_from_the_real_command(config_file, example):
    result = postfach(config_file, "queue", "remove", "999")
    assert (result.returncode, result.stdout, result.stderr) == (1, "", "postfach: queue entry 999 does not exist\n")


# ---------------------------------------------------------------- audit retention


def test_audit_prune_deletes_what_is_older_than_the_retention(tmp_path):
    (tmp_path / "pruning").mkdir()
    config_file = write_config(tmp_path / "pruning", listeners=(), extra="[audit]\nretention_days = 2\n")
    now = time.time()

    async def attempts(store):
        for age_days, reason in ((3, "old"), (2.01, "old"), (1.99, "kept"), (0, "kept")):
            at = datetime.fromtimestamp(now - age_days * 86400, timezone.utc)
            await store.add_login_attempt(LoginAttempt(at, "alice@example.com", "", "192.0.2.1", "imap", "ok", reason))

    asyncio.run(_with_store(config_file, attempts))
    pruned = postfach(config_file, "audit", "--prune")
    assert (pruned.returncode, pruned.stdout) == (0, "deleted 2 login attempt(s) older than 2 days\n")
    listed = postfach(config_file, "audit").stdout.splitlines()
    assert [line.split("\t")[-1] for line in listed] == ["kept", "kept"]
    again = postfach(config_file, "audit", "--prune")
    assert again.stdout == "deleted 0 login attempt(s) older than 2 days\n"


def test_a_retention_below_one_day_is_refused(tmp_path):
    (tmp_path / "bad").mkdir()
    config_file = write_config(tmp_path / "bad", listeners=(), extra="[audit]\nretention_days = 0\n")
    result = postfach(config_file, "audit", "--prune")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == f"postfach: {config_file}: audit.retention_days: must be 1 to 36500, got 0\n"
