-- Full-text search over messages and contacts, in any language.
--
-- FTS5's trigram tokenizer indexes every run of three characters, so a query
-- matches any substring of three characters or more, case-insensitively,
-- with no word segmentation: Chinese, Japanese and Thai work as well as
-- English. Shorter terms (a two-character Chinese word) are matched with
-- LIKE by store/search.py. Triggers keep both indexes current.

-- Messages: the index only (content lives in messages).
CREATE VIRTUAL TABLE messages_fts USING fts5(
    subject, text, content = 'messages', content_rowid = 'id', tokenize = 'trigram'
);
INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');

CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, subject, text) VALUES (new.id, new.subject, new.text);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, subject, text)
    VALUES ('delete', old.id, old.subject, old.text);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF subject, text ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, subject, text)
    VALUES ('delete', old.id, old.subject, old.text);
    INSERT INTO messages_fts (rowid, subject, text) VALUES (new.id, new.subject, new.text);
END;

-- Contacts: one row per contact (rowid = contact id) with its name and every
-- identity (address and display name), rebuilt whenever either changes.
CREATE VIRTUAL TABLE contacts_fts USING fts5(name, identities, tokenize = 'trigram');
INSERT INTO contacts_fts (rowid, name, identities)
SELECT c.id, c.name,
       (SELECT group_concat(i.address || ' ' || COALESCE(i.display_name, ''), ' ')
          FROM identities i WHERE i.contact_id = c.id)
  FROM contacts c;

CREATE TRIGGER contacts_fts_insert AFTER INSERT ON contacts BEGIN
    INSERT INTO contacts_fts (rowid, name, identities) VALUES (new.id, new.name, '');
END;
CREATE TRIGGER contacts_fts_update AFTER UPDATE OF name ON contacts BEGIN
    UPDATE contacts_fts SET name = new.name WHERE rowid = new.id;
END;
CREATE TRIGGER contacts_fts_delete AFTER DELETE ON contacts BEGIN
    DELETE FROM contacts_fts WHERE rowid = old.id;
END;
CREATE TRIGGER identities_fts_insert AFTER INSERT ON identities BEGIN
    UPDATE contacts_fts SET identities = (
        SELECT group_concat(i.address || ' ' || COALESCE(i.display_name, ''), ' ')
          FROM identities i WHERE i.contact_id = new.contact_id
    ) WHERE rowid = new.contact_id;
END;
CREATE TRIGGER identities_fts_update AFTER UPDATE ON identities BEGIN
    UPDATE contacts_fts SET identities = (
        SELECT group_concat(i.address || ' ' || COALESCE(i.display_name, ''), ' ')
          FROM identities i WHERE i.contact_id = old.contact_id
    ) WHERE rowid = old.contact_id;
    UPDATE contacts_fts SET identities = (
        SELECT group_concat(i.address || ' ' || COALESCE(i.display_name, ''), ' ')
          FROM identities i WHERE i.contact_id = new.contact_id
    ) WHERE rowid = new.contact_id;
END;
CREATE TRIGGER identities_fts_delete AFTER DELETE ON identities BEGIN
    UPDATE contacts_fts SET identities = (
        SELECT group_concat(i.address || ' ' || COALESCE(i.display_name, ''), ' ')
          FROM identities i WHERE i.contact_id = old.contact_id
    ) WHERE rowid = old.contact_id;
END;
