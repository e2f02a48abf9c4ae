-- Messages reach the search index when their transaction commits, not row by
-- row. FTS5 flushes its pending terms at every savepoint, and the pipeline
-- keeps each message in a savepoint of its own (so one bad message rolls back
-- alone): indexing inside it cost twice the insert itself. Now a new or
-- edited message is only noted here; the store indexes the noted messages
-- just before COMMIT (store/sqlite.py), in the same transaction, so search
-- still sees exactly what is committed.
CREATE TABLE messages_fts_pending (message_id INTEGER PRIMARY KEY);

DROP TRIGGER messages_fts_insert;
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT OR IGNORE INTO messages_fts_pending (message_id) VALUES (new.id);
END;

-- A message not indexed yet has nothing to take out of the index.
DROP TRIGGER messages_fts_delete;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, subject, text)
    SELECT 'delete', old.id, old.subject, old.text
     WHERE NOT EXISTS (SELECT 1 FROM messages_fts_pending WHERE message_id = old.id);
    DELETE FROM messages_fts_pending WHERE message_id = old.id;
END;

DROP TRIGGER messages_fts_update;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF subject, text ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, subject, text)
    SELECT 'delete', old.id, old.subject, old.text
     WHERE NOT EXISTS (SELECT 1 FROM messages_fts_pending WHERE message_id = old.id);
    INSERT OR IGNORE INTO messages_fts_pending (message_id) VALUES (new.id);
END;
