"""The `postfach` command: parses, calls services, prints.

Every refusal is one sentence on stderr and exit code 1; nothing is changed
then. `--config FILE` is accepted before or after the subcommand.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date, datetime, timezone
from pathlib import Path

from postfach import dns_records
from postfach.address import display_address, display_domain
from postfach.auth.audit_retention import AuditRetention
from postfach.auth.passwords import Passwords, generate_password
from postfach.config import Config, ConfigError, find_config_file, load_config
from postfach.provisioning import InvalidRequest, Provisioning
from postfach.queue.admin import QueueAdmin
from postfach.sizes import format_size
from postfach.store import open_store


class UsageError(Exception):
    """The command line itself is wrong."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _add_config_option(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--config", metavar="FILE", default=default, help="configuration file (or POSTFACH_CONFIG)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="postfach", description="Postfach mail hosting server")
    _add_config_option(parser, None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(parent, name: str, help_text: str) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, help=help_text, description=help_text)
        _add_config_option(sub, argparse.SUPPRESS)
        return sub

    serve = command(commands, "serve", "start every configured listener")
    serve.add_argument(
        "--workers", type=_worker_count, metavar="N", help="processes sharing the listeners (default: one per core)"
    )

    domain = command(commands, "domain", "hosted domains").add_subparsers(dest="action", required=True)
    for action, help_text in (("add", "host a domain"), ("remove", "stop hosting a domain without mailboxes")):
        command(domain, action, help_text).add_argument("domain")
    command(domain, "list", "list hosted domains")
    command(domain, "dns", "print the DNS records to publish (MX, SPF, DKIM, DMARC, client set-up)").add_argument(
        "domain"
    )

    mailbox = command(commands, "mailbox", "mailboxes (accounts)").add_subparsers(dest="action", required=True)
    add = command(mailbox, "add", "create a mailbox with INBOX, Sent, Drafts, Trash, Junk and Archive")
    add.add_argument("address")
    add.add_argument("--quota", metavar="SIZE", help="e.g. 500M or 2G (minimum 5M; default 1G)")
    _add_password_options(add)
    command(mailbox, "list", "list mailboxes").add_argument("domain", nargs="?")
    command(mailbox, "remove", "delete a mailbox and all its mail").add_argument("address")
    passwd = command(mailbox, "passwd", "set a new password")
    passwd.add_argument("address")
    _add_password_options(passwd)
    quota = command(mailbox, "quota", "show the quota, or set it to SIZE")
    quota.add_argument("address")
    quota.add_argument("size", nargs="?")
    command(mailbox, "enable", "allow logins again").add_argument("address")
    command(mailbox, "disable", "refuse logins; mail is still accepted").add_argument("address")
    app_password = command(mailbox, "app-password", "named passwords for single devices or protocols")
    app_actions = app_password.add_subparsers(dest="app_action", required=True)
    app_add = command(app_actions, "add", "generate an app password and print it once")
    command(app_actions, "list", "list a mailbox's app passwords with their last use").add_argument("address")
    app_revoke = command(app_actions, "revoke", "revoke an app password")
    for sub in (app_add, app_revoke):
        sub.add_argument("address")
        sub.add_argument("name")

    quarantine = command(commands, "quarantine", "accounts locked after wrong passwords, banned addresses")
    quarantine_actions = quarantine.add_subparsers(dest="action", required=True)
    command(quarantine_actions, "list", "list the quarantines and bans in force")
    command(quarantine_actions, "release", "end a mailbox's quarantine, or an IP address's ban").add_argument(
        "address", help="a mailbox address, or a banned IP address"
    )

    audit = command(commands, "audit", "login attempts, newest first")
    audit.add_argument("address", nargs="?", help="only this mailbox's")
    audit.add_argument("--limit", type=int, default=50, metavar="N", help="at most N attempts (default 50)")
    audit.add_argument(
        "--prune", action="store_true", help="instead: delete the attempts older than audit.retention_days (90)"
    )
    audit.set_defaults(action="list")

    queue = command(commands, "queue", "the outbound queue: mail waiting to leave").add_subparsers(
        dest="action", required=True
    )
    command(queue, "list", "id, sender, recipients, attempts, next attempt, last error, age").add_argument(
        "--limit", type=int, default=1000, metavar="N", help="at most N entries, soonest first (default 1000)"
    )
    retry = command(queue, "retry", "make an entry due now (a running server tries it within a minute)")
    retry.add_argument("id", nargs="?", type=_queue_id)
    retry.add_argument("--all", action="store_true", help="every entry (one being delivered right now is left)")
    command(queue, "remove", "delete an entry WITHOUT telling its sender ('queue bounce' tells them)").add_argument(
        "id", type=_queue_id
    )
    command(queue, "bounce", "return an entry to its sender with a delivery status notification").add_argument(
        "id", type=_queue_id
    )

    alias = command(commands, "alias", "aliases; @domain as the address is a catch-all").add_subparsers(
        dest="action", required=True
    )
    for action, help_text in (("add", "deliver mail for ADDRESS to TARGET"), ("remove", "remove an alias")):
        sub = command(alias, action, help_text)
        sub.add_argument("address")
        sub.add_argument("target")
    command(alias, "list", "list aliases").add_argument("domain", nargs="?")

    forward = command(commands, "forward", "forwarding").add_subparsers(dest="action", required=True)
    forward_set = command(forward, "set", "forward a mailbox's mail to up to 20 addresses")
    forward_set.add_argument("address")
    forward_set.add_argument("targets", nargs="+", metavar="TARGET")
    forward_set.add_argument("--keep-copy", action="store_true", help="also keep a copy in the mailbox")
    command(forward, "clear", "stop forwarding").add_argument("address")
    command(forward, "show", "show a mailbox's forwarding").add_argument("address")

    vacation = command(commands, "vacation", "the autoresponder").add_subparsers(dest="action", required=True)
    vacation_set = command(vacation, "set", "answer incoming mail from START to END (both included)")
    vacation_set.add_argument("address")
    vacation_set.add_argument("--start", required=True, type=_date, metavar="YYYY-MM-DD")
    vacation_set.add_argument("--end", required=True, type=_date, metavar="YYYY-MM-DD")
    vacation_set.add_argument("--subject", required=True)
    vacation_set.add_argument("--body-file", required=True, metavar="FILE", help="the text; - for standard input")
    command(vacation, "clear", "turn the autoresponder off").add_argument("address")
    command(vacation, "show", "show the autoresponder").add_argument("address")
    return parser


def _add_password_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    source.add_argument("--generate-password", action="store_true", help="generate a strong password and print it")


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (write it as YYYY-MM-DD)") from None


def _queue_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a queue entry's ID (see 'postfach queue list')")
    return int(text)


def _worker_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 256:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers from 1 to 256")
    return int(text)


def _read_password(args: argparse.Namespace) -> tuple[str, bool]:
    """The new password, and whether it was generated (and so must be shown once)."""
    if args.generate_password:
        return generate_password(), True
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("no password on standard input")
        return password, False
    if not sys.stdin.isatty():
        raise UsageError("give --password-stdin or --generate-password (there is no terminal to ask on)")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Repeat it: ") != first:
        raise UsageError("the two passwords differ")
    return first, False


def _read_body(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read the autoresponder text from {path}: {error}") from None


@asynccontextmanager
async def _provisioning(config: Config):
    store = await open_store(config)
    try:
        passwords = Passwords.configured(config.argon2_time_cost, config.argon2_memory_kib, config.argon2_parallelism)
        yield Provisioning(store, passwords)
    finally:
        await store.close()


def _print_account(account) -> None:
    percent = 100 * account.used_bytes // account.quota_bytes
    state = "enabled" if account.enabled else "disabled"
    usage = f"{format_size(account.used_bytes)} of {format_size(account.quota_bytes)} ({percent}%)"
    print(f"{display_address(account.address)}\t{usage}\t{state}")


async def _run_admin(args: argparse.Namespace, config: Config) -> None:
    handler = _ADMIN[(args.command, args.action)]
    args.settings = config  # for the commands that print what the configuration says (domain dns)
    async with _provisioning(config) as provisioning:
        await handler(provisioning, args)


async def _domain_add(p: Provisioning, args) -> None:
    domain = await p.add_domain(args.domain)
    print(f"added domain {display_domain(domain.name)}")


async def _domain_remove(p: Provisioning, args) -> None:
    await p.remove_domain(args.domain)
    print(f"removed domain {args.domain}")


async def _domain_list(p: Provisioning, args) -> None:
    for name in sorted(display_domain(domain.name) for domain in await p.list_domains()):
        print(name)


async def _domain_dns(p: Provisioning, args) -> None:
    key = await p.dkim_key(args.domain)
    for line in dns_records.records(key.domain, args.settings.hostname, key, args.settings.listen):
        print(line)


async def _mailbox_add(p: Provisioning, args) -> None:
    password, generated = _read_password(args)
    account = await p.add_mailbox(args.address, password, args.quota)
    print(f"added mailbox {display_address(account.address)} ({format_size(account.quota_bytes)})")
    if generated:
        print(f"password: {password}")


async def _mailbox_list(p: Provisioning, args) -> None:
    for account in await p.list_mailboxes(args.domain):
        _print_account(account)


async def _mailbox_remove(p: Provisioning, args) -> None:
    await p.remove_mailbox(args.address)
    print(f"removed mailbox {args.address} and all its mail")


async def _mailbox_passwd(p: Provisioning, args) -> None:
    await p.get_mailbox(args.address)
    password, generated = _read_password(args)
    await p.set_password(args.address, password)
    print(f"password changed for {args.address}")
    if generated:
        print(f"password: {password}")


async def _mailbox_quota(p: Provisioning, args) -> None:
    if args.size is not None:
        await p.set_quota(args.address, args.size)
    _print_account(await p.get_mailbox(args.address))


async def _mailbox_enable(p: Provisioning, args) -> None:
    await p.set_enabled(args.address, args.action == "enable")
    print(f"mailbox {args.address} {args.action}d")


async def _mailbox_app_password(p: Provisioning, args) -> None:
    if args.app_action == "add":
        app, password = await p.add_app_password(args.address, args.name)
        print(f"added app password {app.name} for {args.address}")
        print(f"password: {password}")
    elif args.app_action == "revoke":
        await p.revoke_app_password(args.address, args.name)
        print(f"revoked app password {args.name} of {args.address}")
    else:
        for app in await p.list_app_passwords(args.address):
            if app.last_used_at is None:
                used = "never used"
            else:
                used = f"last used {_time(app.last_used_at)} from {app.last_used_from} ({app.last_used_protocol})"
            print(f"{app.name}\tcreated {_time(app.created_at)}\t{used}")


def _time(moment) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


async def _quarantine_list(p: Provisioning, args) -> None:
    quarantines, bans = await p.list_quarantines()
    for quarantine in quarantines:
        key = quarantine.key
        what = f"app password {key.credential}" if key.credential else "password"
        scope = f" from {key.source}" if key.source else ""
        print(
            f"{display_address(key.address)}\t{what}{scope}\tuntil {_time(quarantine.until)}"
            f"\t{quarantine.failures} wrong password(s)"
        )
    for ban in bans:
        print(f"{ban.source}\tbanned\tuntil {_time(ban.until)}\twrong passwords for {ban.accounts} accounts")


async def _quarantine_release(p: Provisioning, args) -> None:
    print(await p.release(args.address))


async def _audit(p: Provisioning, args) -> None:
    if args.prune:
        if args.address:
            raise UsageError("--prune deletes old attempts of every mailbox; give it no address")
        retention = AuditRetention(p.store, args.settings.audit_retention_days)
        removed = await retention.prune()
        days = f"{retention.days} day{'' if retention.days == 1 else 's'}"
        print(f"deleted {removed} login attempt(s) older than {days}")
        return
    for attempt in await p.login_attempts(args.address, args.limit):
        credential = f"app password {attempt.credential}" if attempt.credential else "password"
        print(
            f"{_time(attempt.at)}\t{display_address(attempt.address) if '@' in attempt.address else attempt.address}"
            f"\t{attempt.source}\t{attempt.protocol}\t{attempt.result}\t{credential}\t{attempt.reason}"
        )


async def _alias_add(p: Provisioning, args) -> None:
    alias = await p.add_alias(args.address, args.target)
    print(f"added alias {display_address(alias.source)} -> {display_address(alias.target)}")


async def _alias_remove(p: Provisioning, args) -> None:
    await p.remove_alias(args.address, args.target)
    print(f"removed alias {args.address} -> {args.target}")


async def _alias_list(p: Provisioning, args) -> None:
    for alias in await p.list_aliases(args.domain):
        print(f"{display_address(alias.source)}\t{display_address(alias.target)}")


async def _forward_set(p: Provisioning, args) -> None:
    forwarding = await p.set_forwarding(args.address, args.targets, args.keep_copy)
    copy = ", keeping a copy" if forwarding.keep_copy else ""
    targets = ", ".join(display_address(target) for target in forwarding.targets)
    print(f"{args.address} forwards to {targets}{copy}")


async def _forward_clear(p: Provisioning, args) -> None:
    await p.clear_forwarding(args.address)
    print(f"{args.address} no longer forwards")


async def _forward_show(p: Provisioning, args) -> None:
    forwarding = await p.get_forwarding(args.address)
    if forwarding is None:
        print(f"{args.address} does not forward")
        return
    for target in forwarding.targets:
        print(display_address(target))
    print(f"keep copy: {'yes' if forwarding.keep_copy else 'no'}")


async def _vacation_set(p: Provisioning, args) -> None:
    body = _read_body(args.body_file)
    vacation = await p.set_vacation(args.address, args.start, args.end, args.subject, body)
    print(f"autoresponder for {args.address} on from {vacation.start} to {vacation.end}")


async def _vacation_clear(p: Provisioning, args) -> None:
    await p.clear_vacation(args.address)
    print(f"autoresponder for {args.address} off")


async def _vacation_show(p: Provisioning, args) -> None:
    vacation = await p.get_vacation(args.address)
    if vacation is None:
        print(f"{args.address} has no autoresponder")
        return
    print(f"from: {vacation.start}\nto: {vacation.end}\nsubject: {vacation.subject}\n\n{vacation.body}")


def _age(seconds: float) -> str:
    minutes = max(0, int(seconds)) // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def _sender(entry) -> str:
    return f"<{display_address(entry.sender) if entry.sender else ''}>"


def _recipients(entry) -> str:
    return ", ".join(display_address(address) for address in entry.pending)


def _queue_entry(entry) -> str:
    return f"{entry.id} (from {_sender(entry)} to {_recipients(entry)})"


async def _queue_list(p: Provisioning, args) -> None:
    entries, more = await QueueAdmin(p.store, args.settings.hostname).entries(args.limit)
    now = datetime.now(timezone.utc)
    for entry in entries:
        upcoming = "being delivered now" if entry.held_at(now) else _time(entry.next_attempt)
        error = " ".join((entry.last_error or "-").split())  # one line, no tabs: a remote reply may hold both
        age = _age((now - entry.created_at).total_seconds())
        print(f"{entry.id}\t{_sender(entry)}\t{_recipients(entry)}\t{entry.attempts}\t{upcoming}\t{error}\t{age}")
    if more:
        print(f"postfach: the queue holds more than these {args.limit}; give --limit N for more", file=sys.stderr)


async def _queue_retry(p: Provisioning, args) -> None:
    if (args.id is None) != args.all:
        raise UsageError("give a queue entry's ID, or --all for every entry (not both)")
    count = await QueueAdmin(p.store, args.settings.hostname).retry(args.id)
    if args.id is not None:
        print(f"queue entry {args.id} is due now")
    else:
        print(f"{count} queue {'entry is' if count == 1 else 'entries are'} due now")


async def _queue_remove(p: Provisioning, args) -> None:
    entry = await QueueAdmin(p.store, args.settings.hostname).remove(args.id)
    print(f"removed queue entry {_queue_entry(entry)}; its sender was not told")


async def _queue_bounce(p: Provisioning, args) -> None:
    # Imported here: only this command needs the delivery pipeline and what it loads.
    from postfach.delivery.pipeline import DeliveryPipeline
    from postfach.delivery.srs import Srs, load_secret

    config = args.settings
    admin = QueueAdmin(p.store, config.hostname)
    # A DSN for a sender elsewhere is queued (admin is the pipeline's outbound); an SRS sender
    # of our forwarding is turned back into the original one, as for any bounce.
    srs = Srs(await asyncio.to_thread(load_secret, config.data_dir))
    entry = await admin.bounce(args.id, DeliveryPipeline(p.store, config.hostname, outbound=admin, srs=srs))
    print(f"returned queue entry {_queue_entry(entry)} to its sender with a delivery status notification")


_ADMIN: dict[tuple[str, str], Callable[[Provisioning, argparse.Namespace], Awaitable[None]]] = {
    ("domain", "add"): _domain_add,
    ("domain", "remove"): _domain_remove,
    ("domain", "list"): _domain_list,
    ("domain", "dns"): _domain_dns,
    ("mailbox", "add"): _mailbox_add,
    ("mailbox", "list"): _mailbox_list,
    ("mailbox", "remove"): _mailbox_remove,
    ("mailbox", "passwd"): _mailbox_passwd,
    ("mailbox", "quota"): _mailbox_quota,
    ("mailbox", "enable"): _mailbox_enable,
    ("mailbox", "disable"): _mailbox_enable,
    ("mailbox", "app-password"): _mailbox_app_password,
    ("quarantine", "list"): _quarantine_list,
    ("quarantine", "release"): _quarantine_release,
    ("audit", "list"): _audit,
    ("queue", "list"): _queue_list,
    ("queue", "retry"): _queue_retry,
    ("queue", "remove"): _queue_remove,
    ("queue", "bounce"): _queue_bounce,
    ("alias", "add"): _alias_add,
    ("alias", "remove"): _alias_remove,
    ("alias", "list"): _alias_list,
    ("forward", "set"): _forward_set,
    ("forward", "clear"): _forward_clear,
    ("forward", "show"): _forward_show,
    ("vacation", "set"): _vacation_set,
    ("vacation", "clear"): _vacation_clear,
    ("vacation", "show"): _vacation_show,
}


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        config = load_config(find_config_file(args.config, os.environ), os.environ)
        if args.command == "serve":
            from postfach.server import serve

            return serve(config, args.workers)
        asyncio.run(_run_admin(args, config))
    except (UsageError, ConfigError, InvalidRequest) as error:
        for line in str(error).splitlines() or [type(error).__name__]:
            print(f"postfach: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
