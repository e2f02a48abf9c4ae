-- The contact search row depends on an identity's contact, address and display
-- name only: a change of its other data (a Telegram user's language, say) no
-- longer rewrites the search row, and the old owner's row is rebuilt only when
-- the identity moved to another contact (a merge or its undoing).
DROP TRIGGER identities_fts_update;
CREATE TRIGGER identities_fts_update AFTER UPDATE OF contact_id, address, display_name
ON identities BEGIN
    UPDATE contacts_fts SET identities = (
        SELECT group_concat(i.address || ' ' || COALESCE(i.display_name, ''), ' ')
          FROM identities i WHERE i.contact_id = new.contact_id
    ) WHERE rowid = new.contact_id;
END;
CREATE TRIGGER identities_fts_moved AFTER UPDATE OF contact_id ON identities
WHEN old.contact_id IS NOT new.contact_id BEGIN
    UPDATE contacts_fts SET identities = (
        SELECT group_concat(i.address || ' ' || COALESCE(i.display_name, ''), ' ')
          FROM identities i WHERE i.contact_id = old.contact_id
    ) WHERE rowid = old.contact_id;
END;
