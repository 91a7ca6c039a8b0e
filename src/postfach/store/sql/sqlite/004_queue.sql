-- Schema version 4: the outbound queue, DKIM keys per domain, quota warning state.

-- A message waiting to leave. It holds one reference to its blob (blobs.refcount), like
-- a message in a folder, so the file stays until the last recipient is done.
CREATE TABLE queue_messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    sender          TEXT NOT NULL,          -- the reverse-path; "" for a bounce
    blob_sha256     TEXT NOT NULL REFERENCES blobs(sha256),
    created_at      INTEGER NOT NULL,       -- Unix seconds: expiry counts from here
    next_attempt    INTEGER NOT NULL,       -- Unix seconds
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX queue_messages_due ON queue_messages(next_attempt);

-- state: 'pending' (try again), 'delivered', 'failed' (bounced). An entry whose
-- recipients are all done goes, with its blob reference.
CREATE TABLE queue_recipients (
    message_id  INTEGER NOT NULL REFERENCES queue_messages(id) ON DELETE CASCADE,
    address     TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending',
    last_error  TEXT,
    PRIMARY KEY (message_id, address)
) WITHOUT ROWID;

-- One DKIM key per domain (RFC 6376), made when the domain is added.
CREATE TABLE dkim_keys (
    domain_id   INTEGER PRIMARY KEY REFERENCES domains(id) ON DELETE CASCADE,
    selector    TEXT NOT NULL,
    private_key TEXT NOT NULL,              -- PEM, PKCS#8
    created_at  INTEGER NOT NULL
);

-- The highest quota warning (percent) the account holder was sent since usage was last below it.
CREATE TABLE quota_warnings (
    account_id  INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    level       INTEGER NOT NULL
);
