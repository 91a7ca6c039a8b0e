-- Schema version 9: the autoresponder answers a sender at most once per period
-- (RFC 3834 §2, RFC 5230 §4.6). Who was answered when, per account; setting the
-- vacation again forgets them (a new absence answers everyone once more).

CREATE TABLE vacation_replies (
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    sender      TEXT NOT NULL,          -- the envelope sender answered, lower case
    replied_at  INTEGER NOT NULL,       -- unix seconds
    PRIMARY KEY (account_id, sender)
);
