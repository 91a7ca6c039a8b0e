-- Schema version 8: SELECT of large folders without reading every message row (issue 7 point 3).
-- A process keeps folder indexes in memory and brings one up to date by reading what
-- changed after its modseq (postfach.store.sqlite_index); these indexes make that read
-- cost what changed, not the size of the folder. They serve CONDSTORE/QRESYNC too.

CREATE INDEX messages_modseq ON messages(folder_id, modseq);
CREATE INDEX expunged_modseq ON expunged(folder_id, modseq);

-- A large folder's uid/flags/modseq as of its highestmodseq `modseq`, packed, so that the
-- first SELECT after a start reads one row and the changes since instead of every row.
-- Written now and then (when the folder has changed enough since); never needed for
-- correctness: a missing or damaged one only means reading every row once.
CREATE TABLE folder_snapshots (
    folder_id   INTEGER PRIMARY KEY REFERENCES folders(id) ON DELETE CASCADE,
    uidvalidity INTEGER NOT NULL,
    modseq      INTEGER NOT NULL,
    uidnext     INTEGER NOT NULL,
    uids        BLOB NOT NULL,      -- 32-bit unsigned, little-endian, ascending
    flags       BLOB NOT NULL,      -- one byte of SystemFlag bits per message
    modseqs     BLOB NOT NULL,      -- 64-bit unsigned, little-endian
    keywords    TEXT NOT NULL       -- JSON object: uid -> space-separated keywords (only uids with any)
);
