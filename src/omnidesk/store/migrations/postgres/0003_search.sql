-- Full-text search over messages and contacts, in any language.
--
-- Trigram GIN indexes (pg_trgm) serve ILIKE '%term%' for terms of three
-- characters or more, case-insensitively, with no word segmentation, so
-- Chinese, Japanese and Thai work as well as English (the database's ctype
-- must classify them as letters: any UTF-8 locale, C.UTF-8 included).
-- Shorter terms scan. The same queries (store/search.py) run without the
-- extension, only slower: a database user who may not create it gets a
-- notice, not a failed migration. Indexes stay current by themselves.

DO $$
DECLARE
    ext_schema text;
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXCEPTION WHEN insufficient_privilege OR undefined_file OR feature_not_supported THEN
        RAISE NOTICE 'pg_trgm not available (%): search works, without an index', SQLERRM;
    END;
    -- The extension may live in any schema (public, usually): name its
    -- operator class explicitly so this works whatever the search_path.
    SELECT n.nspname INTO ext_schema
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'pg_trgm';
    IF ext_schema IS NOT NULL THEN
        EXECUTE format(
            'CREATE INDEX messages_text_trgm ON messages USING gin (text %I.gin_trgm_ops)',
            ext_schema);
        EXECUTE format(
            'CREATE INDEX messages_subject_trgm ON messages USING gin (subject %I.gin_trgm_ops)',
            ext_schema);
        EXECUTE format(
            'CREATE INDEX contacts_name_trgm ON contacts USING gin (name %I.gin_trgm_ops)',
            ext_schema);
        EXECUTE format(
            'CREATE INDEX identities_address_trgm ON identities'
            ' USING gin (address %I.gin_trgm_ops, display_name %I.gin_trgm_ops)',
            ext_schema, ext_schema);
    END IF;
END
$$;
