"""When to try a queued message again (RFC 5321 §4.5.4.1: at least 30 minutes between tries
is advised; we start sooner, at a minute, and grow), and when to give up."""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_DELAYS = (60, 300, 900, 1800, 3600, 7200, 14400)  # 1m 5m 15m 30m 1h 2h 4h, then 4h each
DEFAULT_MAX_AGE = 5 * 86400


def retry_delay(attempts: int, delays: Sequence[int] = DEFAULT_DELAYS) -> int:
    """Seconds to wait after the `attempts`-th failed attempt (1 for the first); the last delay repeats."""
    if attempts < 1:
        raise ValueError("attempts counts from 1")
    return delays[min(attempts, len(delays)) - 1]


def expired(created_at: float, now: float, max_age: int = DEFAULT_MAX_AGE) -> bool:
    return now - created_at >= max_age


def next_attempt(created_at: float, now: float, attempts: int, delays: Sequence[int], max_age: int) -> float:
    """When to try next; never later than the moment the message expires, so that its bounce
    goes out on time."""
    return min(now + retry_delay(attempts, delays), created_at + max_age)
