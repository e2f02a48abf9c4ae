-- Customer data (docs/customers.md): companies a contact may belong to, the
-- typed fields' values (kept in the contact's and the company's ``attributes``,
-- checked against [customers] in the config on every write), and events
-- appended to a contact: orders (amount, currency, items, status) and any
-- other typed event, shown on the contact's timeline and summarised for rules.
CREATE TABLE companies (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    domain      TEXT,
    attributes  TEXT NOT NULL DEFAULT '{}',
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);

ALTER TABLE contacts ADD COLUMN company_id INTEGER REFERENCES companies (id);
-- Set when the contact was erased (what is left is an anonymous shell that
-- its redacted conversations still point at).
ALTER TABLE contacts ADD COLUMN erased_at REAL;
CREATE INDEX contacts_company ON contacts (company_id) WHERE company_id IS NOT NULL;

CREATE TABLE contact_events (
    id          INTEGER PRIMARY KEY,
    contact_id  INTEGER NOT NULL REFERENCES contacts (id),
    kind        TEXT NOT NULL,              -- order | any other name (a typed event)
    external_id TEXT,                       -- the shop's order number: re-sending it updates
    occurred_at REAL NOT NULL,
    amount      REAL,                       -- orders
    currency    TEXT,
    status      TEXT,
    items       TEXT NOT NULL DEFAULT '[]',
    data        TEXT NOT NULL DEFAULT '{}',
    actor       TEXT NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    UNIQUE (kind, external_id)
);
CREATE INDEX contact_events_contact ON contact_events (contact_id, occurred_at);
