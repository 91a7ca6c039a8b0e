-- Postfach embedded store, schema version 1.
-- Times are Unix seconds (UTC); names and addresses are ASCII, lower case.

CREATE TABLE domains (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE accounts (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    domain_id       INTEGER NOT NULL REFERENCES domains(id),
    address         TEXT NOT NULL UNIQUE,
    password_hash   TEXT NOT NULL,
    quota_bytes     INTEGER NOT NULL,
    used_bytes      INTEGER NOT NULL DEFAULT 0 CHECK (used_bytes >= 0),
    enabled         INTEGER NOT NULL DEFAULT 1,
    created_at      INTEGER NOT NULL,
    last_uidvalidity INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX accounts_domain ON accounts(domain_id);

-- source is "local@domain", or "@domain" for the domain's catch-all.
CREATE TABLE aliases (
    domain_id   INTEGER NOT NULL REFERENCES domains(id),
    source      TEXT NOT NULL,
    target      TEXT NOT NULL,
    PRIMARY KEY (source, target)
) WITHOUT ROWID;
CREATE INDEX aliases_domain ON aliases(domain_id);

CREATE TABLE forwardings (
    account_id  INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    targets     TEXT NOT NULL,          -- JSON array, in the order given
    keep_copy   INTEGER NOT NULL
);

CREATE TABLE vacations (
    account_id  INTEGER PRIMARY KEY REFERENCES accounts(id) ON DELETE CASCADE,
    start_date  TEXT NOT NULL,          -- ISO date, inclusive
    end_date    TEXT NOT NULL,          -- ISO date, inclusive
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL
);

-- uidvalidity comes from accounts.last_uidvalidity, which only grows, so a
-- folder deleted and created again under the same name never shows a client
-- its old UIDs as valid.
CREATE TABLE folders (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id      INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    uidvalidity     INTEGER NOT NULL,
    uidnext         INTEGER NOT NULL DEFAULT 1,
    highestmodseq   INTEGER NOT NULL DEFAULT 1,
    special_use     TEXT,
    subscribed      INTEGER NOT NULL DEFAULT 1,
    UNIQUE (account_id, name)
);

-- One row per distinct message content; the file is blobs/<sha[:2]>/<sha>.
-- refcount 0 marks a file that garbage collection may remove.
CREATE TABLE blobs (
    sha256      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    refcount    INTEGER NOT NULL CHECK (refcount >= 0),
    parsed      TEXT NOT NULL           -- postfach.mime.ParsedMessage as JSON
) WITHOUT ROWID;
CREATE INDEX blobs_unreferenced ON blobs(refcount) WHERE refcount = 0;

-- flags: SystemFlag bits; keywords: space-separated atoms or NULL.
CREATE TABLE messages (
    folder_id       INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    uid             INTEGER NOT NULL,
    blob_sha256     TEXT NOT NULL REFERENCES blobs(sha256),
    size            INTEGER NOT NULL,
    internal_date   INTEGER NOT NULL,
    internal_tz     INTEGER NOT NULL,   -- the zone's offset from UTC in minutes
    flags           INTEGER NOT NULL DEFAULT 0,
    keywords        TEXT,
    modseq          INTEGER NOT NULL,
    PRIMARY KEY (folder_id, uid)
) WITHOUT ROWID;
CREATE INDEX messages_blob ON messages(blob_sha256);

-- Expunged UIDs with the modseq of their removal (RFC 7162 QRESYNC VANISHED).
CREATE TABLE expunged (
    folder_id   INTEGER NOT NULL REFERENCES folders(id) ON DELETE CASCADE,
    uid         INTEGER NOT NULL,
    modseq      INTEGER NOT NULL,
    PRIMARY KEY (folder_id, uid)
) WITHOUT ROWID;
