-- Full-text indexing moves off the delivery path: an append only notes the
-- new content here (cheap); the writer indexes it when it has nothing else to
-- do, and SEARCH reads not-yet-indexed messages directly meanwhile.

CREATE TABLE search_pending (
    sha256  TEXT PRIMARY KEY            -- blobs.sha256, not yet in search_index
) WITHOUT ROWID;

-- Whatever the old path had not indexed stays searchable.
INSERT INTO search_pending (sha256)
    SELECT sha256 FROM blobs WHERE sha256 NOT IN (SELECT sha256 FROM search_docs);

CREATE TRIGGER blobs_search_pending_gone AFTER DELETE ON blobs BEGIN
    DELETE FROM search_pending WHERE sha256 = old.sha256;
END;
