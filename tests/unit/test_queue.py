"""Outbound queue pieces without a network: backoff, DSN format, routes, quota levels."""

import email
from datetime import datetime, timezone
from email.policy import default

import pytest

from postfach.delivery.quota_warnings import level_of
from postfach.queue.backoff import DEFAULT_DELAYS, expired, next_attempt, retry_delay
from postfach.queue.dsn import Failure, build_dsn
from postfach.queue.worker import without_return_path


def test_backoff_grows_then_repeats_its_last_step():
    assert [retry_delay(n) for n in range(1, 10)] == [60, 300, 900, 1800, 3600, 7200, 14400, 14400, 14400]
    assert retry_delay(1, (1,)) == retry_delay(5, (1,)) == 1
    with pytest.raises(ValueError):
        retry_delay(0)


def test_a_message_expires_after_max_age_and_its_last_try_is_not_later():
    assert not expired(0, 5 * 86400 - 1)
    assert expired(0, 5 * 86400)
    assert next_attempt(0, 100, 1, DEFAULT_DELAYS, 5 * 86400) == 160
    assert next_attempt(0, 5 * 86400 - 10, 9, DEFAULT_DELAYS, 5 * 86400) == 5 * 86400


ORIGINAL = b"From: alice@a.test\r\nTo: x@b.test\r\nSubject: Hi\r\n\r\nsecret body\r\n"


def test_dsn_is_a_multipart_report_with_delivery_status_and_the_original_header():
    arrival = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    failures = [Failure("x@b.test", "5.1.1", "550 5.1.1 No such user here", "mail.b.test")]
    dsn = build_dsn("mail.a.test", "alice@a.test", failures, ORIGINAL, arrival)
    assert b"\n" not in dsn.replace(b"\r\n", b"")  # CRLF only
    parsed = email.message_from_bytes(dsn, policy=default)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    assert parsed["To"].addresses[0].addr_spec == "alice@a.test" and parsed["Auto-Submitted"] == "auto-replied"
    human, status, headers = parsed.get_payload()
    assert human.get_content_type() == "text/plain" and "x@b.test" in human.get_content()
    assert status.get_content_type() == "message/delivery-status"
    blocks = status.get_payload()  # RFC 3464 §2.1: per-message fields, then one block per recipient
    assert blocks[0]["Reporting-MTA"] == "dns; mail.a.test"
    assert blocks[0]["Arrival-Date"] == "Thu, 02 Jan 2025 03:04:05 +0000"
    assert blocks[1]["Final-Recipient"] == "rfc822; x@b.test"
    assert blocks[1]["Action"] == "failed" and blocks[1]["Status"] == "5.1.1"
    assert blocks[1]["Remote-MTA"] == "dns; mail.b.test"
    assert blocks[1]["Diagnostic-Code"] == "smtp; 550 5.1.1 No such user here"
    assert headers.get_content_type() == "text/rfc822-headers"
    assert b"Subject: Hi" in dsn and b"secret body" not in dsn


def test_return_path_is_not_sent_on():
    assert without_return_path(b"Return-Path: <a@b>\r\nReceived: x\r\n\r\nbody") == b"Received: x\r\n\r\nbody"
    assert without_return_path(b"Subject: x\r\n\r\n") == b"Subject: x\r\n\r\n"


def test_quota_levels():
    assert [level_of(used, 100) for used in (0, 79, 80, 94, 95, 100)] == [0, 0, 80, 80, 95, 95]
