"""THE delivery pipeline: every accepted message goes through it, whichever door it came in by.

Invariants:

- One path. The MX, submission to local addresses and (later) webmail and
  sieve all call `DeliveryPipeline.deliver`; none of them appends to an
  INBOX itself, so quota, loop detection and trace fields cannot be skipped.
- Nothing acknowledged is lost. `deliver` returns only when every local copy
  is committed (blob fsynced, row committed), so the door may acknowledge
  (SMTP 250 after DATA) exactly when it gets a result with deliveries in it.
- One file per message. The bytes (with the trace fields prepended once) are
  stored once and every recipient's INBOX refers to that one file.
- Results are typed (`recipients.Resolution` variants, `pipeline.Delivered`,
  `pipeline.Refused`, ...). Only the door turns them into protocol text.
"""
