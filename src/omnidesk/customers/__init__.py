"""Customer data and privacy, the parts that need no database: typed contact
and company fields (``fields.py``), their settings and the privacy settings
(``settings.py``), masking card numbers and personal data (``redact.py``),
and reading import files (``files.py``). The SQL is in ``store/customers.py``
and ``store/privacy.py``; docs/customers.md says how it is used."""
