"""Quota warnings: the account holder hears once when usage crosses 80 % and once at 95 %.

The level last warned about is kept in the store per account. A delivery that
finds usage past a level above it files one warning into INBOX (outside the
quota: a warning must never fail for lack of room) and records the level; the
record is taken with a compare-and-set, so two deliveries crossing at once
send one warning. When usage is found below the recorded level again, the
level goes down with it, so the next crossing warns again.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from postfach.model import Account, Mailbox
from postfach.sizes import format_size
from postfach.store.base import Store

log = logging.getLogger(__name__)

LEVELS = (80, 95)  # percent


def level_of(used_bytes: int, quota_bytes: int) -> int:
    """The highest warning level `used_bytes` has reached (0 below the first)."""
    reached = [level for level in LEVELS if used_bytes * 100 >= quota_bytes * level]
    return reached[-1] if reached else 0


def warning_message(account: Account, level: int, used_bytes: int, hostname: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"Postfach <postmaster@{hostname}>"
    message["To"] = account.address
    message["Subject"] = f"Your mailbox is {level}% full"
    message["Date"] = format_datetime(datetime.now(timezone.utc))
    message["Message-ID"] = make_msgid(domain=hostname)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no autoresponder answers this
    message.set_content(
        f"Your mailbox {account.address} uses {format_size(used_bytes)} of its "
        f"{format_size(account.quota_bytes)} quota ({level}% or more).\n\n"
        "When it is full, new mail to you is refused. Delete messages you no longer need "
        "(and empty the Trash) to make room.\n"
    )
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


async def check_quota(store: Store, mailbox: Mailbox, used_bytes: int, hostname: str) -> int | None:
    """Warn the holder of `mailbox` if `used_bytes` crossed a level; returns the level warned
    about, if any. The level last warned about is the one read with the mailbox: a change since
    makes the compare-and-set below fail, so nothing is sent twice."""
    account = mailbox.account
    reached = level_of(used_bytes, account.quota_bytes)
    warned = mailbox.quota_warned
    if reached < warned:  # usage fell below: the next crossing warns again
        await store.set_quota_warning(account.id, reached, only_if=warned)
        return None
    if reached == warned or mailbox.inbox_id is None:
        return None
    if not await store.set_quota_warning(account.id, reached, only_if=warned):
        return None
    await store.append(mailbox.inbox_id, warning_message(account, reached, used_bytes, hostname),
                       enforce_quota=False)
    log.info("quota warning: %s is at %d%% of its quota", account.address, reached)
    return reached
