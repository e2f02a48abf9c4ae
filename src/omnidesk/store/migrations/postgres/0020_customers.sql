-- PostgreSQL twin of sqlite/0020_customers.sql.
CREATE TABLE companies (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    domain      TEXT,
    attributes  TEXT NOT NULL DEFAULT '{}',
    created_at  DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL
);

ALTER TABLE contacts ADD COLUMN company_id BIGINT REFERENCES companies (id);
ALTER TABLE contacts ADD COLUMN erased_at DOUBLE PRECISION;
CREATE INDEX contacts_company ON contacts (company_id) WHERE company_id IS NOT NULL;

CREATE TABLE contact_events (
    id          BIGSERIAL PRIMARY KEY,
    contact_id  BIGINT NOT NULL REFERENCES contacts (id),
    kind        TEXT NOT NULL,
    external_id TEXT,
    occurred_at DOUBLE PRECISION NOT NULL,
    amount      DOUBLE PRECISION,
    currency    TEXT,
    status      TEXT,
    items       TEXT NOT NULL DEFAULT '[]',
    data        TEXT NOT NULL DEFAULT '{}',
    actor       TEXT NOT NULL,
    created_at  DOUBLE PRECISION NOT NULL,
    updated_at  DOUBLE PRECISION NOT NULL,
    UNIQUE (kind, external_id)
);
CREATE INDEX contact_events_contact ON contact_events (contact_id, occurred_at);
