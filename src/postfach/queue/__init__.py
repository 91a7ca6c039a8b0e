"""The outbound queue: mail for remote addresses, sent with retries, bounced when it cannot be.

Invariants:

- A message is in the queue (store: queue_messages, holding a reference to its
  file) before the door that took it says 250; the worker only ever reads it
  from the store, so a restart loses nothing and resumes where it was.
- Each recipient has its own state. 2xx: delivered; 4xx or a failed
  connection: tried again after the next delay of `[queue] retry_delays`,
  until `[queue] max_age`; 5xx or expiry: failed, and one RFC 3464 DSN tells
  the sender, through the delivery pipeline (into INBOX when the sender is
  hosted here). A bounce (null sender) never bounces.
- The DSN is filed before the attempt is recorded: a crash in between gives a
  second bounce at worst, never none.
- One process at a time tries an entry, however many processes or nodes run a
  worker on the store: it holds the entry's lease (Store.claim_queue) and
  renews it while it tries; the attempt's record releases it. A process that
  dies leaves a lease that runs out, and then another process tries the entry.
  The operator's retry, remove and bounce (admin.py) are refused while a lease
  holds.
- Mail whose From: (or envelope sender) domain is hosted here leaves DKIM-signed.
"""
