-- Contacts reach the search index at commit too (see 0005): a new or changed
-- contact, or a change of its identities, only notes the contact here, and
-- the store rebuilds the noted contacts' search rows just before COMMIT.
CREATE TABLE contacts_fts_pending (contact_id INTEGER PRIMARY KEY);

DROP TRIGGER contacts_fts_insert;
DROP TRIGGER contacts_fts_update;
DROP TRIGGER contacts_fts_delete;
DROP TRIGGER identities_fts_insert;
DROP TRIGGER identities_fts_update;
DROP TRIGGER identities_fts_moved;
DROP TRIGGER identities_fts_delete;

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
