-- Schema version 7: leases on queue entries, so that several processes (and later several
-- nodes) share one outbound queue and each entry is delivered by one of them at a time;
-- an index for the audit's retention; no login state left by removed mailboxes.

-- Who is trying the entry now ("host:pid:token") and until when (Unix seconds, REAL). A
-- holder renews the lease while its attempt runs and clears both when the attempt ends; a
-- holder that died leaves a lease that runs out, and then anyone may take the entry over.
-- Both NULL: nobody holds it.
ALTER TABLE queue_messages ADD COLUMN claimed_by TEXT;
ALTER TABLE queue_messages ADD COLUMN claimed_until REAL;

-- Login attempts older than audit.retention_days are deleted by age.
CREATE INDEX login_audit_at ON login_audit(at);

-- Removing a mailbox now removes its quarantine state; this is what removals before this
-- version left behind (a new mailbox with the same address would have inherited it).
DELETE FROM login_quarantines WHERE address NOT IN (SELECT address FROM accounts);
