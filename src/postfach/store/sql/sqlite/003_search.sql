-- Full-text search (IMAP SEARCH BODY/TEXT), fed at delivery.
-- One document per distinct message content, written in the transaction that
-- first inserts the blob row; it goes when the blob row goes.
-- Text is stored case-folded; the trigram tokenizer answers GLOB '*needle*'
-- from its index, which is exactly RFC 9051 §6.4.4 substring matching.

CREATE TABLE search_docs (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    sha256  TEXT NOT NULL UNIQUE            -- blobs.sha256
);

-- head: every header field, encoded-words decoded; body: decoded text parts
-- and attachment names (postfach.store.search_text).
CREATE VIRTUAL TABLE search_index USING fts5(head, body, tokenize = 'trigram case_sensitive 1');

CREATE TRIGGER blobs_search_gone AFTER DELETE ON blobs BEGIN
    DELETE FROM search_index WHERE rowid = (SELECT id FROM search_docs WHERE sha256 = old.sha256);
    DELETE FROM search_docs WHERE sha256 = old.sha256;
END;
