-- Schema version 2: \Recent (RFC 3501 §2.3.2) for IMAP4rev1 sessions.
-- Messages with uid >= recent_uid are recent and not yet claimed by any session;
-- the session that claims them sets recent_uid to uidnext. Mail already stored
-- when this migration runs is not recent.
ALTER TABLE folders ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 1;
UPDATE folders SET recent_uid = uidnext;
