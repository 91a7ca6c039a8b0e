"""The in-process EventBus: changes fan out to the subscribers of an account.

Callbacks run on the event loop's thread, in publication order, and must not
block (an IMAP session puts the change on its own queue). A callback that
raises is a bug in that subscriber; it is logged and the others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from postfach.store.changes import Change

log = logging.getLogger(__name__)

Subscriber = Callable[[Change], None]


class Subscription:
    def __init__(self, bus: LocalEventBus, account_id: int, callback: Subscriber) -> None:
        self._bus = bus
        self.account_id = account_id
        self.callback = callback

    def close(self) -> None:
        self._bus._remove(self)


class LocalEventBus:
    def __init__(self) -> None:
        self._subscribers: dict[int, list[Subscription]] = {}

    def subscribe(self, account_id: int, callback: Subscriber) -> Subscription:
        subscription = Subscription(self, account_id, callback)
        self._subscribers.setdefault(account_id, []).append(subscription)
        return subscription

    def publish(self, change: Change) -> None:
        for subscription in tuple(self._subscribers.get(change.account_id, ())):
            try:
                subscription.callback(change)
            except Exception:
                log.exception("change subscriber failed on %r", change)

    def _remove(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.account_id, [])
        if subscription in subscribers:
            subscribers.remove(subscription)
        if not subscribers:
            self._subscribers.pop(subscription.account_id, None)
