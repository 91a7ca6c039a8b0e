"""The MX (listener `smtp`): mail from other servers for the domains hosted here.

Policy: no AUTH; any sender, checked by the pipeline (SPF, DKIM, DMARC: the
results go into Authentication-Results, and a DMARC reject policy refuses); a
recipient must resolve to something hosted here (mailbox, alias, catch-all),
an unknown one is refused at RCPT (550 5.1.1) and any other domain is refused
as relaying (554 5.7.1), whatever the sender claims to be: never an open relay.
"""

from __future__ import annotations

from postfach.delivery.recipients import NotLocal
from postfach.smtp import replies
from postfach.smtp.handler import DeliveringHandler
from postfach.smtp.replies import Reply


class InboundHandler(DeliveringHandler):
    offers_auth = False
    authenticate = True

    def non_local(self, verdict: NotLocal) -> Reply:
        return replies.RELAY_DENIED
