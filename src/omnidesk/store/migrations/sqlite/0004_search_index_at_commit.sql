-- The search indexes are brought up to date when a transaction commits, not
-- row by row. FTS5 flushes its pending terms at every savepoint, and the
-- pipeline may keep each message in a savepoint of its own (so one bad
-- message rolls back alone): indexing inside them cost twice the insert
-- itself. Now the triggers only note what changed - a new or edited message,
-- a contact whose name or identities changed - and the store indexes the
-- noted rows just before COMMIT (store/sqlite.py), in the same transaction, so
-- search still sees exactly what is committed. An identity's other data (a
-- Telegram user's language, say) does not touch its contact's search row.
CREATE TABLE messages_fts_pending (message_id INTEGER PRIMARY KEY);
CREATE TABLE contacts_fts_pending (contact_id INTEGER PRIMARY KEY);

DROP TRIGGER messages_fts_insert;
DROP TRIGGER messages_fts_delete;
DROP TRIGGER messages_fts_update;
DROP TRIGGER contacts_fts_insert;
DROP TRIGGER contacts_fts_update;
DROP TRIGGER contacts_fts_delete;
DROP TRIGGER identities_fts_insert;
DROP TRIGGER identities_fts_update;
DROP TRIGGER identities_fts_delete;

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT OR IGNORE INTO messages_fts_pending (message_id) VALUES (new.id);
END;
-- A message not indexed yet has nothing to take out of the index.
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, subject, text)
    SELECT 'delete', old.id, old.subject, old.text
     WHERE NOT EXISTS (SELECT 1 FROM messages_fts_pending WHERE message_id = old.id);
    DELETE FROM messages_fts_pending WHERE message_id = old.id;
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF subject, text ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, subject, text)
    SELECT 'delete', old.id, old.subject, old.text
     WHERE NOT EXISTS (SELECT 1 FROM messages_fts_pending WHERE message_id = old.id);
    INSERT OR IGNORE INTO messages_fts_pending (message_id) VALUES (new.id);
END;

CREATE TRIGGER contacts_fts_insert AFTER INSERT ON contacts BEGIN
    INSERT OR IGNORE INTO contacts_fts_pending (contact_id) VALUES (new.id);
END;
CREATE TRIGGER contacts_fts_update AFTER UPDATE OF name ON contacts BEGIN
    INSERT OR IGNORE INTO contacts_fts_pending (contact_id) VALUES (new.id);
END;
CREATE TRIGGER contacts_fts_delete AFTER DELETE ON contacts BEGIN
    INSERT OR IGNORE INTO contacts_fts_pending (contact_id) VALUES (old.id);
END;
CREATE TRIGGER identities_fts_insert AFTER INSERT ON identities BEGIN
    INSERT OR IGNORE INTO contacts_fts_pending (contact_id) VALUES (new.contact_id);
END;
CREATE TRIGGER identities_fts_update AFTER UPDATE OF contact_id, address, display_name
ON identities BEGIN
    INSERT OR IGNORE INTO contacts_fts_pending (contact_id) VALUES (old.contact_id);
    INSERT OR IGNORE INTO contacts_fts_pending (contact_id) VALUES (new.contact_id);
END;
CREATE TRIGGER identities_fts_delete AFTER DELETE ON identities BEGIN
    INSERT OR IGNORE INTO contacts_fts_pending (contact_id) VALUES (old.contact_id);
END;
