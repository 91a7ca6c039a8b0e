-- Schema version 5: login security (issue 6): app passwords, login quarantine, per-address
-- throttling and bans, the login audit. Times here are Unix seconds as REAL: quarantine
-- and throttling work in fractions of a second (tests shorten them below one second).

-- Named passwords for single devices or protocols. `lookup` is the first group of the
-- generated password: it finds the one hash to check, so a login costs one argon2 verify.
CREATE TABLE app_passwords (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id          INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    lookup              TEXT NOT NULL,
    password_hash       TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    last_used_at        REAL,
    last_used_from      TEXT,
    last_used_protocol  TEXT,
    UNIQUE (account_id, name),
    UNIQUE (account_id, lookup)
);

-- A wrong password: who tried (source: an IPv4 address or an IPv6 /64), for which
-- credential ("" the account's password, else an app password's name), and an HMAC of the
-- password under a secret in the data directory (never the password). The same wrong
-- password from the same source is one row, counted once; `at` is its latest try.
CREATE TABLE login_failures (
    source          TEXT NOT NULL,
    address         TEXT NOT NULL,
    credential      TEXT NOT NULL,
    password_mac    TEXT NOT NULL,
    at              REAL NOT NULL,
    PRIMARY KEY (address, credential, source, password_mac)
) WITHOUT ROWID;
CREATE INDEX login_failures_source ON login_failures(source, at);
CREATE INDEX login_failures_at ON login_failures(at);

-- Quarantine state per credential (and per source under the "account+address" scope;
-- source is "" under "account"). Failures before `epoch_start` (the last good login, or
-- the end of the last quarantine) do not count; `until` NULL: not in quarantine.
CREATE TABLE login_quarantines (
    address         TEXT NOT NULL,
    credential      TEXT NOT NULL,
    source          TEXT NOT NULL,
    epoch_start     REAL NOT NULL,
    since           REAL,
    until           REAL,
    failures        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (address, credential, source)
) WITHOUT ROWID;

-- Source addresses banned for failing across many accounts.
CREATE TABLE login_bans (
    source      TEXT PRIMARY KEY,
    since       REAL NOT NULL,
    until       REAL NOT NULL,
    accounts    INTEGER NOT NULL
) WITHOUT ROWID;

-- Every login attempt, from every door. `address` is the user name as given (normalised
-- when it is an address, cut to 320 characters); never a password.
CREATE TABLE login_audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          REAL NOT NULL,
    address     TEXT NOT NULL,
    credential  TEXT NOT NULL,
    source      TEXT NOT NULL,
    protocol    TEXT NOT NULL,
    result      TEXT NOT NULL,      -- 'ok' or 'failed'
    reason      TEXT NOT NULL
);
CREATE INDEX login_audit_address ON login_audit(address, id);
