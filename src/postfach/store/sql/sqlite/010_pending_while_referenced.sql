-- Schema version 10: a message expunged before the writer got to index it is no
-- longer indexed. Its file stays a while (garbage collection's grace period), and
-- its search_pending row did too, so a client that appends and expunges (drafts
-- saved every minute, a move by APPEND then EXPUNGE) had the writer index every
-- one. Referenced again within the grace period, it is pending again (the append
-- notes it as it does new content).

CREATE TRIGGER blobs_unreferenced_not_pending AFTER UPDATE OF refcount ON blobs WHEN new.refcount = 0 BEGIN
    DELETE FROM search_pending WHERE sha256 = new.sha256;
END;

DELETE FROM search_pending WHERE sha256 IN (SELECT sha256 FROM blobs WHERE refcount = 0);
